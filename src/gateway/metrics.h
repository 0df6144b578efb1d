// Gateway metrics in Prometheus text format. Updated and rendered on the
// gateway's event loop only (no atomics needed).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>

namespace agora::gateway {

class Histogram {
 public:
  static constexpr std::array<double, 17> kBounds = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                     0.1,    0.25,  0.5,    1,     2.5,   5,    10};
  void observe(double seconds);
  void render(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::array<uint64_t, kBounds.size() + 1> counts_{};
  double sum_ = 0;
  uint64_t count_ = 0;
};

struct Gauges {
  int64_t nodes_connected = 0;
  int64_t queue_depth = 0;
  int64_t slots_total = 0;
  int64_t slots_busy = 0;
  int64_t http_connections = 0;
};

class Metrics {
 public:
  // One finished HTTP request: route is a fixed label ("chat", "models", ...).
  void request(const std::string& route, int status, double seconds);
  void tokens(int64_t prompt, int64_t completion);
  void time_to_first_token(double seconds) { ttft_.observe(seconds); }
  // The gateway's added time for one completed request (x-agora-overhead-us).
  void overhead(double seconds) { overhead_.observe(seconds); }
  void job_retried() { ++retries_; }
  void node_failure() { ++node_failures_; }
  void node_connected() { ++node_connections_; }

  std::string render(const Gauges& g) const;

 private:
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::map<std::string, Histogram> latency_;
  Histogram ttft_;
  Histogram overhead_;
  int64_t prompt_tokens_ = 0;
  int64_t completion_tokens_ = 0;
  uint64_t retries_ = 0;
  uint64_t node_failures_ = 0;
  uint64_t node_connections_ = 0;
};

}  // namespace agora::gateway
