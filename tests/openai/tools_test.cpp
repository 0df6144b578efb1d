// Function calling and structured outputs in the OpenAI codec: parsing
// tools, tool_choice, parallel_tool_calls, response_format and the messages
// that carry calls and results (each error naming its parameter), and the
// response shapes OpenAI's clients read: message.tool_calls, streamed
// delta.tool_calls, finish_reason "tool_calls", sealed errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <string>
#include <variant>

#include "openai/openai.h"

namespace agora::openai {
namespace {

namespace json = boost::json;
using ::testing::HasSubstr;
using Mode = protocol::ToolChoiceMode;
using Format = protocol::ResponseFormat::Type;

ChatRequest ok(std::string_view body) {
  auto r = parse_chat_request(body, {});
  if (auto* e = std::get_if<ApiError>(&r)) {
    ADD_FAILURE() << "rejected: " << body << "\n-> param '" << e->param << "': " << e->message;
    return {};
  }
  return std::get<ChatRequest>(std::move(r));
}

ApiError err(std::string_view body) {
  auto r = parse_chat_request(body, {});
  if (!std::holds_alternative<ApiError>(r)) {
    ADD_FAILURE() << "accepted: " << body;
    return {};
  }
  EXPECT_EQ(std::get<ApiError>(r).status, 400) << body;
  return std::get<ApiError>(r);
}

std::string with(std::string_view extra) {
  return std::string(R"({"model":"m","messages":[{"role":"user","content":"hi"}],)") + std::string(extra) + "}";
}

constexpr std::string_view kWeather =
    R"({"type":"function","function":{"name":"get_weather","description":"Weather in a city",)"
    R"("parameters":{"type":"object","properties":{"city":{"type":"string","maxLength":40}},"required":["city"]},"strict":true}})";

TEST(ToolsCodec, ParsesToolsAndTheirSchemasAsText) {
  const ChatRequest r = ok(with(std::string(R"("tools":[)") + std::string(kWeather) + "]"));
  ASSERT_EQ(r.generation.tools.size(), 1u);
  const auto& t = r.generation.tools[0];
  EXPECT_EQ(t.name, "get_weather");
  EXPECT_EQ(t.description, "Weather in a city");
  EXPECT_TRUE(t.strict);
  // The schema travels as JSON text, the same value.
  EXPECT_EQ(json::parse(t.parameters),
            json::parse(R"({"type":"object","properties":{"city":{"type":"string","maxLength":40}},"required":["city"]})"));
  EXPECT_EQ(r.generation.tool_choice.mode, Mode::automatic);
  EXPECT_TRUE(r.generation.parallel_tool_calls);
  EXPECT_TRUE(r.routing.needs_tools);
  EXPECT_FALSE(r.routing.needs_grammar);
}

TEST(ToolsCodec, ToolChoiceForms) {
  const std::string tools = std::string(R"("tools":[)") + std::string(kWeather) + "],";
  EXPECT_EQ(ok(with(tools + R"("tool_choice":"none")")).generation.tool_choice.mode, Mode::none);
  EXPECT_EQ(ok(with(tools + R"("tool_choice":"auto")")).generation.tool_choice.mode, Mode::automatic);
  EXPECT_EQ(ok(with(tools + R"("tool_choice":"required")")).generation.tool_choice.mode, Mode::required);
  const ChatRequest named =
      ok(with(tools + R"("tool_choice":{"type":"function","function":{"name":"get_weather"}},"parallel_tool_calls":false)"));
  EXPECT_EQ(named.generation.tool_choice.mode, Mode::named);
  EXPECT_EQ(named.generation.tool_choice.name, "get_weather");
  EXPECT_FALSE(named.generation.parallel_tool_calls);

  EXPECT_EQ(err(with(tools + R"("tool_choice":"always")")).param, "tool_choice");
  EXPECT_EQ(err(with(tools + R"("tool_choice":{"type":"function"})")).param, "tool_choice");
  EXPECT_EQ(err(with(tools + R"("tool_choice":{"type":"function","function":{"name":"other"}})")).param, "tool_choice");
  EXPECT_EQ(err(with(R"("tool_choice":"required")")).param, "tool_choice");
  EXPECT_EQ(err(with(tools + R"("parallel_tool_calls":"yes")")).param, "parallel_tool_calls");
}

TEST(ToolsCodec, BadToolDefinitionsNameTheParameter) {
  EXPECT_EQ(err(with(R"("tools":{})")).param, "tools");
  EXPECT_EQ(err(with(R"("tools":[{"type":"code_interpreter"}])")).param, "tools[0].type");
  EXPECT_EQ(err(with(R"("tools":[{"type":"function"}])")).param, "tools[0].function");
  EXPECT_EQ(err(with(R"("tools":[{"type":"function","function":{}}])")).param, "tools[0].function.name");
  EXPECT_EQ(err(with(R"("tools":[{"type":"function","function":{"name":"has space"}}])")).param,
            "tools[0].function.name");
  EXPECT_EQ(err(with(R"("tools":[{"type":"function","function":{"name":"f","parameters":"{}"}}])")).param,
            "tools[0].function.parameters");
  EXPECT_EQ(err(with(R"("tools":[{"type":"function","function":{"name":"f"}},{"type":"function","function":{"name":"f"}}])"))
                .param,
            "tools[1].function.name");
  // A keyword no grammar enforces is refused here already (the node checks again).
  const ApiError bounds = err(with(
      R"("tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"x":{"type":"number","minimum":1.5}}}}}])"));
  EXPECT_EQ(bounds.param, "tools[0].function.parameters");
  EXPECT_THAT(bounds.message, HasSubstr("minimum"));
  EXPECT_EQ(err(with(R"("functions":[{"name":"f"}])")).param, "functions");
  EXPECT_EQ(err(with(R"("function_call":"auto")")).param, "function_call");
}

