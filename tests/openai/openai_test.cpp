// The OpenAI surface as pure functions: request parsing and validation, and
// response / stream chunk formatting checked field by field as JSON.
#include "openai/openai.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <algorithm>
#include <limits>
#include <string>
#include <variant>
#include <vector>

namespace agora::openai {
namespace {

namespace json = boost::json;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

// ---- helpers ----

ChatRequest parse_ok(std::string_view body, const RequestLimits& limits = {}) {
  auto r = parse_chat_request(body, limits);
  if (auto* e = std::get_if<ApiError>(&r)) {
    ADD_FAILURE() << "rejected: " << body << "\n-> param '" << e->param << "': " << e->message;
    return {};
  }
  return std::get<ChatRequest>(std::move(r));
}

ApiError parse_err(std::string_view body, const RequestLimits& limits = {}) {
  auto r = parse_chat_request(body, limits);
  if (!std::holds_alternative<ApiError>(r)) {
    ADD_FAILURE() << "accepted: " << body;
    return {};
  }
  const auto& e = std::get<ApiError>(r);
  EXPECT_EQ(e.status, 400) << body;
  EXPECT_EQ(e.type, "invalid_request_error") << body;
  EXPECT_FALSE(e.message.empty()) << body;
  return e;
}

// A minimal valid body with `extra` (`"key": value, ...`) appended.
std::string body_with(std::string_view extra) {
  std::string b = R"({"model":"m","messages":[{"role":"user","content":"hi"}])";
  if (!extra.empty()) {
    b += ',';
    b += extra;
  }
  b += '}';
  return b;
}

json::value parse_json(std::string_view text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);  // strict: rejects invalid UTF-8 too
  EXPECT_FALSE(ec) << ec.message() << " in: " << text;
  return v;
}

std::vector<std::string> keys(const json::value& v) {
  std::vector<std::string> out;
  if (!v.is_object()) {
    ADD_FAILURE() << "not an object: " << v;
    return out;
  }
  for (const auto& kv : v.get_object()) out.emplace_back(kv.key());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// Splits an SSE stream into the JSON payloads of its `data:` events.
std::vector<std::string> sse_payloads(const std::string& stream) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < stream.size()) {
    const size_t end = stream.find("\n\n", pos);
    if (end == std::string::npos) {
      ADD_FAILURE() << "unterminated event: " << stream.substr(pos);
      break;
    }
    const std::string event = stream.substr(pos, end - pos);
    EXPECT_TRUE(event.starts_with("data: ")) << event;
    EXPECT_EQ(event.find('\n'), std::string::npos) << "multi-line event: " << event;
    out.push_back(event.substr(std::min<size_t>(6, event.size())));
    pos = end + 2;
  }
  return out;
}

std::vector<int64_t> byte_values(std::string_view s) {
  std::vector<int64_t> out;
  for (char c : s) out.push_back(static_cast<unsigned char>(c));
  return out;
}

std::vector<int64_t> json_ints(const json::value& v) {
  std::vector<int64_t> out;
  for (const auto& x : v.as_array()) out.push_back(x.as_int64());
  return out;
}

Provenance test_provenance() {
  Provenance p;
  p.provider_id = "prov_1";
  p.model_sha256 = std::string(64, 'c');
  p.generation_id = "gen_abc";
  return p;
}

std::vector<protocol::TokenLogprob> fragment_logprobs() {
  protocol::TokenLogprob a;
  a.token = 10;
  a.text = "\xE2\x82";  // part of a character
  a.logprob = -0.5f;
  a.top = {{10, "\xE2\x82", -0.5f}, {11, "\xFF", -1.25f}};
  protocol::TokenLogprob b;
  b.token = 12;
  b.text = "\xAC!";
  b.logprob = -2.0f;
  return {a, b};
}

// ---- parse_chat_request: accepted requests ----

TEST(ParseChatRequest, MinimalRequestGetsDefaults) {
  const ChatRequest r = parse_ok(R"({"model":"llama","messages":[{"role":"user","content":"Hello"}]})");
  EXPECT_EQ(r.model, "llama");
  ASSERT_EQ(r.generation.messages.size(), 1u);
  EXPECT_EQ(r.generation.messages[0].role, "user");
  EXPECT_EQ(r.generation.messages[0].content, "Hello");
  EXPECT_FALSE(r.generation.prompt.has_value());
  EXPECT_FALSE(r.max_tokens_given);
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.include_usage);
  EXPECT_EQ(r.user, "");
  const protocol::GenerationRequest defaults;
  EXPECT_EQ(r.generation.max_tokens, defaults.max_tokens);
  EXPECT_FLOAT_EQ(r.generation.sampling.temperature, 1.0f);
  EXPECT_FLOAT_EQ(r.generation.sampling.top_p, 1.0f);
  EXPECT_FALSE(r.generation.sampling.seed.has_value());
  EXPECT_TRUE(r.generation.stop.empty());
  EXPECT_FALSE(r.generation.logprobs);
  EXPECT_EQ(r.routing.privacy_level, "standard");
  EXPECT_TRUE(r.routing.regions.empty());
  EXPECT_FALSE(r.routing.confidential);
}

