// Clock: the single seam to time. Logic takes a Clock& and never reads the
// system clock itself, so tests can drive time by hand (tests/fakes).
#pragma once

#include <chrono>
#include <cstdint>

namespace agora {

class Clock {
 public:
  using Duration = std::chrono::nanoseconds;
  using TimePoint = std::chrono::time_point<std::chrono::steady_clock, Duration>;

  virtual ~Clock() = default;
  // Monotonic time for measuring intervals. Thread-safe.
  virtual TimePoint now() const = 0;
  // Wall-clock time in milliseconds since the Unix epoch (for timestamps
  // shown to people, e.g. `created`). Thread-safe.
  virtual int64_t unix_millis() const = 0;
};

// The real clock (std::chrono::steady_clock / system_clock).
class SystemClock final : public Clock {
 public:
  TimePoint now() const override { return std::chrono::steady_clock::now(); }
  int64_t unix_millis() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  // A process-wide instance, for wiring in main().
  static SystemClock& instance() {
    static SystemClock clock;
    return clock;
  }
};

inline double to_millis(Clock::Duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

}  // namespace agora