TEST(ToolsCodec, BoundsOnToolCountAndDefinitionBytes) {
  std::string many = R"("tools":[)";
  for (int i = 0; i < 129; ++i) many += (i ? "," : "") + std::string(R"({"type":"function","function":{"name":"f)") + std::to_string(i) + "\"}}";
  EXPECT_EQ(err(with(many + "]")).param, "tools");
  const std::string big(70 * 1024, 'd');
  EXPECT_EQ(err(with(R"("tools":[{"type":"function","function":{"name":"f","description":")" + big + "\"}}]")).param,
            "tools");
  // Schema depth: 16 levels are accepted, 17 are not (and the body's own
  // depth limit leaves room for them).
  auto nested = [](int levels) {
    std::string schema;
    for (int i = 1; i < levels; ++i) schema += R"({"type":"object","properties":{"a":)";
    schema += R"({"type":"string"})";
    for (int i = 1; i < levels; ++i) schema += "}}";
    return with(R"("tools":[{"type":"function","function":{"name":"f","parameters":)" + schema + "}}]");
  };
  EXPECT_EQ(ok(nested(16)).generation.tools.size(), 1u);
  const ApiError e = err(nested(18));
  EXPECT_EQ(e.param, "tools[0].function.parameters");
  EXPECT_THAT(e.message, HasSubstr("deeper than 16"));
}

TEST(ToolsCodec, ConversationsWithCallsAndResults) {
  const ChatRequest r = ok(std::string(R"({"model":"m","tools":[)") + std::string(kWeather) + R"(],"messages":[
    {"role":"user","content":"weather in Paris?"},
    {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
    {"role":"tool","tool_call_id":"call_1","content":[{"type":"text","text":"sunny"}]}]})");
  ASSERT_EQ(r.generation.messages.size(), 3u);
  const auto& a = r.generation.messages[1];
  EXPECT_EQ(a.content, "");
  ASSERT_EQ(a.tool_calls.size(), 1u);
  EXPECT_EQ(a.tool_calls[0].id, "call_1");
  EXPECT_EQ(a.tool_calls[0].name, "get_weather");
  EXPECT_EQ(a.tool_calls[0].arguments, R"({"city":"Paris"})");
  EXPECT_EQ(r.generation.messages[2].role, "tool");
  EXPECT_EQ(r.generation.messages[2].tool_call_id, "call_1");
  EXPECT_EQ(r.generation.messages[2].content, "sunny");

  // A conversation with calls needs a tool-capable node even without tools.
  const ChatRequest history = ok(R"({"model":"m","messages":[{"role":"user","content":"q"},
    {"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},
    {"role":"tool","tool_call_id":"c","content":"r"}]})");
  EXPECT_TRUE(history.routing.needs_tools);
}

