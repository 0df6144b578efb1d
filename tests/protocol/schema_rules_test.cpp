// The schema keyword allowlist: what the grammar enforces passes, anything
// it would drop or only warn about is refused, naming the keyword.
#include "protocol/schema_rules.h"

#include <gtest/gtest.h>

namespace agora::protocol {
namespace {

void expect_refused(std::string_view schema, const std::string& needle) {
  const auto st = check_schema(schema, "response_format.json_schema.schema");
  ASSERT_FALSE(st.ok()) << schema;
  EXPECT_EQ(st.error().code, Errc::invalid_argument);
  EXPECT_NE(st.error().message.find("response_format.json_schema.schema"), std::string::npos);
  EXPECT_NE(st.error().message.find(needle), std::string::npos) << st.error().message;
}

TEST(SchemaRules, WhatTheGrammarEnforcesIsAccepted) {
  EXPECT_TRUE(check_schema(R"({"type":"object","title":"T","description":"d",
    "properties":{"city":{"type":"string","minLength":1,"maxLength":12},
                  "unit":{"enum":["c","f"]},"n":{"type":"integer","minimum":0,"exclusiveMaximum":10},
                  "when":{"type":"string","format":"date-time"},"id":{"type":"string","pattern":"^[a-z]+$"},
                  "list":{"type":"array","items":{"$ref":"#/$defs/item"},"minItems":1,"maxItems":3},
                  "pair":{"type":"array","prefixItems":[{"const":1},true]},
                  "either":{"anyOf":[{"type":"null"},{"type":"boolean"}]}},
    "required":["city"],"additionalProperties":false,
    "$defs":{"item":{"type":"string"}}})", "p").ok());
  EXPECT_TRUE(check_schema("true", "p").ok());
  EXPECT_TRUE(check_schema("{}", "p").ok());
}

TEST(SchemaRules, WhatItWouldDropOrOnlyWarnAboutIsRefused) {
  expect_refused(R"({"type":"array","uniqueItems":true})", "'uniqueItems'");
  expect_refused(R"({"type":"number","minimum":0})", "'minimum'");
  expect_refused(R"({"type":"object","properties":{"x":{"type":"number","maximum":1}}})", "/properties/x");
  expect_refused(R"({"type":"string","pattern":"[a-z]+"})", "not anchored");
  expect_refused(R"({"type":"string","format":"email"})", "'format'");
  expect_refused(R"({"$ref":"https://example.com/s.json"})", "not local");
  expect_refused(R"({"not":{"type":"null"}})", "'not'");
  expect_refused(R"({"type":"object","patternProperties":{"^a":{}}})", "'patternProperties'");
  expect_refused("[1]", "not an object");
  // Combinations the converter ignores part of, and values it would mangle.
  expect_refused(R"({"oneOf":[{"type":"string"},{"type":"null"}]})", "'oneOf'");
  expect_refused(R"({"$ref":"#/$defs/s","maxLength":3,"$defs":{"s":{"type":"string"}}})", "beside '$ref'");
  expect_refused(R"({"type":"string","anyOf":[{"maxLength":3}]})", "beside 'anyOf'");
  expect_refused(R"({"type":"array","prefixItems":[true],"items":false})", "'prefixItems'");
  expect_refused(R"({"type":"string","maxLength":4294967298})", "'maxLength'");
  expect_refused(R"({"type":"string","minLength":5,"maxLength":2})", "above");
  expect_refused(R"({"type":"integer","minimum":1e300})", "2^53");
  expect_refused(R"({"type":"integer","minimum":0.5})", "2^53");
  expect_refused(R"({"type":"integer","exclusiveMinimum":3,"maximum":3})", "no integer");
  expect_refused(R"({"type":["string","string"]})", "twice");
  expect_refused("{", "not valid JSON");
}

TEST(SchemaRules, TypeListsThatMultiplyAreBounded) {
  // The converter copies a schema per entry of a type list: nested lists
  // multiply (a few hundred bytes could take seconds and gigabytes).
  std::string nested = R"({"type":"string"})";
  for (int i = 0; i < 3; ++i) nested = R"({"type":["object","null"],"properties":{"a":)" + nested + "}}";
  EXPECT_TRUE(check_schema(nested, "p").ok());  // 2^3 = 8 alternatives
  nested = R"({"type":["object","null"],"properties":{"a":)" + nested + "}}";
  nested = R"({"type":["object","null"],"properties":{"a":)" + nested + "}}";
  expect_refused(nested, "multiply");
}

TEST(SchemaRules, DepthIsBounded) {
  std::string deep;
  for (unsigned i = 0; i < kMaxSchemaDepth; ++i) deep += R"({"items":)";
  deep += "{}";
  for (unsigned i = 0; i < kMaxSchemaDepth; ++i) deep += "}";
  expect_refused(deep, "deeper");
  std::string ok;
  for (unsigned i = 1; i < kMaxSchemaDepth; ++i) ok += R"({"items":)";
  ok += "{}";
  for (unsigned i = 1; i < kMaxSchemaDepth; ++i) ok += "}";
  EXPECT_TRUE(check_schema(ok, "p").ok()) << check_schema(ok, "p").error().message;
}

TEST(SchemaRules, EveryRequestSchemaIsChecked) {
  GenerationRequest r;
  r.messages = {{"user", "x"}};
  r.tools = {{"f", "", R"({"type":"object"})", false}, {"g", "", R"({"type":"array","uniqueItems":true})", false}};
  auto st = check_request_schemas(r);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("tools[1].function.parameters"), std::string::npos);
  r.tools.pop_back();
  EXPECT_TRUE(check_request_schemas(r).ok());
  r.response_format = {ResponseFormat::Type::json_schema, "s", "", true};
  EXPECT_FALSE(check_request_schemas(r).ok());
}

}  // namespace
}  // namespace agora::protocol
