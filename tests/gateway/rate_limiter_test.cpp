#include "gateway/rate_limiter.h"

#include <gtest/gtest.h>

namespace agora::gateway {
namespace {

using namespace std::chrono_literals;
using Refusal = RateLimiter::Refusal;

const RateLimiter::TimePoint t0{};

TEST(RateLimiter, RequestsPerMinuteBurstThenPace) {
  RateLimiter rl;
  KeyLimits l{.rpm = 3};
  for (int i = 0; i < 3; ++i) {
    auto d = rl.admit("k", l, 0, t0);
    ASSERT_EQ(d.refusal, Refusal::none) << i;
    EXPECT_EQ(d.snapshot.remaining_requests, 2 - i);
    rl.settle("k", 0, 0, t0);
  }
  auto refused = rl.admit("k", l, 0, t0);
  EXPECT_EQ(refused.refusal, Refusal::requests);
  EXPECT_NEAR(refused.retry_after_s, 20.0, 1e-9);  // 3/min: one every 20 s
  EXPECT_NEAR(refused.snapshot.reset_requests_s, 60.0, 1e-9);
  EXPECT_EQ(rl.admit("k", l, 0, t0 + 19'999ms).refusal, Refusal::requests);
  EXPECT_EQ(rl.admit("k", l, 0, t0 + 20s).refusal, Refusal::none);
  // Other lineages are independent.
  EXPECT_EQ(rl.admit("other", l, 0, t0).refusal, Refusal::none);
}

TEST(RateLimiter, TokensReserveThenSettle) {
  RateLimiter rl;
  KeyLimits l{.tpm = 1000};
  auto a = rl.admit("k", l, 600, t0);
  ASSERT_EQ(a.refusal, Refusal::none);
  EXPECT_EQ(a.snapshot.remaining_tokens, 400);
  // A second one reserving 600 does not fit while the first holds its reservation.
  auto b = rl.admit("k", l, 600, t0);
  EXPECT_EQ(b.refusal, Refusal::tokens);
  EXPECT_NEAR(b.retry_after_s, 200.0 / (1000.0 / 60.0), 1e-9);
  // The first used only 100: 500 come back.
  rl.settle("k", 600, 100, t0);
  EXPECT_EQ(rl.peek("k", l, t0).remaining_tokens, 900);
  EXPECT_EQ(rl.admit("k", l, 600, t0).refusal, Refusal::none);
}

TEST(RateLimiter, OverrunLeavesDebtThatBlocksUntilPaid) {
  RateLimiter rl;
  KeyLimits l{.tpm = 600};  // 10 tokens per second
  ASSERT_EQ(rl.admit("k", l, 100, t0).refusal, Refusal::none);
  // The stream used 1,000 tokens: 400 over the whole minute's budget.
  rl.settle("k", 100, 1000, t0);
  auto s = rl.peek("k", l, t0);
  EXPECT_EQ(s.remaining_tokens, 0);
  EXPECT_NEAR(s.reset_tokens_s, 100.0, 1e-9);  // from -400 to 600 at 10/s
  auto d = rl.admit("k", l, 1, t0 + 40s);  // -400 + 400 = 0 < 1
  EXPECT_EQ(d.refusal, Refusal::tokens);
  EXPECT_NEAR(d.retry_after_s, 0.1, 1e-9);
  EXPECT_EQ(rl.admit("k", l, 1, t0 + 40'100ms).refusal, Refusal::none);
}

TEST(RateLimiter, TooLargeNeverFits) {
  RateLimiter rl;
  KeyLimits l{.tpm = 100};
  auto d = rl.admit("k", l, 101, t0);
  EXPECT_EQ(d.refusal, Refusal::too_large);
  EXPECT_EQ(d.retry_after_s, 0);
  EXPECT_EQ(rl.peek("k", l, t0).remaining_tokens, 100);  // nothing taken
}

TEST(RateLimiter, ConcurrencyFreedBySettle) {
  RateLimiter rl;
  KeyLimits l{.max_concurrent = 2};
  EXPECT_EQ(rl.admit("k", l, 0, t0).refusal, Refusal::none);
  EXPECT_EQ(rl.admit("k", l, 0, t0).refusal, Refusal::none);
  auto d = rl.admit("k", l, 0, t0);
  EXPECT_EQ(d.refusal, Refusal::concurrency);
  EXPECT_GT(d.retry_after_s, 0);
  rl.settle("k", 0, 0, t0);
  EXPECT_EQ(rl.admit("k", l, 0, t0).refusal, Refusal::none);
}

TEST(RateLimiter, RefusalTakesNothing) {
  RateLimiter rl;
  KeyLimits l{.rpm = 10, .tpm = 100};
  ASSERT_EQ(rl.admit("k", l, 90, t0).refusal, Refusal::none);
  auto before = rl.peek("k", l, t0);
  EXPECT_EQ(rl.admit("k", l, 50, t0).refusal, Refusal::tokens);
  auto after = rl.peek("k", l, t0);
  EXPECT_EQ(after.remaining_requests, before.remaining_requests);
  EXPECT_EQ(after.remaining_tokens, before.remaining_tokens);
}

TEST(RateLimiter, NoLimitMeansNoLimitAndPruneForgetsIdleKeys) {
  RateLimiter rl;
  KeyLimits none{};
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(rl.admit("free", none, 1'000'000, t0).refusal, Refusal::none);
  for (int i = 0; i < 1000; ++i) rl.settle("free", 1'000'000, 5, t0);
  KeyLimits l{.rpm = 60};
  ASSERT_EQ(rl.admit("busy", l, 0, t0).refusal, Refusal::none);
  rl.settle("busy", 0, 0, t0);
  EXPECT_EQ(rl.prune(t0), 1u);  // "busy" still refilling; "free" forgotten
  EXPECT_EQ(rl.prune(t0 + 1s), 0u);
}

TEST(RateLimiter, RaisedLimitsAddTheirDifference) {
  RateLimiter rl;
  ASSERT_EQ(rl.admit("k", KeyLimits{.rpm = 1}, 0, t0).refusal, Refusal::none);
  EXPECT_EQ(rl.admit("k", KeyLimits{.rpm = 1}, 0, t0).refusal, Refusal::requests);
  EXPECT_EQ(rl.admit("k", KeyLimits{.rpm = 5}, 0, t0).refusal, Refusal::none);
}

TEST(FormatReset, GoStyleDurations) {
  EXPECT_EQ(format_reset(0), "0s");
  EXPECT_EQ(format_reset(-1), "0s");
  EXPECT_EQ(format_reset(0.0004), "1ms");
  EXPECT_EQ(format_reset(0.25), "250ms");
  EXPECT_EQ(format_reset(1), "1s");
  EXPECT_EQ(format_reset(1.43), "1.5s");
  EXPECT_EQ(format_reset(20), "20s");
  EXPECT_EQ(format_reset(60), "1m0s");
  EXPECT_EQ(format_reset(360), "6m0s");
  EXPECT_EQ(format_reset(3723), "1h2m3s");
}

}  // namespace
}  // namespace agora::gateway
