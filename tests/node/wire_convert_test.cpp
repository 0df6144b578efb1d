// Every field crosses the node's wire <-> engine edge, and nothing else does.
#include "node/wire_convert.h"

#include <gtest/gtest.h>

namespace agora::node {
namespace {

TEST(WireConvert, ARequestKeepsEveryField) {
  protocol::GenerationRequest w;
  w.messages = {{"system", "be brief"}, {"user", "hi"}};
  w.sampling.temperature = 0.5f;
  w.sampling.top_p = 0.9f;
  w.sampling.top_k = 40;
  w.sampling.min_p = 0.05f;
  w.sampling.seed = 7;
  w.sampling.presence_penalty = 0.25f;
  w.sampling.frequency_penalty = -0.5f;
  w.sampling.logit_bias = {{13, 2.5f}, {99, -100.0f}};
  w.max_tokens = 33;
  w.stop = {"\n\n", "END"};
  w.logprobs = true;
  w.top_logprobs = 3;
  w.ignore_eos = true;
  const engine::GenerationRequest e = to_engine(w);
  ASSERT_EQ(e.messages.size(), 2u);
  EXPECT_EQ(e.messages[1].role, "user");
  EXPECT_EQ(e.messages[1].content, "hi");
  EXPECT_FALSE(e.prompt);
  EXPECT_EQ(e.sampling.temperature, 0.5f);
  EXPECT_EQ(e.sampling.top_p, 0.9f);
  EXPECT_EQ(e.sampling.top_k, 40);
  EXPECT_EQ(e.sampling.min_p, 0.05f);
  EXPECT_EQ(e.sampling.seed, 7u);
  EXPECT_EQ(e.sampling.presence_penalty, 0.25f);
  EXPECT_EQ(e.sampling.frequency_penalty, -0.5f);
  ASSERT_EQ(e.sampling.logit_bias.size(), 2u);
  EXPECT_EQ(e.sampling.logit_bias[1].first, 99);
  EXPECT_EQ(e.sampling.logit_bias[1].second, -100.0f);
  EXPECT_EQ(e.max_tokens, 33);
  EXPECT_EQ(e.stop, (std::vector<std::string>{"\n\n", "END"}));
  EXPECT_TRUE(e.logprobs);
  EXPECT_EQ(e.top_logprobs, 3);
  EXPECT_TRUE(e.ignore_eos);

  protocol::GenerationRequest raw;
  raw.prompt = "once upon";
  const auto r = to_engine(raw);
  EXPECT_EQ(r.prompt, "once upon");
  EXPECT_TRUE(r.messages.empty());
  EXPECT_FALSE(r.sampling.seed);
  // Both sides follow the same rules.
  EXPECT_EQ(protocol::validate_request(w).ok(), engine::validate_request(e).ok());
  w.sampling.top_p = 0;
  EXPECT_FALSE(protocol::validate_request(w).ok());
  EXPECT_FALSE(engine::validate_request(to_engine(w)).ok());
}

TEST(WireConvert, ResultsKeepEveryField) {
  EXPECT_EQ(to_wire(engine::FinishReason::stop), protocol::FinishReason::stop);
  EXPECT_EQ(to_wire(engine::FinishReason::length), protocol::FinishReason::length);
  EXPECT_EQ(to_wire(engine::FinishReason::cancelled), protocol::FinishReason::cancelled);
  EXPECT_EQ(to_wire(engine::FinishReason::error), protocol::FinishReason::error);
  const auto u = to_wire(engine::Usage{11, 22, 5});
  EXPECT_EQ(u.prompt_tokens, 11);
  EXPECT_EQ(u.completion_tokens, 22);
  EXPECT_EQ(u.cached_prompt_tokens, 5);
  const auto t = to_wire(engine::Timings{1.5, 2.5, 3.5});
  EXPECT_EQ(t.queued_ms, 1.5);
  EXPECT_EQ(t.prompt_ms, 2.5);
  EXPECT_EQ(t.decode_ms, 3.5);
  engine::TokenLogprob lp{42, "he", -0.25f, {{42, "he", -0.25f}, {7, "ha", -1.5f}}};
  const auto w = to_wire(std::vector<engine::TokenLogprob>{lp});
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].token, 42);
  EXPECT_EQ(w[0].text, "he");
  EXPECT_EQ(w[0].logprob, -0.25f);
  ASSERT_EQ(w[0].top.size(), 2u);
  EXPECT_EQ(w[0].top[1].token, 7);
  EXPECT_EQ(w[0].top[1].text, "ha");
  EXPECT_EQ(w[0].top[1].logprob, -1.5f);
}

}  // namespace
}  // namespace agora::node

namespace agora::node {
namespace {

TEST(WireConvert, ToolCallFragmentsOfOneCallJoinInOneEntry) {
  const std::vector<engine::ToolCallDelta> in = {
      {0, "call_a", "f", ""}, {0, "", "", "{"}, {0, "", "", "}"}, {1, "call_b", "g", ""}, {1, "", "", "{}"}};
  const auto out = to_wire(in);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].index, 0);
  EXPECT_EQ(out[0].id, "call_a");
  EXPECT_EQ(out[0].name, "f");
  EXPECT_EQ(out[0].arguments, "{}");
  EXPECT_EQ(out[1].id, "call_b");
  EXPECT_EQ(out[1].arguments, "{}");
  EXPECT_EQ(to_wire(std::vector<engine::ToolCallDelta>{{2, "", "", "x"}}).at(0).index, 2);
}

}  // namespace
}  // namespace agora::node
