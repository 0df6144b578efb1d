// Router: which connected node serves the next request. Pure bookkeeping
// (no I/O, no clock), owned and called by the gateway's event loop only.
//
// Among the nodes that serve the requested model, are not draining or held,
// satisfy the routing preferences (the attestation level asked for, the
// regions allowed; a sealed request: only the nodes it names), support what
// the request needs of the model (tools, grammars) and have not
// already failed this request, it picks the least loaded (in-flight /
// slots), then the fastest (lowest recent time to first token).
//
// Attestation levels are ordered: a node with a live GPU TEE verdict
// ("confidential") also serves "verified" and "standard" requests; one with
// a device verdict ("verified") serves "verified" and "standard". The
// gateway sets a node's level from its verdict and drops it to standard the
// moment the verdict fails or expires; the router never upgrades a level.
//
// Cost: every (node, model) pair that could take a job now sits in an ordered
// index per model, level and set of needs it meets (and per region too), kept up to
// date by add, remove, acquire, release, set_draining, set_held, set_level
// and record_ttft (O(levels x need sets x log n) each, at most 3 x 4 sets), so pick() takes the first entry
// that is not excluded: O(regions asked x excluded nodes), independent of
// how many nodes serve the model.
#pragma once

#include <array>
#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

#include "gateway/level.h"
#include "openai/routing.h"
#include "protocol/messages.h"

namespace agora::gateway {

using ConnId = uint64_t;
using openai::RoutingPreferences;

// The level a request needs: confidential: true -> confidential;
// privacyLevel "verified" -> verified; else standard.
Level required_level(const RoutingPreferences& prefs);

// What a request needs of a node's model, as a bit set (protocol 2
// capabilities): 1 tools, 2 grammar.
inline constexpr size_t kNeedSets = 4;
uint8_t required_needs(const RoutingPreferences& prefs);
uint8_t needs_met(const protocol::ModelCapabilities& caps);
// A queue / index slot: one per (needs, level).
inline constexpr size_t kTiers = kNeedSets * kLevels;
inline size_t tier_of(uint8_t needs, Level level) { return needs * kLevels + static_cast<size_t>(level); }

struct NodeModel {
  protocol::ModelAdvert advert;
  int32_t in_flight = 0;
};

// A node's attestation as the gateway last established it (for listings;
// routing uses NodeInfo::level alone).
struct NodeAttestation {
  std::string kind;             // the evidence the hello offered ("" none)
  std::string status = "none";  // none | unverifiable | pending | verified | failed | expired
  std::string error;            // why, when failed, expired or unverifiable
  // The live verdict (status verified): when, until when, what was checked,
  // and the evidence with the gateway nonce it answers (clients re-verify).
  int64_t verified_ms = 0;
  int64_t expires_ms = 0;
  std::string summary;
  std::string evidence;
  std::string nonce;
  int64_t next_challenge_ms = 0;
};

struct NodeInfo {
  ConnId conn = 0;
  std::string node_id;
  std::string provider_id;
  std::string region;
  std::string agent;
  std::string identity_key;  // X25519 public key, hex (hello)
  int protocol = protocol::kProtocolVersion;  // the version its session speaks
  protocol::Hardware hardware;
  std::vector<NodeModel> models;
  int64_t connected_ms = 0;
  bool draining = false;
  // No jobs for now, reversibly: the node has not accepted the current
  // agreement, or its provider is suspended. Requests wait in the queue.
  bool held = false;
  // The attestation level of its live verdict (standard: none); routing
  // state, changed through Router::set_level only.
  Level level = Level::standard;
  NodeAttestation attestation;
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

// Nodes serving a model at one attestation level or above.
struct Capacity {
  int32_t nodes = 0;
  int32_t slots = 0;
  int32_t busy = 0;
};

struct ModelSummary {
  std::string name;
  std::array<Capacity, kLevels> by_level;  // [l]: nodes at level l or above
  std::vector<std::string> sha256;  // distinct files serving this name
  int32_t nodes = 0;
  int32_t slots = 0;
  int32_t busy = 0;
  int32_t ctx_per_slot = 0;  // the smallest among its nodes
  int64_t created_ms = 0;    // earliest connection serving it
  protocol::ModelCapabilities capabilities;  // what at least one of its nodes supports
};

class Router {
 public:
  // Adds a node (replacing one with the same conn id).
  void add(NodeInfo node);
  void remove(ConnId conn);
  // The node's routing state (its models' in_flight, draining, ttft_ms) is
  // indexed: change it only through the methods below, never through this
  // pointer, which is for reading it and for the node's other fields.
  NodeInfo* find(ConnId conn);
  const NodeInfo* find(ConnId conn) const;

