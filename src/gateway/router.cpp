#include "gateway/router.h"

#include <algorithm>
#include <map>

namespace agora::gateway {

void Router::add(NodeInfo node) {
  remove(node.conn);
  for (const auto& m : node.models) {
    by_model_[m.advert.name].push_back(node.conn);
    slots_total_ += m.advert.slots;
    slots_busy_ += m.in_flight;
  }
  const ConnId id = node.conn;
  nodes_.emplace(id, std::move(node));
}

void Router::remove(ConnId conn) {
  auto it = nodes_.find(conn);
  if (it == nodes_.end()) return;
  for (const auto& m : it->second.models) {
    slots_total_ -= m.advert.slots;
    slots_busy_ -= m.in_flight;
    auto bm = by_model_.find(m.advert.name);
    if (bm == by_model_.end()) continue;
    std::erase(bm->second, conn);
    if (bm->second.empty()) by_model_.erase(bm);
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

std::variant<Pick, NoPick> Router::pick(const std::string& model, const RoutingPreferences& prefs,
                                        std::span<const ConnId> exclude) const {
  auto bm = by_model_.find(model);
  if (bm == by_model_.end()) return NoPick::unknown_model;
  // Attestation does not exist yet: no node qualifies for these levels.
  if (prefs.confidential || prefs.privacy_level == "verified") return NoPick::constraint;
  bool any_eligible = false;
  bool any_untried = false;
  const NodeInfo* best = nullptr;
  size_t best_model = 0;
  double best_load = 0;
  for (ConnId c : bm->second) {
    const NodeInfo& n = nodes_.at(c);
    if (!prefs.regions.empty() && std::find(prefs.regions.begin(), prefs.regions.end(), n.region) == prefs.regions.end()) {
      continue;
    }
    any_eligible = true;
    if (std::find(exclude.begin(), exclude.end(), c) != exclude.end()) continue;
    any_untried = true;
    if (n.draining) continue;
    for (size_t i = 0; i < n.models.size(); ++i) {
      const NodeModel& m = n.models[i];
      if (m.advert.name != model || m.in_flight >= m.advert.slots) continue;
      const double load = static_cast<double>(m.in_flight) / m.advert.slots;
      if (!best || load < best_load || (load == best_load && n.ttft_ms < best->ttft_ms)) {
        best = &n;
        best_model = i;
        best_load = load;
      }
    }
  }
  if (best) return Pick{best->conn, best_model};
  if (!any_eligible) return NoPick::constraint;
  return any_untried ? NoPick::busy : NoPick::exhausted;
}

void Router::acquire(const Pick& p) {
  auto* n = find(p.conn);
  if (!n || p.model_index >= n->models.size()) return;
  ++n->models[p.model_index].in_flight;
  ++slots_busy_;
}

void Router::release(ConnId conn, const std::string& model) {
  auto* n = find(conn);
  if (!n) return;
  for (auto& m : n->models) {
    if (m.advert.name == model && m.in_flight > 0) {
      --m.in_flight;
      --slots_busy_;
      return;
    }
  }
}

void Router::set_draining(ConnId conn) {
  if (auto* n = find(conn)) n->draining = true;
}

void Router::record_ttft(ConnId conn, double ms) {
  auto* n = find(conn);
  if (!n) return;
  n->ttft_ms = n->ttft_ms == 0 ? ms : 0.8 * n->ttft_ms + 0.2 * ms;
}

std::vector<ModelSummary> Router::models() const {
  std::map<std::string, ModelSummary> out;
  for (const auto& [name, conns] : by_model_) {
    ModelSummary& s = out[name];
    s.name = name;
    for (ConnId c : conns) {
      const NodeInfo& n = nodes_.at(c);
      ++s.nodes;
      if (s.created_ms == 0 || n.connected_ms < s.created_ms) s.created_ms = n.connected_ms;
      for (const auto& m : n.models) {
        if (m.advert.name != name) continue;
        s.slots += m.advert.slots;
        s.busy += m.in_flight;
        if (s.ctx_per_slot == 0 || m.advert.ctx_per_slot < s.ctx_per_slot) s.ctx_per_slot = m.advert.ctx_per_slot;
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
