// Router: which connected node serves the next request. Pure bookkeeping
// (no I/O, no clock), owned and called by the gateway's event loop only.
//
// Among the nodes that serve the requested model, are not draining, satisfy
// the routing preferences and have not already failed this request, it picks
// the least loaded (in-flight / slots), then the fastest (lowest recent
// time to first token).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "gateway/openai.h"
#include "protocol/messages.h"

namespace agora::gateway {

using ConnId = uint64_t;

struct NodeModel {
  protocol::ModelAdvert advert;
  int32_t in_flight = 0;
};

struct NodeInfo {
  ConnId conn = 0;
  std::string node_id;
  std::string provider_id;
  std::string region;
  std::string agent;
  protocol::Hardware hardware;
  std::vector<NodeModel> models;
  int64_t connected_ms = 0;
  bool draining = false;
  double ttft_ms = 0;  // exponentially weighted; 0 until measured
};

struct Pick {
  ConnId conn = 0;
  size_t model_index = 0;
};

enum class NoPick {
  unknown_model,  // no connected node serves it (404)
  constraint,     // served, but not where the routing preferences allow (503)
  busy,           // eligible nodes exist but every slot is taken (queue)
  exhausted,      // every eligible node already failed this request
};

struct ModelSummary {
  std::string name;
  std::vector<std::string> sha256;  // distinct files serving this name
  int32_t nodes = 0;
  int32_t slots = 0;
  int32_t busy = 0;
  int32_t ctx_per_slot = 0;  // the smallest among its nodes
  int64_t created_ms = 0;    // earliest connection serving it
};

class Router {
 public:
  // Adds a node (replacing one with the same conn id).
  void add(NodeInfo node);
  void remove(ConnId conn);
  NodeInfo* find(ConnId conn);
  const NodeInfo* find(ConnId conn) const;

  std::variant<Pick, NoPick> pick(const std::string& model, const RoutingPreferences& prefs,
                                  std::span<const ConnId> exclude) const;
  // A job starts / ends on the picked node's model.
  void acquire(const Pick& p);
  void release(ConnId conn, const std::string& model);
  void set_draining(ConnId conn);
  void record_ttft(ConnId conn, double ms);

  bool serves(const std::string& model) const { return by_model_.contains(model); }
  std::vector<ModelSummary> models() const;
  const std::unordered_map<ConnId, NodeInfo>& nodes() const { return nodes_; }

  int32_t slots_total() const { return slots_total_; }
  int32_t slots_busy() const { return slots_busy_; }

 private:
  std::unordered_map<ConnId, NodeInfo> nodes_;
  std::unordered_map<std::string, std::vector<ConnId>> by_model_;
  int32_t slots_total_ = 0;
  int32_t slots_busy_ = 0;
};

}  // namespace agora::gateway