TEST(ToolsCodec, BadCallsAndResultsNameTheParameter) {
  EXPECT_EQ(err(R"({"model":"m","messages":[{"role":"user","content":"q"},{"role":"tool","content":"r","tool_call_id":"c"}]})").param,
            "messages[1].tool_call_id");  // answers no call
  EXPECT_EQ(err(R"({"model":"m","messages":[{"role":"tool","content":"r"}]})").param, "messages[0].tool_call_id");
  EXPECT_EQ(err(R"({"model":"m","messages":[{"role":"function","content":"r"}]})").param, "messages[0].role");
  EXPECT_EQ(err(R"({"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c"}]}]})").param,
            "messages[0].tool_calls[0].function");
  EXPECT_EQ(err(R"({"model":"m","messages":[{"role":"user","content":"q","tool_calls":[]}]})").param,
            "messages[0].tool_calls");
  EXPECT_EQ(err(R"({"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":{}}}]}]})")
                .param,
            "messages[0].tool_calls[0].function.arguments");
}

TEST(ToolsCodec, ToolOptionsWithoutToolsAndToolsWithConversationMemoryAreRefused) {
  // Without tools only the choices that need one are refused.
  EXPECT_FALSE(ok(with(R"("tool_choice":"none","parallel_tool_calls":true)")).routing.needs_tools);
  EXPECT_EQ(err(with(R"("tool_choice":{"type":"function","function":{"name":"f"}})")).param, "tool_choice");
  EXPECT_EQ(err(R"({"model":"m","messages":[{"role":"assistant","tool_calls":[]}]})").param, "messages[0].tool_calls");
  // Conversation memory keeps text turns only: calls would be lost.
  EXPECT_EQ(err(with(std::string(R"("conversation_id":"c1","tools":[)") + std::string(kWeather) + "]")).param,
            "conversation_id");
  EXPECT_EQ(ok(with(R"("conversation_id":"c1")")).conversation_id, "c1");
}

TEST(ToolsCodec, ResponseFormats) {
  EXPECT_EQ(ok(with(R"("response_format":{"type":"text"})")).generation.response_format.type, Format::text);
  const ChatRequest j = ok(with(R"("response_format":{"type":"json_object"})"));
  EXPECT_EQ(j.generation.response_format.type, Format::json_object);
  EXPECT_TRUE(j.routing.needs_grammar);
  EXPECT_FALSE(j.routing.needs_tools);
  const ChatRequest s = ok(with(
      R"("response_format":{"type":"json_schema","json_schema":{"name":"person","strict":true,"schema":{"type":"object","properties":{"age":{"type":"integer","minimum":0,"maximum":150}},"required":["age"]}}})"));
  const auto& f = s.generation.response_format;
  EXPECT_EQ(f.type, Format::json_schema);
  EXPECT_EQ(f.name, "person");
  EXPECT_TRUE(f.strict);
  EXPECT_EQ(json::parse(f.schema).at("properties").at("age").at("maximum"), json::value(150));

  EXPECT_EQ(err(with(R"("response_format":"json")")).param, "response_format");
  EXPECT_EQ(err(with(R"("response_format":{"type":"yaml"})")).param, "response_format.type");
  EXPECT_EQ(err(with(R"("response_format":{"type":"json_schema"})")).param, "response_format.json_schema");
  EXPECT_EQ(err(with(R"("response_format":{"type":"json_schema","json_schema":{"schema":{}}})")).param,
            "response_format.json_schema.name");
  EXPECT_EQ(err(with(R"("response_format":{"type":"json_schema","json_schema":{"name":"x"}})")).param,
            "response_format.json_schema.schema");
  const ApiError kw = err(with(
      R"("response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"array","uniqueItems":true}}})"));
  EXPECT_EQ(kw.param, "response_format.json_schema.schema");
  EXPECT_THAT(kw.message, HasSubstr("uniqueItems"));
}

TEST(ToolsCodec, SealedRequestsKeepToolFieldsInsideThePayload) {
  for (const char* k : {"tools", "tool_choice", "parallel_tool_calls", "response_format"}) {
    const std::string body = std::string(R"({"model":"m","max_tokens":8,")") + k +
                             R"(":null,"agora_sealed":{"v":1}})";
    EXPECT_EQ(err(body).param, k);
  }
}

// ---- responses

