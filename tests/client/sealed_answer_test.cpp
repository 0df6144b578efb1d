// Opening sealed answers (client/sealed_answer.h) against a node's real
// sealer: text, logprobs and tool calls open into OpenAI's shapes, unary and
// streamed; a node's sealed refusal becomes its real error; and whatever a
// gateway does to the chunks (drop, reorder, swap nodes, forge) is refused.
#include "client/sealed_answer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "crypto/encoding.h"
#include "protocol/messages.h"

namespace agora::client {
namespace {

namespace json = boost::json;
namespace sealed = protocol::sealed;
using ::testing::HasSubstr;

// A request sealed to one node, and that node's side (its sealer).
struct Exchange {
  crypto::hpke::KeyPair key = *crypto::hpke::generate_key_pair();
  sealed::ClientSeal seal = make_seal(key);
  std::unique_ptr<sealed::ResponseSealer> sealer;

  static sealed::ClientSeal make_seal(const crypto::hpke::KeyPair& key) {
    protocol::GenerationRequest r;
    r.messages = {{"user", "hi"}};
    sealed::Header h{"m", 16, false, 1, {"node-1"}};
    const sealed::Recipient rec{"node-1", key.public_key};
    auto s = sealed::seal_request(h, r, std::span(&rec, 1));
    EXPECT_TRUE(s.ok());
    return std::move(*s);
  }

