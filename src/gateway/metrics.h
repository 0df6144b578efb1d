// Gateway metrics in Prometheus text format. Updated and rendered on the
// gateway's event loop only (no atomics needed).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "gateway/level.h"

namespace agora::gateway {

class Histogram {
 public:
  // Request-scale times: 50 µs to 10 s.
  static constexpr std::array<double, 17> kBounds = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                     0.1,    0.25,  0.5,    1,     2.5,   5,    10};
  // Per-token and per-step work: 2 µs to 1 s.
  static constexpr std::array<double, 16> kFineBounds = {0.000002, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001,
                                                         0.00025,  0.0005,   0.001,   0.0025,   0.005,   0.01,
                                                         0.025,    0.1,      0.25,    1};

  explicit Histogram(std::span<const double> bounds = kBounds) : bounds_(bounds), counts_(bounds.size() + 1) {}
  void observe(double seconds);
  void render(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::span<const double> bounds_;
  std::vector<uint64_t> counts_;
  double sum_ = 0;
  uint64_t count_ = 0;
};

struct Gauges {
  int64_t nodes_connected = 0;
  int64_t queue_depth = 0;
  int64_t slots_total = 0;
  int64_t slots_busy = 0;
  int64_t http_connections = 0;
  std::array<int64_t, kLevels> nodes_by_level{};  // connected nodes by the level of their live verdict
};

class Metrics {
 public:
  // One finished HTTP request: route is a fixed label ("chat", "models", ...).
  void request(const std::string& route, int status, double seconds);
  void tokens(int64_t prompt, int64_t completion);
  void time_to_first_token(double seconds) { ttft_.observe(seconds); }
  // The gateway's added time for one completed request (x-agora-overhead-us).
  void overhead(double seconds) { overhead_.observe(seconds); }
  // Streaming: the gateway's share of time to first token (first chunk
  // sent minus the node's queue + prompt time), and per token the time
  // from its frame arriving from the node to its SSE chunk being written.
  void ttft_overhead(double seconds) { ttft_overhead_.observe(seconds); }
  void token_forward(double seconds) { token_forward_.observe(seconds); }
  void job_retried() { ++retries_; }
  void node_failure() { ++node_failures_; }
  void node_connected() { ++node_connections_; }
  // An attestation outcome: "verified", "failed" or "expired".
  void attestation(const std::string& result) { ++attestations_[result]; }

  std::string render(const Gauges& g) const;

 private:
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::map<std::string, Histogram> latency_;
  Histogram ttft_;
  Histogram overhead_;
  Histogram ttft_overhead_;
  Histogram token_forward_{Histogram::kFineBounds};
  int64_t prompt_tokens_ = 0;
  int64_t completion_tokens_ = 0;
  uint64_t retries_ = 0;
  uint64_t node_failures_ = 0;
  std::map<std::string, uint64_t> attestations_;
  uint64_t node_connections_ = 0;
};

}  // namespace agora::gateway
