#include "net/asio_timer.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

namespace agora::net {
namespace {

using std::chrono::milliseconds;

TEST(AsioTimer, FiresOnceAtItsTime) {
  boost::asio::io_context io;
  AsioTimerService timers(io.get_executor(), SystemClock::instance());
  int fired = 0;
  auto t = timers.make_timer([&] { ++fired; });
  const auto start = SystemClock::instance().now();
  t->arm(start + milliseconds(20));
  EXPECT_TRUE(t->armed());
  io.run();  // returns once nothing is pending
  EXPECT_EQ(fired, 1);
  EXPECT_FALSE(t->armed());
  EXPECT_GE(SystemClock::instance().now() - start, milliseconds(20));
}

TEST(AsioTimer, RearmingMovesItAndCancelStopsIt) {
  boost::asio::io_context io;
  AsioTimerService timers(io.get_executor(), SystemClock::instance());
  std::vector<int> order;
  auto a = timers.make_timer([&] { order.push_back(1); });
  auto b = timers.make_timer([&] { order.push_back(2); });
  auto c = timers.make_timer([&] { order.push_back(3); });
  const auto now = SystemClock::instance().now();
  a->arm(now + milliseconds(1));
  a->arm(now + milliseconds(30));  // moved: fires once, after b
  b->arm(now + milliseconds(10));
  c->arm(now + milliseconds(5));
  c->cancel();
  io.run();
  EXPECT_EQ(order, (std::vector<int>{2, 1}));
}

TEST(AsioTimer, ADestroyedTimerNeverFiresAndLeavesNoWork) {
  boost::asio::io_context io;
  AsioTimerService timers(io.get_executor(), SystemClock::instance());
  bool fired = false;
  auto t = timers.make_timer([&] { fired = true; });
  t->arm(SystemClock::instance().now() + std::chrono::hours(1));
  t.reset();
  io.run();  // would block for an hour if the wait were still pending
  EXPECT_FALSE(fired);
}

TEST(AsioTimer, ATimeInThePastFiresAtOnce) {
  boost::asio::io_context io;
  AsioTimerService timers(io.get_executor(), SystemClock::instance());
  bool fired = false;
  auto t = timers.make_timer([&] { fired = true; });
  t->arm(SystemClock::instance().now() - std::chrono::seconds(1));
  io.run();
  EXPECT_TRUE(fired);
}

}  // namespace
}  // namespace agora::net