  Exchange() {
    auto opened = sealed::open_request(seal.request.header, seal.request.keys[0], seal.request.ciphertext, key);
    sealer = std::make_unique<sealed::ResponseSealer>(opened->context);
  }
  // The chunk JSON a gateway relays for one node frame.
  std::string chunk(const protocol::Message& inner, bool final, std::string_view node = "node-1") {
    const uint64_t seq = sealer->next_sequence();
    const std::string ct = *sealer->seal(protocol::encode(inner), final);
    std::string out = "{\"seq\":" + std::to_string(seq) + ",\"final\":" + (final ? "true" : "false") +
                      ",\"ciphertext\":\"" + crypto::to_base64(ct) + "\"";
    if (!node.empty()) out += ",\"node_id\":\"" + std::string(node) + "\"";
    return out + "}";
  }
};

protocol::Delta call_delta(std::vector<protocol::ToolCallDelta> calls, std::string text = "") {
  protocol::Delta d;
  d.text = std::move(text);
  d.tool_calls = std::move(calls);
  return d;
}

protocol::Done done(protocol::FinishReason f) { return protocol::Done{0, f, {5, 3, 0}, {}, std::nullopt}; }

std::string unary_body(const std::vector<std::string>& chunks, std::string_view node = "node-1") {
  std::string b = R"({"id":"chatcmpl-1","created":7,"agora":{"node_id":")" + std::string(node) +
                  R"(","provider_id":"p"},"agora_sealed":{"chunks":[)";
  for (size_t i = 0; i < chunks.size(); ++i) b += (i ? "," : "") + chunks[i];
  return b + "]}}";
}

const AnswerShape kShape{"m", false, false};

TEST(SealedAnswer, UnaryToolCallsOpenIntoMessageToolCalls) {
  Exchange x;
  const std::string body = unary_body({x.chunk(call_delta({{0, "call_a", "get_weather", ""}}), false, ""),
                                       x.chunk(call_delta({{0, "", "", R"({"city":"Paris"})"}}), false, ""),
                                       x.chunk(done(protocol::FinishReason::tool_calls), true, "")});
  auto r = open_unary(x.seal, kShape, body);
  ASSERT_TRUE(std::holds_alternative<std::string>(r)) << (std::holds_alternative<Refused>(r) ? std::get<Refused>(r).why : "");
  const json::value v = json::parse(std::get<std::string>(r));
  const auto& choice = v.at("choices").at(0);
  EXPECT_EQ(choice.at("finish_reason"), "tool_calls");
  EXPECT_TRUE(choice.at("message").at("content").is_null());
  const auto& call = choice.at("message").at("tool_calls").at(0);
  EXPECT_EQ(call.at("id"), "call_a");
  EXPECT_EQ(call.at("function").at("name"), "get_weather");
  EXPECT_EQ(call.at("function").at("arguments"), R"({"city":"Paris"})");
  EXPECT_EQ(v.at("usage").at("completion_tokens"), 3);
  EXPECT_EQ(v.at("agora").at("node_id"), "node-1");
}

TEST(SealedAnswer, UnaryRefusesTruncatedOrForeignAnswers) {
  Exchange x;
  const std::string d = x.chunk(call_delta({}, "hi"), false, "");
  EXPECT_THAT(std::get<Refused>(open_unary(x.seal, kShape, unary_body({d}))).why, HasSubstr("truncated"));
  EXPECT_THAT(std::get<Refused>(open_unary(x.seal, kShape, unary_body({d}, "node-2"))).why, HasSubstr("not sealed to"));
  const std::string fin = x.chunk(done(protocol::FinishReason::stop), true, "");
  EXPECT_TRUE(std::holds_alternative<Refused>(open_unary(x.seal, kShape, unary_body({fin, d}))));  // reordered
  EXPECT_TRUE(std::holds_alternative<Refused>(open_unary(x.seal, kShape, "not json")));
}

TEST(SealedAnswer, ANodesSealedRefusalBecomesItsRealError) {
  Exchange x;
  const protocol::Failed f{0, "invalid_argument", "'tools[0].function.parameters' uses the keyword 'uniqueItems'", false};
  const std::string body = R"({"error":{"message":"generic","type":"invalid_request_error","param":null,"code":null},)"
                           R"("agora_sealed":{"node_id":"node-1","chunks":[)" +
                           x.chunk(f, true, "") + "]}}";
  auto r = open_error(x.seal, body);
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(std::holds_alternative<openai::ApiError>(*r));
  const auto& e = std::get<openai::ApiError>(*r);
  EXPECT_EQ(e.status, 400);
  EXPECT_THAT(e.message, HasSubstr("uniqueItems"));
  // No sealed part: the gateway's error is relayed as it is.
  EXPECT_FALSE(open_error(x.seal, R"({"error":{"message":"x"}})").has_value());
  // A sealed part that does not end with a failure is refused.
  Exchange y;
  const std::string not_failure = R"({"error":{},"agora_sealed":{"node_id":"node-1","chunks":[)" +
                                  y.chunk(done(protocol::FinishReason::stop), true, "") + "]}}";
  EXPECT_TRUE(std::holds_alternative<Refused>(*open_error(y.seal, not_failure)));
}

// The events the client gets, as parsed JSON ("[DONE]" as a string).
std::vector<json::value> events_of(const std::string& out) {
  std::vector<json::value> v;
  for (size_t pos = 0; pos < out.size();) {
    const size_t end = out.find("\n\n", pos);
    if (end == std::string::npos) break;
    const std::string data = out.substr(pos + 6, end - pos - 6);
    v.push_back(data == "[DONE]" ? json::value("[DONE]") : json::parse(data));
    pos = end + 2;
  }
  return v;
}

std::string sealed_event(const std::string& chunk) {
  return R"({"id":"chatcmpl-1","created":7,"choices":[],"agora_sealed":)" + chunk + "}";
}

TEST(SealedAnswer, StreamedToolCallsOpenIntoDeltaToolCalls) {
  Exchange x;
  SealedStream s(x.seal, kShape);
  std::string out;
  EXPECT_EQ(s.event(sealed_event(x.chunk(call_delta({{0, "call_a", "f", ""}, {1, "call_b", "g", "{}"}}), false)), out),
            SealedStream::Step::more);
  EXPECT_EQ(s.event(sealed_event(x.chunk(call_delta({{0, "", "", "{\"n\":1}"}}), false)), out), SealedStream::Step::more);
  EXPECT_EQ(s.event(sealed_event(x.chunk(done(protocol::FinishReason::tool_calls), true)), out), SealedStream::Step::more);
  EXPECT_EQ(s.event(R"({"id":"chatcmpl-1","created":7,"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"agora":{"node_id":"node-1"}})", out),
            SealedStream::Step::more);
  EXPECT_EQ(s.event("[DONE]", out), SealedStream::Step::done);
  const auto ev = events_of(out);
  ASSERT_EQ(ev.size(), 4u);
  const auto& first = ev[0].at("choices").at(0).at("delta").at("tool_calls");
  EXPECT_EQ(first.at(0).at("id"), "call_a");
  EXPECT_EQ(first.at(1).at("function").at("name"), "g");
  EXPECT_EQ(ev[1].at("choices").at(0).at("delta").at("tool_calls").at(0).at("function").at("arguments"), "{\"n\":1}");
  // The finish reason is the sealed one, not the gateway's plaintext "stop".
  EXPECT_EQ(ev[2].at("choices").at(0).at("finish_reason"), "tool_calls");
  EXPECT_EQ(ev[3], json::value("[DONE]"));
}

