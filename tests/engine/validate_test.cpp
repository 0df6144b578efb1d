#include <gtest/gtest.h>

#include "engine/engine.h"

namespace agora::engine {
namespace {

GenerationRequest good() {
  GenerationRequest r;
  r.messages = {{"user", "hi"}};
  return r;
}

void expect_invalid(const GenerationRequest& r, const std::string& param) {
  auto st = validate_request(r);
  ASSERT_FALSE(st.ok()) << param;
  EXPECT_EQ(st.error().code, Errc::invalid_argument);
  EXPECT_NE(st.error().message.find(param), std::string::npos) << st.error().message;
}

TEST(ValidateRequest, AcceptsDefaults) { EXPECT_TRUE(validate_request(good()).ok()); }

TEST(ValidateRequest, NamesTheBadParameter) {
  auto r = good();
  r.sampling.temperature = 2.5f;
  expect_invalid(r, "temperature");
  r = good();
  r.sampling.temperature = std::numeric_limits<float>::quiet_NaN();
  expect_invalid(r, "temperature");
  r = good();
  r.sampling.top_p = 0;
  expect_invalid(r, "top_p");
  r = good();
  r.sampling.top_k = -1;
  expect_invalid(r, "top_k");
  r = good();
  r.sampling.min_p = 1.5f;
  expect_invalid(r, "min_p");
  r = good();
  r.sampling.presence_penalty = -3;
  expect_invalid(r, "presence_penalty");
  r = good();
  r.sampling.frequency_penalty = 2.5f;
  expect_invalid(r, "frequency_penalty");
  r = good();
  r.sampling.logit_bias = {{5, 101.0f}};
  expect_invalid(r, "logit_bias");
  r = good();
  r.sampling.logit_bias = {{-1, 1.0f}};
  expect_invalid(r, "logit_bias");
  r = good();
  r.max_tokens = 0;
  expect_invalid(r, "max_tokens");
  r = good();
  r.stop = {""};
  expect_invalid(r, "stop");
  r = good();
  r.stop = std::vector<std::string>(kMaxStopSequences + 1, "x");
  expect_invalid(r, "stop");
  r = good();
  r.stop = {"\xFF"};
  expect_invalid(r, "stop");
  r = good();
  r.logprobs = true;
  r.top_logprobs = kMaxTopLogprobs + 1;
  expect_invalid(r, "top_logprobs");
  r = good();
  r.top_logprobs = 3;  // without logprobs
  expect_invalid(r, "top_logprobs");
  r = good();
  r.messages = {{"robot", "x"}};
  expect_invalid(r, "messages[0].role");
  r = good();
  r.messages = {{"user", "\xC0\xAF"}};
  expect_invalid(r, "messages[0].content");
  r = good();
  r.messages.clear();
  expect_invalid(r, "messages");
  r = good();
  r.prompt = "both";
  expect_invalid(r, "messages");
}

TEST(ValidateRequest, ToolRulesNameTheParameter) {
  auto tools = [] {
    GenerationRequest r = good();
    r.tools = {{"get_weather", "Weather", R"({"type":"object"})", false}};
    return r;
  };
  EXPECT_TRUE(validate_request(tools()).ok());
  auto r = tools();
  r.tools[0].name = "has space";
  expect_invalid(r, "tools[0].function.name");
  r = tools();
  r.tools.push_back(r.tools[0]);
  expect_invalid(r, "tools[1].function.name");
  r = tools();
  r.tools.assign(kMaxTools + 1, r.tools[0]);
  for (size_t i = 0; i < r.tools.size(); ++i) r.tools[i].name = "f" + std::to_string(i);
  expect_invalid(r, "tools");
  r = tools();
  r.tools[0].description.assign(kMaxToolDefinitionBytes, 'x');
  expect_invalid(r, "tools");
  r = tools();
  r.tool_choice = {ToolChoiceMode::named, "nope"};
  expect_invalid(r, "tool_choice");
  r = good();
  r.tool_choice = {ToolChoiceMode::required, ""};
  expect_invalid(r, "tool_choice");
  // A tool message must answer an earlier call.
  r = tools();
  r.messages.push_back({"tool", "21 degrees", {}, "call_1"});
  expect_invalid(r, "messages[1].tool_call_id");
  r = tools();
  r.messages.push_back({"assistant", "", {{"call_1", "get_weather", "{}"}}, ""});
  r.messages.push_back({"tool", "21 degrees", {}, "call_1"});
  EXPECT_TRUE(validate_request(r).ok());
  r.messages.push_back({"tool", "again", {}, ""});
  expect_invalid(r, "messages[3].tool_call_id");
  r = tools();
  r.messages.push_back({"user", "x", {{"call_1", "get_weather", "{}"}}, ""});
  expect_invalid(r, "messages[1].tool_calls");
  r = tools();
  r.prompt = "raw";
  r.messages.clear();
  expect_invalid(r, "tools");
  r = good();
  r.prompt = "raw";
  r.messages.clear();
  r.response_format.type = ResponseFormat::Type::json_object;
  expect_invalid(r, "response_format");
}

}  // namespace
}  // namespace agora::engine
