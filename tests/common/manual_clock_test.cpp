// The shared fake clock (tests/fakes/manual_clock.h) keeps its promises:
// timers fire in time order, at their time, and only when armed.
#include "fakes/manual_clock.h"

#include <gtest/gtest.h>

#include <vector>

namespace agora::fakes {
namespace {

using std::chrono::milliseconds;

TEST(ManualClock, TimersFireInOrderAtTheirTimeDuringAdvance) {
  ManualClock clock;
  const auto t0 = clock.now();
  std::vector<std::pair<int, Clock::Duration>> fired;
  auto a = clock.make_timer([&] { fired.emplace_back(1, clock.now() - t0); });
  auto b = clock.make_timer([&] { fired.emplace_back(2, clock.now() - t0); });
  auto c = clock.make_timer([&] { fired.emplace_back(3, clock.now() - t0); });
  a->arm(t0 + milliseconds(30));
  b->arm(t0 + milliseconds(10));
  c->arm(t0 + milliseconds(20));
  c->cancel();
  clock.advance(milliseconds(25));
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0], std::make_pair(2, Clock::Duration(milliseconds(10))));
  EXPECT_EQ(clock.now() - t0, milliseconds(25));
  clock.advance(milliseconds(5));
  ASSERT_EQ(fired.size(), 2u);
  EXPECT_EQ(fired[1], std::make_pair(1, Clock::Duration(milliseconds(30))));
  EXPECT_EQ(clock.timers_armed(), 0u);
}

TEST(ManualClock, ATimerMayRearmOrDestroyItselfWhileFiring) {
  ManualClock clock;
  int ticks = 0;
  std::unique_ptr<Timer> t;
  t = clock.make_timer([&] {
    if (++ticks < 3) t->arm(clock.now() + milliseconds(10));
    else t.reset();
  });
  t->arm(clock.now() + milliseconds(10));
  clock.advance(milliseconds(100));
  EXPECT_EQ(ticks, 3);
  EXPECT_EQ(t, nullptr);
}

TEST(ManualClock, UnixTimeMovesWithIt) {
  ManualClock clock(1'000);
  clock.advance(std::chrono::seconds(2));
  EXPECT_EQ(clock.unix_millis(), 3'000);
}

}  // namespace
}  // namespace agora::fakes
