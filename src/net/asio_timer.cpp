#include "net/asio_timer.h"

#include <boost/asio/steady_timer.hpp>

namespace agora::net {

namespace {

class AsioTimer final : public Timer {
 public:
  AsioTimer(boost::asio::any_io_executor ex, const Clock& clock, std::function<void()> fire)
      : state_(std::make_shared<State>(std::move(ex), std::move(fire))), clock_(clock) {}
  ~AsioTimer() override { cancel(); }

  void arm(Clock::TimePoint at) override {
    // A generation per arming: a wait cancelled by re-arming may already
    // have completed, and must not fire for the new time.
    const uint64_t generation = ++state_->generation;
    state_->armed = true;
    state_->timer.expires_after(std::max(Clock::Duration::zero(), at - clock_.now()));
    state_->timer.async_wait([weak = std::weak_ptr<State>(state_), generation](boost::system::error_code) {
      auto s = weak.lock();
      if (!s || !s->armed || s->generation != generation) return;
      s->armed = false;
      s->fire();
    });
  }
  void cancel() override {
    if (!state_->armed) return;
    state_->armed = false;
    ++state_->generation;
    state_->timer.cancel();
  }
  bool armed() const override { return state_->armed; }

 private:
  struct State {
    State(boost::asio::any_io_executor ex, std::function<void()> f) : timer(std::move(ex)), fire(std::move(f)) {}
    boost::asio::steady_timer timer;
    std::function<void()> fire;
    uint64_t generation = 0;
    bool armed = false;
  };
  std::shared_ptr<State> state_;  // shared with the pending wait, which may outlive the timer
  const Clock& clock_;
};

}  // namespace

std::unique_ptr<Timer> AsioTimerService::make_timer(std::function<void()> fire) {
  return std::make_unique<AsioTimer>(ex_, clock_, std::move(fire));
}

}  // namespace agora::net
