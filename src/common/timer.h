// Timers on the Clock: the seam to "wake me at time T". Logic that needs a
// deadline takes a TimerService& and makes its timers from it; the real
// service (net/asio_timer.h) runs them on an io_context, a manual clock
// (tests/fakes/manual_clock.h) fires them when the test moves time.
#pragma once

#include <functional>
#include <memory>

#include "common/clock.h"

namespace agora {

// One timer: armed for a time on its service's clock, it calls its callback
// once, on the service's thread, when that time has come. Re-arming moves
// it; cancelling or destroying it means the callback will not run.
class Timer {
 public:
  virtual ~Timer() = default;
  virtual void arm(Clock::TimePoint at) = 0;
  virtual void cancel() = 0;
  virtual bool armed() const = 0;
};

class TimerService {
 public:
  virtual ~TimerService() = default;
  virtual const Clock& clock() const = 0;
  virtual std::unique_ptr<Timer> make_timer(std::function<void()> fire) = 0;
};

}  // namespace agora