  std::variant<Pick, NoPick> pick(const std::string& model, const RoutingPreferences& prefs,
                                  std::span<const ConnId> exclude) const;
  // A job starts / ends on the picked node's model.
  void acquire(const Pick& p);
  void release(ConnId conn, const std::string& model);
  void set_draining(ConnId conn);
  // Holds a node (no jobs) or lets it serve again.
  void set_held(ConnId conn, bool held);
  // The node's attestation level (from its live verdict, or standard).
  void set_level(ConnId conn, Level level);
  void record_ttft(ConnId conn, double ms);

  bool serves(const std::string& model) const { return by_model_.contains(model); }
  // How many nodes serve `model` at `level` or above, in `regions` (empty:
  // anywhere) and meet `needs`, whether or not they are busy: why a NoPick::constraint.
  size_t eligible(const std::string& model, Level level, const std::vector<std::string>& regions,
                  uint8_t needs = 0) const;
  // The smallest ctx_per_slot among the nodes serving `model` (0: none).
  int32_t context_for(const std::string& model) const;
  std::vector<ModelSummary> models() const;
  const std::unordered_map<ConnId, NodeInfo>& nodes() const { return nodes_; }

  int32_t slots_total() const { return slots_total_; }
  // Connected nodes whose level is exactly `l`.
  int64_t nodes_at(Level l) const { return level_nodes_[static_cast<size_t>(l)]; }
  int32_t slots_busy() const { return slots_busy_; }

 private:
  // A (node, model) pair that can take a job now: not draining or held, a free slot.
  // Ordered best first: load, then TTFT, then the lower conn id.
  struct Ready {
    double load = 0;
    double ttft_ms = 0;
    ConnId conn = 0;
    size_t model_index = 0;
    bool operator<(const Ready& o) const;
  };
  // The nodes serving a model at one level or above.
  struct Tier {
    size_t nodes = 0;                                       // how many
    std::unordered_map<std::string, int32_t> region_nodes;  // how many per region
    std::set<Ready> ready;                                  // all regions
    std::unordered_map<std::string, std::set<Ready>> ready_by_region;
  };
  struct ModelIndex {
    std::unordered_set<ConnId> nodes;  // every node serving it
    std::array<Tier, kTiers> tiers;    // [tier_of(s, l)]: the nodes at level l or above meeting needs s
  };

  static Ready key(const NodeInfo& n, size_t model_index, double ttft_ms);
  // Calls f(tier index) for each tier a listing of node n meeting needs
  // `met` belongs to (its level and below, each subset of `met`).
  template <class F>
  static void for_tiers(const NodeInfo& n, uint8_t met, F&& f);
  std::variant<Pick, NoPick> pick_among(const std::string& model, const RoutingPreferences& prefs,
                                        std::span<const ConnId> exclude) const;
  static const Ready* first_untried(const std::set<Ready>& ready, std::span<const ConnId> exclude);
  // How many of the tier's nodes are in `regions` (empty: all of them).
  static size_t count_in(const Tier& tier, const std::vector<std::string>& regions);
  // Puts a node's ready entries into / takes them out of the index (add, remove, drain).
  void index(const NodeInfo& n);
  void unindex(const NodeInfo& n);
  // Adds (+1) or takes away (-1) the node from its models' tier counts.
  void count(const NodeInfo& n, int delta);
  // After a change to model i's load or the node's TTFT: moves its entry from
  // `before` (the key it had, if it was ready) to where it belongs now.
  void move(const NodeInfo& n, size_t i, bool was_ready, const Ready& before);

  std::unordered_map<ConnId, NodeInfo> nodes_;
  std::unordered_multimap<std::string, ConnId> by_node_id_;  // (a reconnecting node briefly has two)
  std::unordered_map<std::string, ModelIndex> by_model_;
  int32_t slots_total_ = 0;
  int32_t slots_busy_ = 0;
  std::array<int64_t, kLevels> level_nodes_{};
};

}  // namespace agora::gateway
