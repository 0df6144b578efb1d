// The real TimerService: timers on an io_context (Asio steady timers), on
// a Clock whose now() is steady_clock's (SystemClock, or one that shares
// its time base).
#pragma once

#include <boost/asio/any_io_executor.hpp>

#include "common/timer.h"

namespace agora::net {

class AsioTimerService final : public TimerService {
 public:
  AsioTimerService(boost::asio::any_io_executor ex, const Clock& clock) : ex_(std::move(ex)), clock_(clock) {}
  const Clock& clock() const override { return clock_; }
  std::unique_ptr<Timer> make_timer(std::function<void()> fire) override;

 private:
  boost::asio::any_io_executor ex_;
  const Clock& clock_;
};

}  // namespace agora::net
