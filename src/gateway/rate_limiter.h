// Per-key rate limits: requests per minute, tokens per minute and requests
// in flight, kept on the event loop (no locks), per key lineage (a rotated
// key and its successor share one budget).
//
// Requests and tokens are continuous token buckets: a bucket holds up to a
// minute's allowance and refills at limit/60 per second, so a burst of a
// whole minute's budget is allowed and then the pace is the limit. Tokens
// use reserve-then-settle: admission reserves the prompt estimate plus
// max_tokens, and settle() replaces the reservation by the real usage when
// the job ends (a stream too). A job that used more than it reserved leaves
// the bucket in debt, and later requests wait until it is paid back, so no
// request can slip past the limit by under-declaring.
//
// Headers follow OpenAI's: x-ratelimit-{limit,remaining,reset}-{requests,
// tokens}; reset is the time until the bucket is full again.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/clock.h"

namespace agora::gateway {

struct KeyLimits {
  int64_t rpm = 0;             // 0: no limit
  int64_t tpm = 0;             // 0: no limit
  int64_t max_concurrent = 0;  // 0: no limit
};

class RateLimiter {
 public:
  using TimePoint = Clock::TimePoint;

  // The state a response reports in its headers.
  struct Snapshot {
    KeyLimits limits;
    int64_t remaining_requests = 0;
    int64_t remaining_tokens = 0;
    double reset_requests_s = 0;
    double reset_tokens_s = 0;
  };

  enum class Refusal { none, requests, tokens, concurrency, too_large };

  struct Decision {
    Refusal refusal = Refusal::none;
    double retry_after_s = 0;  // when refused (0 for too_large: waiting never helps)
    Snapshot snapshot;          // after the admission
  };

  // Admits one request reserving `reserve_tokens`, or refuses it changing
  // nothing. `reserve_tokens` above the per-minute limit is too_large.
  Decision admit(const std::string& lineage, const KeyLimits& limits, int64_t reserve_tokens, TimePoint now);
  // The request admitted with `reserved` ended having used `used` tokens:
  // frees its concurrency slot and settles the token bucket.
  void settle(const std::string& lineage, int64_t reserved, int64_t used, TimePoint now);
  Snapshot peek(const std::string& lineage, const KeyLimits& limits, TimePoint now);

  // Forgets lineages that are idle with full buckets (their state is then
  // the same as a fresh one). Returns how many remain.
  size_t prune(TimePoint now);
  size_t size() const { return states_.size(); }

 private:
  struct State {
    KeyLimits limits;
    double requests = 0;  // bucket levels; tokens may be negative (debt)
    double tokens = 0;
    TimePoint last{};
    int64_t in_flight = 0;
  };
  State& state(const std::string& lineage, const KeyLimits& limits, TimePoint now);
  static void refill(State& s, TimePoint now);
  static Snapshot snapshot(const State& s);

  std::unordered_map<std::string, State> states_;
};

// "0s", "250ms", "1.5s", "6m0s", "1h2m3s": Go-style durations, as OpenAI's
// reset headers use.
std::string format_reset(double seconds);

}  // namespace agora::gateway