TEST(ParseChatRequest, ContentAsStringOrTextPartsConcatenated) {
  const ChatRequest r = parse_ok(R"({"model":"m","messages":[
      {"role":"system","content":"sys"},
      {"role":"user","content":[{"type":"text","text":"Hello, "},{"type":"text","text":"world"}]},
      {"role":"assistant","content":"ok"},
      {"role":"user","content":[]}]})");
  ASSERT_EQ(r.generation.messages.size(), 4u);
  EXPECT_EQ(r.generation.messages[0].content, "sys");
  EXPECT_EQ(r.generation.messages[1].content, "Hello, world");
  EXPECT_EQ(r.generation.messages[2].role, "assistant");
  EXPECT_EQ(r.generation.messages[3].content, "");
}

TEST(ParseChatRequest, DeveloperRoleBecomesSystem) {
  const ChatRequest r = parse_ok(R"({"model":"m","messages":[{"role":"developer","content":"rules"},
                                                             {"role":"user","content":"q"}]})");
  ASSERT_EQ(r.generation.messages.size(), 2u);
  EXPECT_EQ(r.generation.messages[0].role, "system");
  EXPECT_EQ(r.generation.messages[0].content, "rules");
}

TEST(ParseChatRequest, AssistantMayHaveNullContent) {
  const ChatRequest r = parse_ok(R"({"model":"m","messages":[{"role":"user","content":"q"},
                                                             {"role":"assistant","content":null}]})");
  ASSERT_EQ(r.generation.messages.size(), 2u);
  EXPECT_EQ(r.generation.messages[1].content, "");
}

TEST(ParseChatRequest, MaxCompletionTokensWinsOverMaxTokens) {
  ChatRequest r = parse_ok(body_with(R"("max_tokens":10,"max_completion_tokens":20)"));
  EXPECT_TRUE(r.max_tokens_given);
  EXPECT_EQ(r.generation.max_tokens, 20);
  r = parse_ok(body_with(R"("max_completion_tokens":30,"max_tokens":10)"));
  EXPECT_EQ(r.generation.max_tokens, 30);
  r = parse_ok(body_with(R"("max_tokens":7)"));
  EXPECT_TRUE(r.max_tokens_given);
  EXPECT_EQ(r.generation.max_tokens, 7);
  r = parse_ok(body_with(R"("max_tokens":5.0)"));  // integral JSON numbers are integers
  EXPECT_EQ(r.generation.max_tokens, 5);
  r = parse_ok(body_with(R"("max_tokens":1e12)"));  // clamped; the node's context bounds it anyway
  EXPECT_EQ(r.generation.max_tokens, std::numeric_limits<int32_t>::max());
}

TEST(ParseChatRequest, SamplingParameters) {
  const ChatRequest r = parse_ok(body_with(
      R"("temperature":0,"top_p":0.5,"presence_penalty":-2,"frequency_penalty":1.5,"seed":42,"n":1,"user":"u-1")"));
  const auto& s = r.generation.sampling;
  EXPECT_FLOAT_EQ(s.temperature, 0.0f);
  EXPECT_FLOAT_EQ(s.top_p, 0.5f);
  EXPECT_FLOAT_EQ(s.presence_penalty, -2.0f);
  EXPECT_FLOAT_EQ(s.frequency_penalty, 1.5f);
  ASSERT_TRUE(s.seed.has_value());
  EXPECT_EQ(*s.seed, 42u);
  EXPECT_EQ(r.user, "u-1");
}

TEST(ParseChatRequest, SeedsBeyond32BitsAreAcceptedDeterministically) {
  for (std::string_view seed : {"0", "4294967297", "-1", "18446744073709551615"}) {
    const std::string extra = "\"seed\":" + std::string(seed);
    const ChatRequest a = parse_ok(body_with(extra));
    const ChatRequest b = parse_ok(body_with(extra));
    ASSERT_TRUE(a.generation.sampling.seed.has_value()) << seed;
    ASSERT_TRUE(b.generation.sampling.seed.has_value()) << seed;
    EXPECT_EQ(*a.generation.sampling.seed, *b.generation.sampling.seed) << seed;
  }
}

TEST(ParseChatRequest, StopAsStringOrArray) {
  ChatRequest r = parse_ok(body_with(R"("stop":"END")"));
  EXPECT_THAT(r.generation.stop, ElementsAre("END"));
  r = parse_ok(body_with(R"("stop":["a","b","c","d"])"));
  EXPECT_THAT(r.generation.stop, ElementsAre("a", "b", "c", "d"));
  r = parse_ok(body_with(R"("stop":[])"));
  EXPECT_TRUE(r.generation.stop.empty());
}

TEST(ParseChatRequest, LogitBias) {
  const ChatRequest r = parse_ok(body_with(R"("logit_bias":{"0":-100,"50256":100,"17":2.5})"));
  auto lb = r.generation.sampling.logit_bias;
  std::sort(lb.begin(), lb.end());
  ASSERT_EQ(lb.size(), 3u);
  EXPECT_EQ(lb[0].first, 0);
  EXPECT_FLOAT_EQ(lb[0].second, -100.0f);
  EXPECT_EQ(lb[1].first, 17);
  EXPECT_FLOAT_EQ(lb[1].second, 2.5f);
  EXPECT_EQ(lb[2].first, 50256);
  EXPECT_FLOAT_EQ(lb[2].second, 100.0f);
}

TEST(ParseChatRequest, LogprobsAndTopLogprobs) {
  const ChatRequest r = parse_ok(body_with(R"("logprobs":true,"top_logprobs":20)"));
  EXPECT_TRUE(r.generation.logprobs);
  EXPECT_EQ(r.generation.top_logprobs, 20);
}