TEST(ToolsCodec, CompletionBodyCarriesCallsWithNullContent) {
  CompletionResult r;
  r.finish = protocol::FinishReason::tool_calls;
  add_tool_call_deltas(r.tool_calls, {{0, "call_a", "get_weather", ""}, {0, "", "", "{\"city\":"}});
  add_tool_call_deltas(r.tool_calls, {{0, "", "", "\"Paris\"}"}, {1, "call_b", "get_time", "{}"}});
  const json::value v = json::parse(completion_body("chatcmpl-1", 1, "m", r, {}));
  const auto& msg = v.at("choices").at(0).at("message");
  EXPECT_TRUE(msg.at("content").is_null());
  EXPECT_EQ(v.at("choices").at(0).at("finish_reason"), "tool_calls");
  const auto& calls = msg.at("tool_calls").as_array();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].at("id"), "call_a");
  EXPECT_EQ(calls[0].at("type"), "function");
  EXPECT_EQ(calls[0].at("function").at("name"), "get_weather");
  EXPECT_EQ(calls[0].at("function").at("arguments"), R"({"city":"Paris"})");
  EXPECT_EQ(calls[1].at("id"), "call_b");
  EXPECT_EQ(calls[1].at("function").at("arguments"), "{}");

  // Without calls the message has no tool_calls key at all.
  CompletionResult plain;
  plain.text = "hi";
  const json::value p = json::parse(completion_body("c", 1, "m", plain, {}));
  EXPECT_FALSE(p.at("choices").at(0).at("message").as_object().contains("tool_calls"));
  EXPECT_EQ(p.at("choices").at(0).at("message").at("content"), "hi");
}

TEST(ToolsCodec, StreamedCallsAreShapedAsOpenAIStreamsThem) {
  ChunkWriter cw("chatcmpl-1", 1, "m", /*include_usage=*/true, /*logprobs=*/false);
  std::string out;
  cw.tool_calls(out, {{0, "call_a", "get_weather", ""}});
  cw.tool_calls(out, {{0, "", "", "{\"city\":\"Paris\"}"}, {1, "call_b", "get_time", "{}"}});
  cw.finish(out, "", {}, protocol::FinishReason::tool_calls, {});
  std::vector<json::value> events;
  for (size_t pos = 0; pos < out.size();) {
    const size_t end = out.find("\n\n", pos);
    ASSERT_NE(end, std::string::npos);
    ASSERT_EQ(out.compare(pos, 6, "data: "), 0);
    events.push_back(json::parse(out.substr(pos + 6, end - pos - 6)));
    pos = end + 2;
  }
  ASSERT_EQ(events.size(), 3u);
  const auto& first = events[0].at("choices").at(0).at("delta");
  EXPECT_EQ(first.at("role"), "assistant");
  const auto& c0 = first.at("tool_calls").at(0);
  EXPECT_EQ(c0.at("index"), 0);
  EXPECT_EQ(c0.at("id"), "call_a");
  EXPECT_EQ(c0.at("type"), "function");
  EXPECT_EQ(c0.at("function").at("name"), "get_weather");
  EXPECT_EQ(c0.at("function").at("arguments"), "");
  EXPECT_TRUE(events[0].at("choices").at(0).at("finish_reason").is_null());
  EXPECT_TRUE(events[0].at("usage").is_null());
  const auto& second = events[1].at("choices").at(0).at("delta");
  EXPECT_FALSE(second.as_object().contains("role"));
  const auto& frag = second.at("tool_calls").at(0).as_object();
  EXPECT_EQ(frag.at("index"), 0);
  EXPECT_FALSE(frag.contains("id"));  // a later fragment: arguments only
  EXPECT_FALSE(frag.at("function").as_object().contains("name"));
  EXPECT_EQ(frag.at("function").at("arguments"), R"({"city":"Paris"})");
  EXPECT_EQ(second.at("tool_calls").at(1).at("id"), "call_b");
  EXPECT_EQ(events[2].at("choices").at(0).at("finish_reason"), "tool_calls");
}

TEST(ToolsCodec, SealedErrorBodyCarriesTheErrorAndTheChunks) {
  const ApiError e = invalid_request("", "The provider rejected the request: the sealed request failed");
  const json::value v = json::parse(sealed_error_body(e, "node-1", {{0, false, "ab"}, {1, true, "cd"}}));
  EXPECT_EQ(v.at("error").at("type"), "invalid_request_error");
  EXPECT_EQ(v.at("agora_sealed").at("node_id"), "node-1");
  const auto& chunks = v.at("agora_sealed").at("chunks").as_array();
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[1].at("seq"), 1);
  EXPECT_EQ(chunks[1].at("final"), true);
  EXPECT_EQ(chunks[1].at("ciphertext"), "Y2Q=");
}

}  // namespace
}  // namespace agora::openai
