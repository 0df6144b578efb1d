// Protocol version 2 (docs/PROTOCOL.md): per-model capabilities in the
// hello, tool-call fragments in deltas, and a sealed failure's final chunk.
// Each field round-trips, is bounded, and stays off the wire when unused
// (so what a version 1 peer reads is unchanged).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "protocol/messages.h"

namespace agora::protocol {
namespace {

namespace json = boost::json;
using ::testing::HasSubstr;
using ::testing::Not;

template <class T>
T round_trip(const T& msg) {
  const std::string frame = encode(Message{msg});
  auto r = decode(frame);
  EXPECT_TRUE(r.ok()) << frame << "\n-> " << (r.ok() ? std::string() : r.error().message);
  if (!r.ok() || !std::holds_alternative<T>(*r)) return T{};
  return std::get<T>(*r);
}

std::string decode_error(std::string_view frame) {
  auto r = decode(frame);
  EXPECT_FALSE(r.ok()) << frame;
  return r.ok() ? std::string() : r.error().message;
}

Hello hello_with(int version, ModelCapabilities caps) {
  Hello h;
  h.protocol = version;
  h.node_id = "n1";
  ModelAdvert a;
  a.name = "m";
  a.sha256 = std::string(64, 'a');
  a.ctx_per_slot = 512;
  a.slots = 1;
  a.capabilities = caps;
  h.models.push_back(a);
  return h;
}

TEST(ProtocolV2, TheVersionIsTwoAndOneIsStillAccepted) {
  EXPECT_EQ(kProtocolVersion, 2);
  EXPECT_EQ(kMinProtocolVersion, 1);
}

TEST(ProtocolV2, HelloCarriesEachModelsCapabilities) {
  for (ModelCapabilities caps : {ModelCapabilities{true, true, true}, ModelCapabilities{true, false, false},
                                 ModelCapabilities{false, false, true}, ModelCapabilities{}}) {
    const Hello got = round_trip(hello_with(2, caps));
    ASSERT_EQ(got.models.size(), 1u);
    EXPECT_EQ(got.models[0].capabilities.tools, caps.tools);
    EXPECT_EQ(got.models[0].capabilities.parallel_tool_calls, caps.parallel_tool_calls);
    EXPECT_EQ(got.models[0].capabilities.grammar, caps.grammar);
  }
  // A version 1 hello is what version 1 sent: no capabilities field.
  const std::string v1 = encode(Message{hello_with(1, {true, true, true})});
  EXPECT_THAT(v1, Not(HasSubstr("capabilities")));
  EXPECT_FALSE(round_trip(hello_with(1, {true, true, true})).models[0].capabilities.tools);
  EXPECT_THAT(decode_error(R"({"type":"hello","protocol":2,"node_id":"n","models":[{"name":"m","sha256":"x","ctx_per_slot":1,"slots":1,"capabilities":{"tools":"yes"}}]})"),
              HasSubstr("capabilities.tools"));
}

TEST(ProtocolV2, DeltasCarryToolCallFragments) {
  Delta d;
  d.job = 7;
  d.tool_calls = {{0, "call_a", "get_weather", ""}, {0, "", "", "{\"city\":"}, {1, "call_b", "f", "{}"}};
  const Delta got = round_trip(d);
  ASSERT_EQ(got.tool_calls.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(got.tool_calls[i].index, d.tool_calls[i].index);
    EXPECT_EQ(got.tool_calls[i].id, d.tool_calls[i].id);
    EXPECT_EQ(got.tool_calls[i].name, d.tool_calls[i].name);
    EXPECT_EQ(got.tool_calls[i].arguments, d.tool_calls[i].arguments);
  }
  // The hot path writes the same frame, and a text delta has no tool_calls key.
  std::string out;
  encode_delta(out, d);
  EXPECT_EQ(out, encode(Message{d}));
  Delta text;
  text.job = 1;
  text.text = "hi";
  EXPECT_THAT(encode(Message{text}), Not(HasSubstr("tool_calls")));
}

TEST(ProtocolV2, ToolCallFragmentsAreBounded) {
  EXPECT_THAT(decode_error(R"({"type":"delta","job":1,"text":"","tool_calls":[{"index":-1}]})"), HasSubstr("index"));
  EXPECT_THAT(decode_error(R"({"type":"delta","job":1,"text":"","tool_calls":[{"index":1024}]})"), HasSubstr("index"));
  EXPECT_THAT(decode_error(R"({"type":"delta","job":1,"text":"","tool_calls":[{"id":"x"}]})"), HasSubstr("index"));
  EXPECT_THAT(decode_error(R"({"type":"delta","job":1,"text":"","tool_calls":[{"index":0,"arguments":5}]})"),
              HasSubstr("arguments"));
  EXPECT_THAT(decode_error(R"({"type":"delta","job":1,"text":"","tool_calls":[1]})"), HasSubstr("tool_calls"));
  std::string many = R"({"type":"delta","job":1,"text":"","tool_calls":[)";
  for (size_t i = 0; i <= kMaxToolCallDeltas; ++i) many += (i ? "," : "") + std::string(R"({"index":0})");
  EXPECT_THAT(decode_error(many + "]}"), HasSubstr("more than"));
}

TEST(ProtocolV2, FailedCarriesASealedFinalChunk) {
  Failed f{9, "invalid_argument", "the sealed request failed", false, SealedChunk{3, true, std::string("\x01\x02", 2)}};
  const Failed got = round_trip(f);
  ASSERT_TRUE(got.sealed.has_value());
  EXPECT_EQ(got.sealed->seq, 3u);
  EXPECT_TRUE(got.sealed->final);
  EXPECT_EQ(got.sealed->ciphertext, std::string("\x01\x02", 2));
  EXPECT_FALSE(round_trip(Failed{9, "internal", "x", true}).sealed.has_value());
  EXPECT_THAT(encode(Message{Failed{9, "internal", "x", true}}), Not(HasSubstr("sealed")));
}

}  // namespace
}  // namespace agora::protocol
