// A clock that moves only when the test says so, and the timers on it: a
// timer fires (on the test's thread, inside advance()) once the clock has
// reached the time it was armed for, earliest first, with now() reading
// that time while it fires. now() and unix_millis() are thread-safe; the
// timers belong to the test's thread.
#pragma once

#include <atomic>
#include <map>
#include <memory>

#include "common/clock.h"
#include "common/timer.h"

namespace agora::fakes {

class ManualClock final : public Clock, public TimerService {
 public:
  static constexpr int64_t kDefaultUnixMillis = 1'700'000'000'000;  // 2023-11-14
  explicit ManualClock(int64_t unix_millis = kDefaultUnixMillis) : unix_start_ms_(unix_millis) {}

  TimePoint now() const override { return TimePoint(Duration(ns_.load())); }
  int64_t unix_millis() const override { return unix_start_ms_ + (ns_.load() - kStartNs) / 1'000'000; }

  // Moves time forward by `d`, firing every timer due on the way.
  void advance(Duration d) { advance_to(now() + d); }
  void advance_to(TimePoint until) {
    for (;;) {
      auto it = due_.begin();
      if (it == due_.end() || it->first.first > until) break;
      if (it->first.first > now()) ns_.store(it->first.first.time_since_epoch().count());
      ManualTimer* t = it->second;
      due_.erase(it);
      t->armed_ = false;
      auto fire = t->fire_;  // a copy: the callback may destroy its timer
      fire();                // and may arm or cancel timers
    }
    if (until > now()) ns_.store(until.time_since_epoch().count());
  }
  size_t timers_armed() const { return due_.size(); }

  const Clock& clock() const override { return *this; }
  std::unique_ptr<Timer> make_timer(std::function<void()> fire) override {
    return std::make_unique<ManualTimer>(*this, std::move(fire));
  }

 private:
  using Key = std::pair<TimePoint, uint64_t>;  // (due, arming order): ties fire in the order they were armed
  class ManualTimer final : public Timer {
   public:
    ManualTimer(ManualClock& c, std::function<void()> fire) : clock_(c), fire_(std::move(fire)) {}
    ~ManualTimer() override { cancel(); }
    void arm(TimePoint at) override {
      cancel();
      key_ = Key{at, clock_.next_seq_++};
      clock_.due_.emplace(key_, this);
      armed_ = true;
    }
    void cancel() override {
      if (!armed_) return;
      clock_.due_.erase(key_);
      armed_ = false;
    }
    bool armed() const override { return armed_; }

   private:
    friend class ManualClock;
    ManualClock& clock_;
    std::function<void()> fire_;
    Key key_{};
    bool armed_ = false;
  };

  static constexpr int64_t kStartNs = 1'000'000'000;  // now() starts 1 s after the steady epoch
  std::atomic<int64_t> ns_{kStartNs};
  const int64_t unix_start_ms_;
  std::map<Key, ManualTimer*> due_;
  uint64_t next_seq_ = 0;
};

}  // namespace agora::fakes
