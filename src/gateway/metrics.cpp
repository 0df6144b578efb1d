#include "gateway/metrics.h"

#include <fmt/format.h>

namespace agora::gateway {

void Histogram::observe(double s) {
  size_t i = 0;
  while (i < bounds_.size() && s > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += s;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
  const std::string sep = labels.empty() ? "" : ",";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += fmt::format("{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, sep, bounds_[i], cumulative);
  }
  out += fmt::format("{}_bucket{{{}{}le=\"+Inf\"}} {}\n", name, labels, sep, count_);
  const std::string braces = labels.empty() ? "" : "{" + labels + "}";
  out += fmt::format("{}_sum{} {}\n{}_count{} {}\n", name, braces, sum_, name, braces, count_);
}

void Metrics::request(const std::string& route, int status, double seconds) {
  ++requests_[{route, status}];
  latency_[route].observe(seconds);
}

void Metrics::tokens(int64_t prompt, int64_t completion) {
  prompt_tokens_ += prompt;
  completion_tokens_ += completion;
}

std::string Metrics::render(const Gauges& g) const {
  std::string out;
  out.reserve(4096);
  out += "# HELP agora_http_requests_total HTTP requests by route and status code.\n";
  out += "# TYPE agora_http_requests_total counter\n";
  for (const auto& [k, v] : requests_) {
    out += fmt::format("agora_http_requests_total{{route=\"{}\",code=\"{}\"}} {}\n", k.first, k.second, v);
  }
  out += "# HELP agora_http_request_duration_seconds Time from request read to response end.\n";
  out += "# TYPE agora_http_request_duration_seconds histogram\n";
  for (const auto& [route, h] : latency_) {
    h.render(out, "agora_http_request_duration_seconds", fmt::format("route=\"{}\"", route));
  }
  // One unlabelled histogram: HELP, TYPE, its series.
  auto histogram = [&out](const char* name, const char* help, const Histogram& h) {
    out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
    h.render(out, name, "");
  };
  histogram("agora_time_to_first_token_seconds", "Admission to the first token reaching the gateway.", ttft_);
  histogram("agora_gateway_overhead_seconds", "End-to-end time at the gateway minus the node's reported time.",
            overhead_);
  histogram("agora_gateway_ttft_overhead_seconds",
            "Streaming: first chunk sent minus the node's queue and prompt time.", ttft_overhead_);
  histogram("agora_gateway_token_forward_seconds",
            "Streaming: a token's frame from the node to its SSE chunk written.", token_forward_);
  out += "# HELP agora_tokens_total Tokens served.\n# TYPE agora_tokens_total counter\n";
  out += fmt::format("agora_tokens_total{{kind=\"prompt\"}} {}\n", prompt_tokens_);
  out += fmt::format("agora_tokens_total{{kind=\"completion\"}} {}\n", completion_tokens_);
  out += "# HELP agora_job_retries_total Jobs moved to another node after a node failed before output.\n";
  out += fmt::format("# TYPE agora_job_retries_total counter\nagora_job_retries_total {}\n", retries_);
  out += "# HELP agora_node_failures_total Jobs lost because a node failed or disconnected.\n";
  out += fmt::format("# TYPE agora_node_failures_total counter\nagora_node_failures_total {}\n", node_failures_);
  out += "# HELP agora_node_connections_total Node sessions accepted.\n";
  out += fmt::format("# TYPE agora_node_connections_total counter\nagora_node_connections_total {}\n",
                     node_connections_);
  out += "# HELP agora_nodes_connected Provider nodes connected now.\n";
  out += fmt::format("# TYPE agora_nodes_connected gauge\nagora_nodes_connected {}\n", g.nodes_connected);
  out += "# HELP agora_nodes_by_attestation Connected nodes by the level of their live attestation verdict.\n";
  out += "# TYPE agora_nodes_by_attestation gauge\n";
  for (size_t l = 0; l < kLevels; ++l) {
    out += fmt::format("agora_nodes_by_attestation{{level=\"{}\"}} {}\n", level_name(static_cast<Level>(l)),
                       g.nodes_by_level[l]);
  }
  out += "# HELP agora_attestations_total Attestation outcomes (verified, failed, expired).\n";
  out += "# TYPE agora_attestations_total counter\n";
  for (const char* r : {"verified", "failed", "expired"}) {
    auto it = attestations_.find(r);
    out += fmt::format("agora_attestations_total{{result=\"{}\"}} {}\n", r, it == attestations_.end() ? 0 : it->second);
  }
  out += "# HELP agora_queue_depth Requests waiting for a free slot.\n";
  out += fmt::format("# TYPE agora_queue_depth gauge\nagora_queue_depth {}\n", g.queue_depth);
  out += "# HELP agora_slots_total Generation slots offered by connected nodes.\n";
  out += fmt::format("# TYPE agora_slots_total gauge\nagora_slots_total {}\n", g.slots_total);
  out += "# HELP agora_slots_busy Slots running a job now (until the node confirms it ended).\n";
  out += fmt::format("# TYPE agora_slots_busy gauge\nagora_slots_busy {}\n", g.slots_busy);
  out += "# HELP agora_http_connections Open client connections.\n";
  out += fmt::format("# TYPE agora_http_connections gauge\nagora_http_connections {}\n", g.http_connections);
  return out;
}

}  // namespace agora::gateway