TEST(ParseChatRequest, StreamAndIncludeUsage) {
  ChatRequest r = parse_ok(body_with(R"("stream":true)"));
  EXPECT_TRUE(r.stream);
  EXPECT_FALSE(r.include_usage);
  r = parse_ok(body_with(R"("stream":true,"stream_options":{"include_usage":true})"));
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  r = parse_ok(body_with(R"("stream":true,"stream_options":{"include_usage":false})"));
  EXPECT_FALSE(r.include_usage);
}

TEST(ParseChatRequest, UnknownFieldsAreIgnored) {
  const ChatRequest r = parse_ok(body_with(
      R"("metadata":{"a":"b"},"store":false,"service_tier":"auto","parallel_tool_calls":true,"x_future":[1,{"y":2}])"));
  EXPECT_EQ(r.model, "m");
  ASSERT_EQ(r.generation.messages.size(), 1u);
  // Unknown fields inside a message are ignored as well.
  const ChatRequest named = parse_ok(R"({"model":"m","messages":[{"role":"user","content":"hi","name":"bob"}]})");
  EXPECT_EQ(named.generation.messages.size(), 1u);
}

TEST(ParseChatRequest, NullOptionalFieldsAreAbsent) {
  const ChatRequest r = parse_ok(body_with(
      R"("max_tokens":null,"max_completion_tokens":null,"n":null,"temperature":null,"top_p":null,)"
      R"("presence_penalty":null,"frequency_penalty":null,"seed":null,"logit_bias":null,"stop":null,)"
      R"("logprobs":null,"top_logprobs":null,"stream":null,"stream_options":null,"user":null,"tools":null,)"
      R"("functions":null,"response_format":null,"routing_preferences":null,"confidential":null)"));
  EXPECT_FALSE(r.max_tokens_given);
  EXPECT_FLOAT_EQ(r.generation.sampling.temperature, 1.0f);
  EXPECT_FALSE(r.generation.sampling.seed.has_value());
  EXPECT_TRUE(r.generation.stop.empty());
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.include_usage);
  EXPECT_EQ(r.routing.privacy_level, "standard");
  EXPECT_FALSE(r.routing.confidential);
}

TEST(ParseChatRequest, AcceptedNoOpFeatureFields) {
  // The no-op forms of unsupported features are fine.
  const ChatRequest r = parse_ok(body_with(R"("tools":[],"response_format":{"type":"text"})"));
  EXPECT_EQ(r.model, "m");
}

TEST(ParseChatRequest, RoutingPreferences) {
  ChatRequest r = parse_ok(body_with(R"("routing_preferences":{"privacyLevel":"verified","region":"eu-west"})"));
  EXPECT_EQ(r.routing.privacy_level, "verified");
  EXPECT_THAT(r.routing.regions, ElementsAre("eu-west"));
  EXPECT_FALSE(r.routing.confidential);

  r = parse_ok(body_with(R"("routing_preferences":{"region":["eu-west","us-east"]},"confidential":true)"));
  EXPECT_EQ(r.routing.privacy_level, "standard");
  EXPECT_THAT(r.routing.regions, ElementsAre("eu-west", "us-east"));
  EXPECT_TRUE(r.routing.confidential);

  r = parse_ok(body_with(R"("routing_preferences":{"privacyLevel":"standard","region":[]})"));
  EXPECT_TRUE(r.routing.regions.empty());
}

// ---- parse_chat_request: rejected requests ----

TEST(ParseChatRequest, RejectsInvalidJson) {
  for (std::string_view body : {"", "{", "not json", R"({"model":"m",})", "{\"model\":\"\xFF\"}"}) {
    const ApiError e = parse_err(body);
    EXPECT_EQ(e.param, "") << body;
    EXPECT_THAT(e.message, HasSubstr("not valid JSON")) << body;
  }
}

TEST(ParseChatRequest, RejectsNonObjectBody) {
  for (std::string_view body : {"[]", "\"hi\"", "null", "1"}) {
    EXPECT_THAT(parse_err(body).message, HasSubstr("JSON object")) << body;
  }
}

