#include "gateway/router.h"

#include <algorithm>
#include <compare>
#include <map>

namespace agora::gateway {
namespace {

bool is_ready(const NodeInfo& n, const NodeModel& m) {
  return !n.draining && !n.held && m.in_flight < m.advert.slots;
}

bool contains(std::span<const ConnId> list, ConnId c) {
  return std::find(list.begin(), list.end(), c) != list.end();
}

bool allowed(const std::vector<std::string>& regions, const std::string& region) {
  return std::find(regions.begin(), regions.end(), region) != regions.end();
}

// Model i's first listing on the node (a name listed twice counts once).
bool first_listing(const NodeInfo& n, size_t i) {
  for (size_t j = 0; j < i; ++j) {
    if (n.models[j].advert.name == n.models[i].advert.name) return false;
  }
  return true;
}

size_t tier_count(Level l) { return static_cast<size_t>(l) + 1; }

bool meets(const NodeModel& m, uint8_t needs) { return (needs_met(m.advert.capabilities) & needs) == needs; }

constexpr uint8_t kAllNeeds = kNeedSets - 1;

}  // namespace

uint8_t required_needs(const RoutingPreferences& prefs) {
  return static_cast<uint8_t>((prefs.needs_tools ? 1 : 0) | (prefs.needs_grammar ? 2 : 0));
}

uint8_t needs_met(const protocol::ModelCapabilities& caps) {
  return static_cast<uint8_t>((caps.tools ? 1 : 0) | (caps.grammar ? 2 : 0));
}

template <class F>
void Router::for_tiers(const NodeInfo& n, uint8_t met, F&& f) {
  for (uint8_t s = 0; s < kNeedSets; ++s) {
    if ((met & s) != s) continue;
    for (size_t l = 0; l < tier_count(n.level); ++l) f(tier_of(s, static_cast<Level>(l)));
  }
}

Level required_level(const RoutingPreferences& prefs) {
  if (prefs.confidential) return Level::confidential;
  if (prefs.privacy_level == "verified") return Level::verified;
  return Level::standard;
}

// std::strong_order keeps the ordering strict and total even for a NaN TTFT.
bool Router::Ready::operator<(const Ready& o) const {
  if (auto c = std::strong_order(load, o.load); c != 0) return c < 0;
  if (auto c = std::strong_order(ttft_ms, o.ttft_ms); c != 0) return c < 0;
  if (conn != o.conn) return conn < o.conn;
  return model_index < o.model_index;
}

Router::Ready Router::key(const NodeInfo& n, size_t i, double ttft_ms) {
  const NodeModel& m = n.models[i];
  return Ready{static_cast<double>(m.in_flight) / m.advert.slots, ttft_ms, n.conn, i};
}

void Router::index(const NodeInfo& n) {
  for (size_t i = 0; i < n.models.size(); ++i) {
    if (!is_ready(n, n.models[i])) continue;
    ModelIndex& mi = by_model_[n.models[i].advert.name];
    const Ready k = key(n, i, n.ttft_ms);
    for_tiers(n, needs_met(n.models[i].advert.capabilities), [&](size_t t) {
      mi.tiers[t].ready.insert(k);
      mi.tiers[t].ready_by_region[n.region].insert(k);
    });
  }
}

void Router::unindex(const NodeInfo& n) {
  for (size_t i = 0; i < n.models.size(); ++i) {
    if (!is_ready(n, n.models[i])) continue;
    auto bm = by_model_.find(n.models[i].advert.name);
    if (bm == by_model_.end()) continue;
    const Ready k = key(n, i, n.ttft_ms);
    for_tiers(n, needs_met(n.models[i].advert.capabilities), [&](size_t t) {
      Tier& tier = bm->second.tiers[t];
      tier.ready.erase(k);
      auto rr = tier.ready_by_region.find(n.region);
      if (rr == tier.ready_by_region.end()) return;
      rr->second.erase(k);
      if (rr->second.empty()) tier.ready_by_region.erase(rr);
    });
  }
}

void Router::count(const NodeInfo& n, int delta) {
  for (size_t i = 0; i < n.models.size(); ++i) {
    if (!first_listing(n, i)) continue;
    auto bm = by_model_.find(n.models[i].advert.name);
    if (bm == by_model_.end()) continue;
    // The node counts in a tier when one of its listings of the model meets
    // the tier's needs.
    auto counted = [&](uint8_t need_set) {
      for (const auto& m : n.models) {
        if (m.advert.name == n.models[i].advert.name && meets(m, need_set)) return true;
      }
      return false;
    };
    for_tiers(n, kAllNeeds, [&](size_t t) {
      if (!counted(static_cast<uint8_t>(t / kLevels))) return;
      Tier& tier = bm->second.tiers[t];
      if (delta > 0) ++tier.nodes;
      else --tier.nodes;
      auto rn = tier.region_nodes.try_emplace(n.region, 0).first;
      rn->second += delta;
      if (rn->second == 0) tier.region_nodes.erase(rn);
    });
  }
}

void Router::move(const NodeInfo& n, size_t i, bool was_ready, const Ready& before) {
  const bool now_ready = is_ready(n, n.models[i]);
  if (!was_ready && !now_ready) return;
  ModelIndex& mi = by_model_[n.models[i].advert.name];
  const Ready after = key(n, i, n.ttft_ms);
  auto reposition = [&](std::set<Ready>& set) {
    if (was_ready && now_ready) {
      auto entry = set.extract(before);  // reuses the tree node: no allocation
      entry.value() = after;
      set.insert(std::move(entry));
    } else if (was_ready) {
      set.erase(before);
    } else {
      set.insert(after);
    }
  };
  for_tiers(n, needs_met(n.models[i].advert.capabilities), [&](size_t t) {
    Tier& tier = mi.tiers[t];
    reposition(tier.ready);
    auto rr = tier.ready_by_region.try_emplace(n.region).first;
    reposition(rr->second);
    if (rr->second.empty()) tier.ready_by_region.erase(rr);
  });
}

void Router::add(NodeInfo node) {
  remove(node.conn);
  const ConnId id = node.conn;
  const NodeInfo& n = nodes_.emplace(id, std::move(node)).first->second;
  by_node_id_.emplace(n.node_id, id);
  ++level_nodes_[static_cast<size_t>(n.level)];
  for (const auto& m : n.models) {
    by_model_[m.advert.name].nodes.insert(id);
    slots_total_ += m.advert.slots;
    slots_busy_ += m.in_flight;
  }
  count(n, +1);
  index(n);
}

void Router::remove(ConnId conn) {
  auto it = nodes_.find(conn);
  if (it == nodes_.end()) return;
  const NodeInfo& n = it->second;
  unindex(n);
  count(n, -1);
  --level_nodes_[static_cast<size_t>(n.level)];
  for (auto [lo, hi] = by_node_id_.equal_range(n.node_id); lo != hi; ++lo) {
    if (lo->second == conn) {
      by_node_id_.erase(lo);
      break;
    }
  }
  for (const auto& m : n.models) {
    slots_total_ -= m.advert.slots;
    slots_busy_ -= m.in_flight;
    auto bm = by_model_.find(m.advert.name);
    if (bm == by_model_.end()) continue;
    bm->second.nodes.erase(conn);
    if (bm->second.nodes.empty()) by_model_.erase(bm);
  }
  nodes_.erase(it);
}

NodeInfo* Router::find(ConnId conn) {
  auto it = nodes_.find(conn);
  return it == nodes_.end() ? nullptr : &it->second;
}

const NodeInfo* Router::find(ConnId conn) const {
  auto it = nodes_.find(conn);
  return it == nodes_.end() ? nullptr : &it->second;
}

const Router::Ready* Router::first_untried(const std::set<Ready>& ready,
                                           std::span<const ConnId> exclude) {
  for (const Ready& r : ready) {
    if (!contains(exclude, r.conn)) return &r;
  }
  return nullptr;
}

std::variant<Pick, NoPick> Router::pick(const std::string& model, const RoutingPreferences& prefs,
                                        std::span<const ConnId> exclude) const {
  auto bm = by_model_.find(model);
  if (bm == by_model_.end()) return NoPick::unknown_model;
  if (!prefs.node_ids.empty()) return pick_among(model, prefs, exclude);
  const Level level = required_level(prefs);
  const uint8_t needs = required_needs(prefs);
  const Tier& tier = bm->second.tiers[tier_of(needs, level)];
  const auto& regions = prefs.regions;

  // The best ready entry not excluded.
  const Ready* best = nullptr;
  if (regions.empty()) {
    best = first_untried(tier.ready, exclude);
  } else {
    for (auto r = regions.begin(); r != regions.end(); ++r) {
      if (std::find(regions.begin(), r, *r) != r) continue;  // listed twice
      if (auto rr = tier.ready_by_region.find(*r); rr != tier.ready_by_region.end()) {
        const Ready* c = first_untried(rr->second, exclude);
        if (c && (!best || *c < *best)) best = c;
      }
    }
  }
  if (best) return Pick{best->conn, best->model_index};
  const size_t eligible = count_in(tier, regions);  // how many nodes the preferences allow
  if (eligible == 0) return NoPick::constraint;

  // Nothing ready: busy while an allowed node has not failed this request yet
  // (full or draining, it is still worth waiting for), else exhausted.
  size_t tried = 0;
  for (auto c = exclude.begin(); c != exclude.end(); ++c) {
    if (std::find(exclude.begin(), c, *c) != c || !bm->second.nodes.contains(*c)) continue;
    const NodeInfo& n = nodes_.at(*c);
    if (n.level < level || (!regions.empty() && !allowed(regions, n.region))) continue;
    bool capable = false;
    for (const auto& m : n.models) capable = capable || (m.advert.name == model && meets(m, needs));
    if (!capable) continue;
    ++tried;
  }
  return tried < eligible ? NoPick::busy : NoPick::exhausted;
}

size_t Router::count_in(const Tier& tier, const std::vector<std::string>& regions) {
  if (regions.empty()) return tier.nodes;
  size_t n = 0;
  for (auto r = regions.begin(); r != regions.end(); ++r) {
    if (std::find(regions.begin(), r, *r) != r) continue;  // listed twice
    if (auto rn = tier.region_nodes.find(*r); rn != tier.region_nodes.end()) n += static_cast<size_t>(rn->second);
  }
  return n;
}

size_t Router::eligible(const std::string& model, Level level, const std::vector<std::string>& regions,
                        uint8_t needs) const {
  auto bm = by_model_.find(model);
  if (bm == by_model_.end()) return 0;
  return count_in(bm->second.tiers[tier_of(needs, level)], regions);
}

// A sealed request may go only to the nodes it was sealed to (at most 16):
// the least loaded, then fastest, of those that serve the model at the
// level asked for in an allowed region and take jobs now.
std::variant<Pick, NoPick> Router::pick_among(const std::string& model, const RoutingPreferences& prefs,
                                              std::span<const ConnId> exclude) const {
  const Ready* best = nullptr;
  Ready candidate;
  Ready chosen;
  size_t eligible = 0, tried = 0;
  const Level level = required_level(prefs);
  const uint8_t needs = required_needs(prefs);
  for (const auto& id : prefs.node_ids) {
    for (auto [lo, hi] = by_node_id_.equal_range(id); lo != hi; ++lo) {
      const NodeInfo& n = nodes_.at(lo->second);
      if (n.level < level) continue;
      if (!prefs.regions.empty() && !allowed(prefs.regions, n.region)) continue;
      for (size_t i = 0; i < n.models.size(); ++i) {
        if (n.models[i].advert.name != model || !meets(n.models[i], needs)) continue;
        ++eligible;
        if (contains(exclude, n.conn)) {
          ++tried;
          continue;
        }
        if (!is_ready(n, n.models[i])) continue;
        candidate = key(n, i, n.ttft_ms);
        if (!best || candidate < chosen) {
          chosen = candidate;
          best = &chosen;
        }
      }
    }
  }
  if (best) return Pick{chosen.conn, chosen.model_index};
  if (eligible == 0) return NoPick::constraint;
  return tried < eligible ? NoPick::busy : NoPick::exhausted;
}

void Router::acquire(const Pick& p) {
  auto* n = find(p.conn);
  if (!n || p.model_index >= n->models.size()) return;
  const size_t i = p.model_index;
  const bool was_ready = is_ready(*n, n->models[i]);
  const Ready before = key(*n, i, n->ttft_ms);
  ++n->models[i].in_flight;
  ++slots_busy_;
  move(*n, i, was_ready, before);
}

void Router::release(ConnId conn, const std::string& model) {
  auto* n = find(conn);
  if (!n) return;
  for (size_t i = 0; i < n->models.size(); ++i) {
    NodeModel& m = n->models[i];
    if (m.advert.name == model && m.in_flight > 0) {
      const bool was_ready = is_ready(*n, m);
      const Ready before = key(*n, i, n->ttft_ms);
      --m.in_flight;
      --slots_busy_;
      move(*n, i, was_ready, before);
      return;
    }
  }
}

void Router::set_draining(ConnId conn) {
  auto* n = find(conn);
  if (!n) return;
  unindex(*n);
  n->draining = true;
}

void Router::set_held(ConnId conn, bool held) {
  auto* n = find(conn);
  if (!n || n->held == held) return;
  unindex(*n);
  n->held = held;
  index(*n);
}

void Router::set_level(ConnId conn, Level level) {
  auto* n = find(conn);
  if (!n || n->level == level) return;
  unindex(*n);
  count(*n, -1);
  --level_nodes_[static_cast<size_t>(n->level)];
  n->level = level;
  ++level_nodes_[static_cast<size_t>(n->level)];
  count(*n, +1);
  index(*n);
}

void Router::record_ttft(ConnId conn, double ms) {
  auto* n = find(conn);
  if (!n) return;
  const double before = n->ttft_ms;
  n->ttft_ms = n->ttft_ms == 0 ? ms : 0.8 * n->ttft_ms + 0.2 * ms;
  for (size_t i = 0; i < n->models.size(); ++i) {
    if (is_ready(*n, n->models[i])) move(*n, i, true, key(*n, i, before));
  }
}

int32_t Router::context_for(const std::string& model) const {
  auto it = by_model_.find(model);
  if (it == by_model_.end()) return 0;
  int32_t ctx = 0;
  for (ConnId c : it->second.nodes) {
    for (const auto& m : nodes_.at(c).models) {
      if (m.advert.name == model && (ctx == 0 || m.advert.ctx_per_slot < ctx)) ctx = m.advert.ctx_per_slot;
    }
  }
  return ctx;
}

std::vector<ModelSummary> Router::models() const {
  std::map<std::string, ModelSummary> out;
  for (const auto& [name, mi] : by_model_) {
    ModelSummary& s = out[name];
    s.name = name;
    for (ConnId c : mi.nodes) {
      const NodeInfo& n = nodes_.at(c);
      ++s.nodes;
      if (s.created_ms == 0 || n.connected_ms < s.created_ms) s.created_ms = n.connected_ms;
      for (size_t t = 0; t < tier_count(n.level); ++t) ++s.by_level[t].nodes;
      for (const auto& m : n.models) {
        if (m.advert.name != name) continue;
        s.slots += m.advert.slots;
        s.busy += m.in_flight;
        for (size_t t = 0; t < tier_count(n.level); ++t) {
          s.by_level[t].slots += m.advert.slots;
          s.by_level[t].busy += m.in_flight;
        }
        if (s.ctx_per_slot == 0 || m.advert.ctx_per_slot < s.ctx_per_slot)
          s.ctx_per_slot = m.advert.ctx_per_slot;
        s.capabilities.tools = s.capabilities.tools || m.advert.capabilities.tools;
        s.capabilities.parallel_tool_calls = s.capabilities.parallel_tool_calls || m.advert.capabilities.parallel_tool_calls;
        s.capabilities.grammar = s.capabilities.grammar || m.advert.capabilities.grammar;
        if (std::find(s.sha256.begin(), s.sha256.end(), m.advert.sha256) == s.sha256.end()) {
          s.sha256.push_back(m.advert.sha256);
        }
      }
    }
  }
  std::vector<ModelSummary> v;
  for (auto& [_, s] : out) v.push_back(std::move(s));
  return v;
}

}  // namespace agora::gateway
