#include "gateway/rate_limiter.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace agora::gateway {
namespace {

constexpr double kMsPerMinute = 60'000.0;

double rate_per_ms(int64_t per_minute) { return static_cast<double>(per_minute) / kMsPerMinute; }

// Seconds until a bucket at `level` holds `want`.
double seconds_until(double level, double want, int64_t per_minute) {
  if (per_minute <= 0 || level >= want) return 0;
  return (want - level) / rate_per_ms(per_minute) / 1000.0;
}

}  // namespace

RateLimiter::State& RateLimiter::state(const std::string& lineage, const KeyLimits& limits, TimePoint now) {
  auto [it, inserted] = states_.try_emplace(lineage);
  State& s = it->second;
  if (inserted) {
    s.limits = limits;
    s.requests = static_cast<double>(limits.rpm);
    s.tokens = static_cast<double>(limits.tpm);
    s.last = now;
    return s;
  }
  refill(s, now);
  // Limits can change (gateway defaults after a restart, a key's limits):
  // a raised limit adds its difference, a lowered one caps the level.
  if (limits.rpm != s.limits.rpm) {
    s.requests = std::min(s.requests + static_cast<double>(std::max<int64_t>(0, limits.rpm - s.limits.rpm)),
                          static_cast<double>(limits.rpm));
  }
  if (limits.tpm != s.limits.tpm) {
    s.tokens = std::min(s.tokens + static_cast<double>(std::max<int64_t>(0, limits.tpm - s.limits.tpm)),
                        static_cast<double>(limits.tpm));
  }
  s.limits = limits;
  return s;
}

void RateLimiter::refill(State& s, TimePoint now) {
  const double ms = std::chrono::duration<double, std::milli>(now - s.last).count();
  if (ms <= 0) return;
  s.last = now;
  if (s.limits.rpm > 0) {
    s.requests = std::min(static_cast<double>(s.limits.rpm), s.requests + ms * rate_per_ms(s.limits.rpm));
  }
  if (s.limits.tpm > 0) {
    s.tokens = std::min(static_cast<double>(s.limits.tpm), s.tokens + ms * rate_per_ms(s.limits.tpm));
  }
}

RateLimiter::Snapshot RateLimiter::snapshot(const State& s) {
  Snapshot out;
  out.limits = s.limits;
  out.remaining_requests = std::max<int64_t>(0, static_cast<int64_t>(std::floor(s.requests)));
  out.remaining_tokens = std::max<int64_t>(0, static_cast<int64_t>(std::floor(s.tokens)));
  out.reset_requests_s = seconds_until(s.requests, static_cast<double>(s.limits.rpm), s.limits.rpm);
  out.reset_tokens_s = seconds_until(s.tokens, static_cast<double>(s.limits.tpm), s.limits.tpm);
  return out;
}

RateLimiter::Decision RateLimiter::admit(const std::string& lineage, const KeyLimits& limits, int64_t reserve_tokens,
                                         TimePoint now) {
  State& s = state(lineage, limits, now);
  Decision d;
  const double reserve = static_cast<double>(std::max<int64_t>(0, reserve_tokens));
  if (limits.tpm > 0 && reserve > static_cast<double>(limits.tpm)) {
    d.refusal = Refusal::too_large;
  } else if (limits.max_concurrent > 0 && s.in_flight >= limits.max_concurrent) {
    d.refusal = Refusal::concurrency;
    d.retry_after_s = 1;
  } else if (limits.rpm > 0 && s.requests < 1) {
    d.refusal = Refusal::requests;
    d.retry_after_s = seconds_until(s.requests, 1, limits.rpm);
  } else if (limits.tpm > 0 && s.tokens < reserve) {
    d.refusal = Refusal::tokens;
    d.retry_after_s = seconds_until(s.tokens, reserve, limits.tpm);
  }
  if (d.refusal == Refusal::none) {
    ++s.in_flight;
    if (limits.rpm > 0) s.requests -= 1;
    if (limits.tpm > 0) s.tokens -= reserve;
  }
  d.snapshot = snapshot(s);
  return d;
}

void RateLimiter::settle(const std::string& lineage, int64_t reserved, int64_t used, TimePoint now) {
  auto it = states_.find(lineage);
  if (it == states_.end()) return;
  State& s = it->second;
  refill(s, now);
  if (s.in_flight > 0) --s.in_flight;
  if (s.limits.tpm > 0) {
    const double delta =
        static_cast<double>(std::max<int64_t>(0, reserved)) - static_cast<double>(std::max<int64_t>(0, used));
    s.tokens = std::min(static_cast<double>(s.limits.tpm), s.tokens + delta);
  }
}

RateLimiter::Snapshot RateLimiter::peek(const std::string& lineage, const KeyLimits& limits, TimePoint now) {
  return snapshot(state(lineage, limits, now));
}

size_t RateLimiter::prune(TimePoint now) {
  for (auto it = states_.begin(); it != states_.end();) {
    State& s = it->second;
    refill(s, now);
    const bool idle = s.in_flight == 0 && (s.limits.rpm <= 0 || s.requests >= static_cast<double>(s.limits.rpm)) &&
                      (s.limits.tpm <= 0 || s.tokens >= static_cast<double>(s.limits.tpm));
    it = idle ? states_.erase(it) : std::next(it);
  }
  return states_.size();
}

std::string format_reset(double seconds) {
  if (!(seconds > 0)) return "0s";
  if (seconds < 1) return fmt::format("{}ms", std::max<int64_t>(1, static_cast<int64_t>(std::ceil(seconds * 1000))));
  if (seconds < 60) {
    // Tenths, rounded up, without a trailing ".0".
    const int64_t tenths = static_cast<int64_t>(std::ceil(seconds * 10));
    return tenths % 10 == 0 ? fmt::format("{}s", tenths / 10) : fmt::format("{}.{}s", tenths / 10, tenths % 10);
  }
  const int64_t s = static_cast<int64_t>(std::ceil(seconds));
  if (s < 3600) return fmt::format("{}m{}s", s / 60, s % 60);
  return fmt::format("{}h{}m{}s", s / 3600, s % 3600 / 60, s % 60);
}

}  // namespace agora::gateway