TEST(ParseChatRequest, RejectsJsonDeeperThanTheLimit) {
  RequestLimits limits;
  limits.max_json_depth = 8;
  // The body is depth 1; "x" adds 7 more: exactly at the limit.
  std::string at = body_with(R"("x":)" + std::string(7, '[') + std::string(7, ']'));
  EXPECT_EQ(parse_ok(at, limits).model, "m");
  std::string over = body_with(R"("x":)" + std::string(8, '[') + std::string(8, ']'));
  const ApiError e = parse_err(over, limits);
  EXPECT_EQ(e.param, "");
  EXPECT_THAT(e.message, HasSubstr("deeper than 8"));
  // With the default limit, a hostile body is refused the same way.
  const ApiError deep = parse_err(std::string(100'000, '['));
  EXPECT_THAT(deep.message, HasSubstr("deeper than 48"));
}

TEST(ParseChatRequest, RejectsMissingOrBadModel) {
  EXPECT_EQ(parse_err(R"({"messages":[{"role":"user","content":"hi"}]})").param, "model");
  EXPECT_EQ(parse_err(R"({"model":null,"messages":[{"role":"user","content":"hi"}]})").param, "model");
  EXPECT_EQ(parse_err(R"({"model":"","messages":[{"role":"user","content":"hi"}]})").param, "model");
  EXPECT_EQ(parse_err(R"({"model":")" + std::string(257, 'm') + R"(","messages":[{"role":"user","content":"hi"}]})").param,
            "model");
  const ApiError e = parse_err(R"({"model":7,"messages":[{"role":"user","content":"hi"}]})");
  EXPECT_EQ(e.param, "model");
  EXPECT_THAT(e.message, HasSubstr("must be a string"));
}

TEST(ParseChatRequest, RejectsMissingOrBadMessages) {
  EXPECT_EQ(parse_err(R"({"model":"m"})").param, "messages");
  EXPECT_EQ(parse_err(R"({"model":"m","messages":[]})").param, "messages");
  EXPECT_EQ(parse_err(R"({"model":"m","messages":"hi"})").param, "messages");
  EXPECT_EQ(parse_err(R"({"model":"m","messages":["hi"]})").param, "messages[0]");
  EXPECT_EQ(parse_err(R"({"model":"m","messages":[{"content":"hi"}]})").param, "messages[0].role");
  EXPECT_EQ(parse_err(R"({"model":"m","messages":[{"role":"robot","content":"hi"}]})").param, "messages[0].role");
  EXPECT_EQ(parse_err(R"({"model":"m","messages":[{"role":"user"}]})").param, "messages[0].content");
  EXPECT_EQ(parse_err(R"({"model":"m","messages":[{"role":"user","content":null}]})").param, "messages[0].content");
  EXPECT_EQ(parse_err(R"({"model":"m","messages":[{"role":"user","content":5}]})").param, "messages[0].content");
  EXPECT_EQ(parse_err(R"({"model":"m","messages":[{"role":"user","content":[5]}]})").param, "messages[0].content[0]");
  EXPECT_EQ(parse_err(R"({"model":"m","messages":[{"role":"user","content":[{"text":"a"}]}]})").param,
            "messages[0].content[0].type");
  EXPECT_EQ(parse_err(R"({"model":"m","messages":[{"role":"user","content":[{"type":"text"}]}]})").param,
            "messages[0].content[0].text");
}

TEST(ParseChatRequest, RejectsImagePartsNamingThePart) {
  const ApiError e = parse_err(R"({"model":"m","messages":[{"role":"system","content":"s"},
      {"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"http://x"}}]}]})");
  EXPECT_EQ(e.param, "messages[1].content[1].type");
  EXPECT_THAT(e.message, HasSubstr("image_url"));
}

TEST(ParseChatRequest, RejectsMessagesOverTheLimit) {
  RequestLimits limits;
  limits.max_messages = 3;
  const std::string msg = R"({"role":"user","content":"x"})";
  EXPECT_EQ(parse_ok(R"({"model":"m","messages":[)" + msg + "," + msg + "," + msg + "]}", limits).generation.messages.size(),
            3u);
  const ApiError e = parse_err(R"({"model":"m","messages":[)" + msg + "," + msg + "," + msg + "," + msg + "]}", limits);
  EXPECT_EQ(e.param, "messages");
  EXPECT_THAT(e.message, HasSubstr("3"));
}

TEST(ParseChatRequest, RejectsInvalidUtf8FromEscapes) {
  // A lone surrogate written as an escape is not text.
  const ApiError e = parse_err(R"({"model":"m","messages":[{"role":"user","content":"\ud800"}]})");
  EXPECT_FALSE(e.message.empty());
}

TEST(ParseChatRequest, RejectsMaxTokensBelowOne) {
  ApiError e = parse_err(body_with(R"("max_tokens":0)"));
  EXPECT_EQ(e.param, "max_tokens");
  e = parse_err(body_with(R"("max_tokens":-5)"));
  EXPECT_EQ(e.param, "max_tokens");
  e = parse_err(body_with(R"("max_completion_tokens":0,"max_tokens":10)"));
  EXPECT_EQ(e.param, "max_completion_tokens");
}

TEST(ParseChatRequest, RejectsUnsupportedFeatures) {
  ApiError e = parse_err(body_with(R"("n":2)"));
  EXPECT_EQ(e.param, "n");
  EXPECT_EQ(parse_err(body_with(R"("n":0)")).param, "n");
  // Tools and response formats: tests/openai/tools_test.cpp.
}

TEST(ParseChatRequest, RejectsOutOfRangeSampling) {
  struct Case {
    std::string_view extra;
    std::string_view param;
  };
  const Case cases[] = {
      {R"("temperature":3)", "temperature"},
      {R"("temperature":-0.1)", "temperature"},
      {R"("temperature":1e300)", "temperature"},
      {R"("top_p":0)", "top_p"},
      {R"("top_p":1.5)", "top_p"},
      {R"("presence_penalty":2.5)", "presence_penalty"},
      {R"("frequency_penalty":-3)", "frequency_penalty"},
      {R"("top_logprobs":21,"logprobs":true)", "top_logprobs"},
      {R"("top_logprobs":-1,"logprobs":true)", "top_logprobs"},
      {R"("top_logprobs":5)", "top_logprobs"},  // needs logprobs
  };
  for (const auto& c : cases) {
    const ApiError e = parse_err(body_with(c.extra));
    EXPECT_EQ(e.param, c.param) << c.extra << " -> " << e.message;
    EXPECT_THAT(e.message, HasSubstr(std::string(c.param))) << c.extra;
  }
}

TEST(ParseChatRequest, WrongTypesNameTheParam) {
  struct Case {
    std::string_view extra;
    std::string_view param;
  };
  const Case cases[] = {
      {R"("temperature":"hot")", "temperature"},
      {R"("top_p":true)", "top_p"},
      {R"("presence_penalty":[0])", "presence_penalty"},
      {R"("frequency_penalty":{})", "frequency_penalty"},
      {R"("max_tokens":"10")", "max_tokens"},
      {R"("max_tokens":10.5)", "max_tokens"},
      {R"("max_completion_tokens":false)", "max_completion_tokens"},
      {R"("n":"1")", "n"},
      {R"("seed":1.5)", "seed"},
      {R"("logprobs":"yes")", "logprobs"},
      {R"("top_logprobs":"2")", "top_logprobs"},
      {R"("stream":1)", "stream"},
      {R"("stream":true,"stream_options":true)", "stream_options"},
      {R"("stream":true,"stream_options":{"include_usage":"yes"})", "stream_options.include_usage"},
      {R"("user":5)", "user"},
      {R"("stop":5)", "stop"},
      {R"("stop":["a",5])", "stop"},
      {R"("logit_bias":[1])", "logit_bias"},
      {R"("confidential":"yes")", "confidential"},
      {R"("routing_preferences":"eu")", "routing_preferences"},
      {R"("routing_preferences":{"privacyLevel":5})", "routing_preferences.privacyLevel"},
      {R"("routing_preferences":{"region":5})", "routing_preferences.region"},
      {R"("routing_preferences":{"region":["eu",5]})", "routing_preferences.region"},
  };
  for (const auto& c : cases) {
    const ApiError e = parse_err(body_with(c.extra));
    EXPECT_EQ(e.param, c.param) << c.extra << " -> " << e.message;
  }
  EXPECT_THAT(parse_err(body_with(R"("temperature":"hot")")).message, HasSubstr("must be a number, not a string"));
}

TEST(ParseChatRequest, RejectsBadStop) {
  ApiError e = parse_err(body_with(R"("stop":["a","b","c","d","e"])"));
  EXPECT_EQ(e.param, "stop");
  EXPECT_THAT(e.message, HasSubstr("4"));
  EXPECT_EQ(parse_err(body_with(R"("stop":"")")).param, "stop");
  EXPECT_EQ(parse_err(body_with(R"("stop":["a",""])")).param, "stop");
  RequestLimits limits;
  limits.max_stop = 1;
  EXPECT_EQ(parse_err(body_with(R"("stop":["a","b"])"), limits).param, "stop");
}

TEST(ParseChatRequest, RejectsBadLogitBias) {
  for (std::string_view extra : {R"("logit_bias":{"abc":1})", R"("logit_bias":{"-1":1})", R"("logit_bias":{"1.5":1})",
                                 R"("logit_bias":{"":1})", R"("logit_bias":{"12x":1})", R"("logit_bias":{" 1":1})",
                                 R"("logit_bias":{"2147483648":1})", R"("logit_bias":{"99999999999999999999":1})"}) {
    const ApiError e = parse_err(body_with(extra));
    EXPECT_EQ(e.param, "logit_bias") << extra;
    EXPECT_THAT(e.message, HasSubstr("keys")) << extra;
  }
  for (std::string_view extra : {R"("logit_bias":{"1":101})", R"("logit_bias":{"1":-100.5})", R"("logit_bias":{"1":"5"})",
                                 R"("logit_bias":{"1":null})"}) {
    EXPECT_EQ(parse_err(body_with(extra)).param, "logit_bias") << extra;
  }
}

TEST(ParseChatRequest, RejectsStreamOptionsWithoutStream) {
  EXPECT_EQ(parse_err(body_with(R"("stream_options":{"include_usage":true})")).param, "stream_options");
  EXPECT_EQ(parse_err(body_with(R"("stream":false,"stream_options":{"include_usage":true})")).param,
            "stream_options");
}

TEST(ParseChatRequest, RejectsBadRoutingPreferences) {
  EXPECT_EQ(parse_err(body_with(R"("routing_preferences":{"privacyLevel":"secret"})")).param,
            "routing_preferences.privacyLevel");
  std::string many = R"("routing_preferences":{"region":[)";
  for (int i = 0; i < 65; ++i) many += (i ? ",\"r" : "\"r") + std::to_string(i) + "\"";
  many += "]}";
  EXPECT_EQ(parse_err(body_with(many)).param, "routing_preferences.region");
}

TEST(ParseChatRequest, RejectsOverlongUser) {
  EXPECT_EQ(parse_err(body_with(R"("user":")" + std::string(257, 'u') + "\"")).param, "user");
  EXPECT_EQ(parse_ok(body_with(R"("user":")" + std::string(256, 'u') + "\"")).user.size(), 256u);
}

// ---- error_body ----

TEST(ErrorBody, HasOpenAiShape) {
  ApiError e = invalid_request("temperature", "'temperature' must be \"between\" 0 and 2");
  const json::value v = parse_json(error_body(e));
  EXPECT_THAT(keys(v), ElementsAre("error"));
  const json::value& err = v.at("error");
  EXPECT_THAT(keys(err), UnorderedElementsAre("message", "type", "param", "code"));
  EXPECT_EQ(err.at("message").as_string(), "'temperature' must be \"between\" 0 and 2");
  EXPECT_EQ(err.at("type").as_string(), "invalid_request_error");
  EXPECT_EQ(err.at("param").as_string(), "temperature");
  EXPECT_TRUE(err.at("code").is_string());
  EXPECT_EQ(e.status, 400);
}

TEST(ErrorBody, EmptyParamAndCodeAreNull) {
  ApiError e;
  e.status = 503;
  e.type = "server_error";
  e.message = "no capacity";
  const json::value v = parse_json(error_body(e));
  const json::value& err = v.at("error");
  EXPECT_THAT(keys(err), UnorderedElementsAre("message", "type", "param", "code"));
  EXPECT_TRUE(err.at("param").is_null());
  EXPECT_TRUE(err.at("code").is_null());
  EXPECT_EQ(err.at("type").as_string(), "server_error");
  e.code = "model_not_found";
  EXPECT_EQ(parse_json(error_body(e)).at("error").at("code").as_string(), "model_not_found");
}

TEST(ErrorBody, InvalidUtf8MessageIsStillJson) {
  ApiError e = invalid_request("", std::string("bad byte \xFF here"));
  const json::value v = parse_json(error_body(e));
  EXPECT_THAT(std::string(v.at("error").at("message").as_string()), HasSubstr("\xEF\xBF\xBD"));
}

// ---- completion_body ----

TEST(CompletionBody, HasExactlyTheOpenAiFields) {
  CompletionResult r;
  r.text = "Hello \"world\"\n";
  r.finish = protocol::FinishReason::length;
  r.usage = {12, 34, 5};
  const json::value v = parse_json(completion_body("chatcmpl-1", 1700000000, "llama", r, test_provenance()));
  EXPECT_THAT(keys(v), ElementsAreArray(sorted({"id", "object", "created", "model", "system_fingerprint", "choices",
                                                "usage", "agora"})));
  EXPECT_EQ(v.at("id").as_string(), "chatcmpl-1");
  EXPECT_EQ(v.at("object").as_string(), "chat.completion");
  EXPECT_EQ(v.at("created").as_int64(), 1700000000);
  EXPECT_EQ(v.at("model").as_string(), "llama");
  EXPECT_TRUE(v.at("system_fingerprint").is_null());
  const auto& choices = v.at("choices").as_array();
  ASSERT_EQ(choices.size(), 1u);
  EXPECT_THAT(keys(choices[0]), ElementsAreArray(sorted({"index", "message", "logprobs", "finish_reason"})));
  EXPECT_EQ(choices[0].at("index").as_int64(), 0);
  EXPECT_THAT(keys(choices[0].at("message")), ElementsAreArray(sorted({"role", "content", "refusal"})));
  EXPECT_EQ(choices[0].at("message").at("role").as_string(), "assistant");
  EXPECT_EQ(choices[0].at("message").at("content").as_string(), "Hello \"world\"\n");
  EXPECT_TRUE(choices[0].at("message").at("refusal").is_null());
  EXPECT_TRUE(choices[0].at("logprobs").is_null());
  EXPECT_EQ(choices[0].at("finish_reason").as_string(), "length");
  const auto& usage = v.at("usage");
  EXPECT_THAT(keys(usage),
              ElementsAreArray(sorted({"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details"})));
  EXPECT_EQ(usage.at("prompt_tokens").as_int64(), 12);
  EXPECT_EQ(usage.at("completion_tokens").as_int64(), 34);
  EXPECT_EQ(usage.at("total_tokens").as_int64(), 46);
  EXPECT_EQ(usage.at("prompt_tokens_details").at("cached_tokens").as_int64(), 5);
  const auto& agora = v.at("agora");
  EXPECT_THAT(keys(agora), ElementsAreArray(sorted({"provider_id", "model_sha256", "generation_id", "attestation"})));
  EXPECT_EQ(agora.at("provider_id").as_string(), "prov_1");
  EXPECT_EQ(agora.at("model_sha256").as_string(), std::string(64, 'c'));
  EXPECT_EQ(agora.at("generation_id").as_string(), "gen_abc");
  EXPECT_EQ(agora.at("attestation").as_string(), "standard");
}

TEST(CompletionBody, FinishReasonsMapToOpenAiNames) {
  EXPECT_STREQ(openai_finish_reason(protocol::FinishReason::stop), "stop");
  EXPECT_STREQ(openai_finish_reason(protocol::FinishReason::length), "length");
  EXPECT_STREQ(openai_finish_reason(protocol::FinishReason::cancelled), "stop");
  CompletionResult r;
  r.finish = protocol::FinishReason::stop;
  EXPECT_EQ(parse_json(completion_body("c", 1, "m", r, {})).at("choices").at(0).at("finish_reason").as_string(), "stop");
}

TEST(CompletionBody, LogprobsContentHasByteArrays) {
  CompletionResult r;
  r.text = "\xE2\x82\xAC!";
  r.logprobs = fragment_logprobs();
  r.logprobs_requested = true;
  const json::value v = parse_json(completion_body("c", 1, "m", r, test_provenance()));
  const json::value& lp = v.at("choices").at(0).at("logprobs");
  EXPECT_THAT(keys(lp), ElementsAre("content", "refusal"));
  EXPECT_TRUE(lp.at("refusal").is_null());
  const auto& content = lp.at("content").as_array();
  ASSERT_EQ(content.size(), 2u);
  for (size_t i = 0; i < content.size(); ++i) {
    SCOPED_TRACE(i);
    const auto& want = r.logprobs[i];
    EXPECT_THAT(keys(content[i]), ElementsAreArray(sorted({"token", "logprob", "bytes", "top_logprobs"})));
    EXPECT_EQ(json_ints(content[i].at("bytes")), byte_values(want.text));
    EXPECT_FLOAT_EQ(static_cast<float>(content[i].at("logprob").to_number<double>()), want.logprob);
    const auto& top = content[i].at("top_logprobs").as_array();
    ASSERT_EQ(top.size(), want.top.size());
    for (size_t k = 0; k < top.size(); ++k) {
      EXPECT_THAT(keys(top[k]), ElementsAreArray(sorted({"token", "logprob", "bytes"})));
      EXPECT_EQ(json_ints(top[k].at("bytes")), byte_values(want.top[k].text));
      EXPECT_FLOAT_EQ(static_cast<float>(top[k].at("logprob").to_number<double>()), want.top[k].logprob);
    }
  }
  // A fragment's token string is replacement characters, its bytes the truth.
  EXPECT_EQ(content[0].at("token").as_string(), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(content[1].at("token").as_string(), "\xEF\xBF\xBD!");

  // Requested but empty: an empty content list, not null.
  r.logprobs.clear();
  const json::value e = parse_json(completion_body("c", 1, "m", r, {}));
  EXPECT_TRUE(e.at("choices").at(0).at("logprobs").at("content").as_array().empty());
}

TEST(CompletionBody, NonUtf8TextIsValidJson) {
  CompletionResult r;
  r.text = std::string("a\xFF\xC3(b\x00", 6);
  const json::value v = parse_json(completion_body("c", 1, "m\xFE", r, {}));
  const std::string content(v.at("choices").at(0).at("message").at("content").as_string());
  EXPECT_TRUE(content.starts_with("a\xEF\xBF\xBD")) << content;
  EXPECT_EQ(content.back(), '\0');
}

TEST(UsageJson, ParsesAndTotals) {
  const json::value v = parse_json(usage_json({7, 8, 0}));
  EXPECT_EQ(v.at("total_tokens").as_int64(), 15);
  EXPECT_EQ(v.at("prompt_tokens_details").at("cached_tokens").as_int64(), 0);
}

// ---- ChunkWriter ----

const std::vector<std::string> kChunkKeys = {"id", "object", "created", "model", "system_fingerprint", "choices"};

void expect_chunk_header(const json::value& v, std::string_view id, int64_t created, std::string_view model) {
  EXPECT_EQ(v.at("id").as_string(), id);
  EXPECT_EQ(v.at("object").as_string(), "chat.completion.chunk");
  EXPECT_EQ(v.at("created").as_int64(), created);
  EXPECT_EQ(v.at("model").as_string(), model);
  EXPECT_TRUE(v.at("system_fingerprint").is_null());
}

std::vector<std::string> with(std::vector<std::string> base, std::initializer_list<std::string> more) {
  base.insert(base.end(), more);
  return sorted(std::move(base));
}

TEST(ChunkWriter, StreamWithoutUsage) {
  ChunkWriter w("chatcmpl-9", 1700000001, "llama", /*include_usage=*/false, /*logprobs=*/false);
  std::string out;
  w.content(out, "Hel", {});
  w.content(out, "lo", {});
  w.finish(out, "!", {}, protocol::FinishReason::stop, test_provenance());
  ChunkWriter::done(out);
  ASSERT_TRUE(out.ends_with("data: [DONE]\n\n"));

  std::vector<std::string> events = sse_payloads(out);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events.back(), "[DONE]");
  std::string text;
  for (size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    const json::value v = parse_json(events[i]);
    expect_chunk_header(v, "chatcmpl-9", 1700000001, "llama");
    const auto& choices = v.at("choices").as_array();
    ASSERT_EQ(choices.size(), 1u);
    EXPECT_THAT(keys(choices[0]), ElementsAreArray(sorted({"index", "delta", "logprobs", "finish_reason"})));
    EXPECT_EQ(choices[0].at("index").as_int64(), 0);
    EXPECT_TRUE(choices[0].at("logprobs").is_null());
    const auto& delta = choices[0].at("delta");
    if (i == 0) {
      EXPECT_THAT(keys(delta), ElementsAre("content", "role"));
      EXPECT_EQ(delta.at("role").as_string(), "assistant");
    } else {
      EXPECT_THAT(keys(delta), ElementsAre("content"));
    }
    text += delta.at("content").as_string();
    if (i < 2) {
      EXPECT_THAT(keys(v), ElementsAreArray(sorted(kChunkKeys)));
      EXPECT_TRUE(choices[0].at("finish_reason").is_null());
    } else {
      // Without include_usage the finish chunk carries the provenance.
      EXPECT_THAT(keys(v), ElementsAreArray(with(kChunkKeys, {"agora"})));
      EXPECT_EQ(choices[0].at("finish_reason").as_string(), "stop");
      EXPECT_EQ(v.at("agora").at("generation_id").as_string(), "gen_abc");
      EXPECT_EQ(v.at("agora").at("provider_id").as_string(), "prov_1");
    }
  }
  EXPECT_EQ(text, "Hello!");
}

TEST(ChunkWriter, StreamWithUsage) {
  ChunkWriter w("id-2", 5, "m", /*include_usage=*/true, /*logprobs=*/false);
  std::string out;
  w.content(out, "a", {});
  w.content(out, "b", {});
  w.finish(out, "", {}, protocol::FinishReason::length, test_provenance());
  w.usage(out, {10, 2, 4}, test_provenance());
  ChunkWriter::done(out);

  std::vector<std::string> events = sse_payloads(out);
  ASSERT_EQ(events.size(), 5u);
  for (size_t i = 0; i < 2; ++i) {
    const json::value v = parse_json(events[i]);
    EXPECT_THAT(keys(v), ElementsAreArray(with(kChunkKeys, {"usage"})));
    EXPECT_TRUE(v.at("usage").is_null());
    expect_chunk_header(v, "id-2", 5, "m");
    EXPECT_EQ(v.at("choices").at(0).at("delta").as_object().contains("role"), i == 0);
  }
  const json::value fin = parse_json(events[2]);
  EXPECT_THAT(keys(fin), ElementsAreArray(with(kChunkKeys, {"usage"})));
  EXPECT_TRUE(fin.at("usage").is_null());
  EXPECT_EQ(fin.at("choices").at(0).at("finish_reason").as_string(), "length");
  EXPECT_TRUE(keys(fin.at("choices").at(0).at("delta")).empty());  // no text, not the first chunk

  const json::value u = parse_json(events[3]);
  expect_chunk_header(u, "id-2", 5, "m");
  EXPECT_THAT(keys(u), ElementsAreArray(with(kChunkKeys, {"usage", "agora"})));
  EXPECT_TRUE(u.at("choices").as_array().empty());
  EXPECT_EQ(u.at("usage").at("prompt_tokens").as_int64(), 10);
  EXPECT_EQ(u.at("usage").at("completion_tokens").as_int64(), 2);
  EXPECT_EQ(u.at("usage").at("total_tokens").as_int64(), 12);
  EXPECT_EQ(u.at("usage").at("prompt_tokens_details").at("cached_tokens").as_int64(), 4);
  EXPECT_EQ(u.at("agora").at("model_sha256").as_string(), std::string(64, 'c'));
  EXPECT_EQ(events[4], "[DONE]");
}

TEST(ChunkWriter, FinishAsFirstChunkCarriesRoleAndContent) {
  ChunkWriter w("x", 1, "m", false, false);
  std::string out;
  w.finish(out, "", {}, protocol::FinishReason::stop, {});
  const std::vector<std::string> events = sse_payloads(out);
  ASSERT_EQ(events.size(), 1u);
  const json::value v = parse_json(events[0]);
  const auto& delta = v.at("choices").at(0).at("delta");
  EXPECT_EQ(delta.at("role").as_string(), "assistant");
  EXPECT_EQ(delta.at("content").as_string(), "");
  EXPECT_EQ(v.at("choices").at(0).at("finish_reason").as_string(), "stop");
}

TEST(ChunkWriter, LogprobsChunksCarryByteArrays) {
  ChunkWriter w("x", 1, "m", false, /*logprobs=*/true);
  std::string out;
  const auto lps = fragment_logprobs();
  w.content(out, "", {lps[0]});      // only logprobs released: the character is not complete yet
  w.content(out, "\xE2\x82\xAC!", {lps[1]});
  w.finish(out, "", {}, protocol::FinishReason::stop, {});
  const std::vector<std::string> events = sse_payloads(out);
  ASSERT_EQ(events.size(), 3u);
  for (size_t i = 0; i < 2; ++i) {
    SCOPED_TRACE(i);
    const json::value v = parse_json(events[i]);
    const json::value& lp = v.at("choices").at(0).at("logprobs");
    EXPECT_THAT(keys(lp), ElementsAre("content", "refusal"));
    const auto& content = lp.at("content").as_array();
    ASSERT_EQ(content.size(), 1u);
    EXPECT_EQ(json_ints(content[0].at("bytes")), byte_values(lps[i].text));
    EXPECT_EQ(content[0].at("top_logprobs").as_array().size(), lps[i].top.size());
  }
  EXPECT_EQ(parse_json(events[1]).at("choices").at(0).at("delta").at("content").as_string(), "\xE2\x82\xAC!");
  // A finish chunk with no new tokens has null logprobs.
  EXPECT_TRUE(parse_json(events[2]).at("choices").at(0).at("logprobs").is_null());
}

TEST(ChunkWriter, NonUtf8AndControlTextIsValidJson) {
  ChunkWriter w("id\"\n", 1, "m\xFF", true, true);
  std::string out;
  w.content(out, std::string("\xC3\x00\"\x1f", 4), fragment_logprobs());
  w.finish(out, "\xF0\x9F\x98", fragment_logprobs(), protocol::FinishReason::stop, {});
  for (const auto& e : sse_payloads(out)) {
    const json::value v = parse_json(e);
    EXPECT_EQ(v.at("id").as_string(), "id\"\n");
  }
}

TEST(ChunkWriter, ErrorEventShape) {
  std::string out;
  ApiError e;
  e.status = 502;
  e.type = "server_error";
  e.code = "node_failed";
  e.message = "the node went away";
  ChunkWriter::error(out, e);
  ASSERT_TRUE(out.starts_with("data: "));
  ASSERT_TRUE(out.ends_with("\n\n"));
  const std::vector<std::string> events = sse_payloads(out);
  ASSERT_EQ(events.size(), 1u);
  const json::value v = parse_json(events[0]);
  EXPECT_THAT(keys(v), ElementsAre("error"));
  EXPECT_THAT(keys(v.at("error")), UnorderedElementsAre("message", "type", "param", "code"));
  EXPECT_EQ(v.at("error").at("code").as_string(), "node_failed");
  EXPECT_TRUE(v.at("error").at("param").is_null());
  EXPECT_EQ(out, "data: " + error_body(e) + "\n\n");
}

TEST(ChunkWriter, DoneMarker) {
  std::string out = "x";
  ChunkWriter::done(out);
  EXPECT_EQ(out, "xdata: [DONE]\n\n");
}

}  // namespace
}  // namespace agora::openai