TEST(SealedAnswer, TheClientGetsExactlyOneFinishChunkWhateverTheGatewaySends) {
  const std::string finish = R"({"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"agora":{}})";
  {
    Exchange x;
    SealedStream s(x.seal, kShape);
    std::string out;
    ASSERT_EQ(s.event(sealed_event(x.chunk(done(protocol::FinishReason::length), true)), out), SealedStream::Step::more);
    ASSERT_EQ(s.event(finish, out), SealedStream::Step::more);
    EXPECT_EQ(s.event(finish, out), SealedStream::Step::failed);  // a second one is a forgery
    EXPECT_THAT(s.why(), HasSubstr("second finish"));
  }
  Exchange x;
  SealedStream s(x.seal, kShape);
  std::string out;
  ASSERT_EQ(s.event(sealed_event(x.chunk(done(protocol::FinishReason::length), true)), out), SealedStream::Step::more);
  EXPECT_EQ(s.event("[DONE]", out), SealedStream::Step::done);  // the gateway left its finish chunk out
  const auto ev = events_of(out);
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].at("choices").at(0).at("finish_reason"), "length");
}

TEST(SealedAnswer, AStreamedSealedErrorIsTheNodesErrorAndForgeriesAreRefused) {
  Exchange x;
  SealedStream s(x.seal, kShape);
  std::string out;
  ASSERT_EQ(s.event(sealed_event(x.chunk(call_delta({}, "par"), false)), out), SealedStream::Step::more);
  const std::string err = R"({"error":{"message":"generic"},"agora_sealed":{"node_id":"node-1","chunks":[)" +
                          x.chunk(protocol::Failed{0, "internal", "grammar sampler failed", false}, true, "") + "]}}";
  EXPECT_EQ(s.event(err, out), SealedStream::Step::failed);
  const auto ev = events_of(out);
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].at("choices").at(0).at("delta").at("content"), "par");
  EXPECT_THAT(std::string(ev[1].at("error").at("message").as_string()), HasSubstr("grammar sampler failed"));

  // [DONE] before the final chunk, a chunk from another node, garbage.
  Exchange y;
  SealedStream t(y.seal, kShape);
  out.clear();
  EXPECT_EQ(t.event("[DONE]", out), SealedStream::Step::failed);
  EXPECT_THAT(t.why(), HasSubstr("truncated"));
  SealedStream u(y.seal, kShape);
  EXPECT_EQ(u.event(sealed_event(y.chunk(call_delta({}, "x"), false, "node-9")), out), SealedStream::Step::failed);
  SealedStream w(y.seal, kShape);
  EXPECT_EQ(w.event("{", out), SealedStream::Step::failed);
}

}  // namespace
}  // namespace agora::client
