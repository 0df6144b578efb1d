// Router property test: thousands of random fleets (models, slots, load,
// regions, attestation levels, held and draining nodes, repeated model
// listings) and random requests (level, regions, sealed recipients,
// nodes already tried), each checked against a brute-force oracle over the
// same fleet:
//   - a verified or confidential request never goes to a node below that
//     level, nor outside its regions or recipients;
//   - a request that can be served now is served, by the best node (least
//     loaded, then fastest, then lowest connection id);
//   - otherwise the reason is the right one (unknown model, unmet
//     constraint, busy, exhausted);
//   - a request that needs tools or grammars only reaches a listing that
//     announces them;
// and the per-level capacity and eligibility counts match the fleet.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <tuple>
#include <variant>

#include "gateway/router.h"

namespace agora::gateway {
namespace {

const std::vector<std::string> kModels = {"a", "b", "c"};
const std::vector<std::string> kRegions = {"eu", "us", "ap"};

struct Fleet {
  std::mt19937_64 rng;
  Router router;
  ConnId next = 1;

  explicit Fleet(uint64_t seed) : rng(seed) {}
  int roll(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); }
  Level random_level() { return static_cast<Level>(roll(3)); }

  void add_node() {
    NodeInfo n;
    n.conn = next++;
    // Some node ids repeat (a node reconnecting has two sessions briefly).
    n.node_id = "node-" + std::to_string(roll(4) == 0 && n.conn > 1 ? roll(static_cast<int>(n.conn - 1)) + 1 : n.conn);
    n.region = kRegions[static_cast<size_t>(roll(3))];
    n.ttft_ms = roll(4) == 0 ? 0 : 1 + roll(50);
    const int count = 1 + roll(3);
    for (int i = 0; i < count; ++i) {
      NodeModel m;
      m.advert.name = kModels[static_cast<size_t>(roll(3))];
      m.advert.slots = 1 + roll(3);
      m.advert.ctx_per_slot = 512 * (1 + roll(4));
      m.advert.capabilities.tools = roll(2) == 0;
      m.advert.capabilities.grammar = roll(2) == 0;
      n.models.push_back(std::move(m));
    }
    const Level level = random_level();
    const bool held = roll(6) == 0, draining = roll(8) == 0;
    const ConnId id = n.conn;
    router.add(std::move(n));
    // Levels, holds and load change through the router, as the gateway does.
    router.set_level(id, level);
    if (held) router.set_held(id, true);
    if (draining) router.set_draining(id);
    const NodeInfo& in = *router.find(id);
    for (size_t i = 0; i < in.models.size(); ++i) {
      const int jobs = roll(in.models[i].advert.slots + 1);
      for (int j = 0; j < jobs; ++j) router.acquire(Pick{id, i});
    }
  }

  // Random changes to a random node: level, hold, load, TTFT, draining, removal.
  void churn() {
    if (router.nodes().empty()) return;
    auto it = router.nodes().begin();
    std::advance(it, roll(static_cast<int>(router.nodes().size())));
    const ConnId id = it->first;
    const NodeInfo& n = it->second;
    switch (roll(7)) {
      case 0:
        router.set_level(id, random_level());
        break;
      case 1:
        router.set_held(id, !n.held);
        break;
      case 2: {
        const size_t i = static_cast<size_t>(roll(static_cast<int>(n.models.size())));
        if (n.models[i].in_flight < n.models[i].advert.slots) router.acquire(Pick{id, i});
        break;
      }
      case 3: {
        const size_t i = static_cast<size_t>(roll(static_cast<int>(n.models.size())));
        router.release(id, n.models[i].advert.name);
        break;
      }
      case 4:
        router.record_ttft(id, 1 + roll(80));
        break;
      case 5:
        router.set_draining(id);
        break;
      default:
        router.remove(id);
    }
  }

  RoutingPreferences random_request(std::string& model, std::vector<ConnId>& exclude) {
    model = roll(10) == 0 ? "unknown" : kModels[static_cast<size_t>(roll(3))];
    RoutingPreferences p;
    switch (roll(3)) {
      case 1:
        p.privacy_level = "verified";
        break;
      case 2:
        p.confidential = true;
        if (roll(2)) p.privacy_level = "verified";
        break;
    }
    if (roll(3) == 0) {
      for (const auto& r : kRegions) {
        if (roll(2)) p.regions.push_back(r);
      }
      if (!p.regions.empty() && roll(4) == 0) p.regions.push_back(p.regions.front());  // listed twice
    }
    p.needs_tools = roll(4) == 0;
    p.needs_grammar = roll(4) == 0;
    if (roll(4) == 0) {
      const int k = 1 + roll(4);
      for (int i = 0; i < k; ++i) p.node_ids.push_back("node-" + std::to_string(1 + roll(static_cast<int>(next))));
    }
    for (const auto& [id, n] : router.nodes()) {
      if (roll(5) == 0) exclude.push_back(id);
    }
    if (!exclude.empty() && roll(3) == 0) exclude.push_back(exclude.front());  // tried twice
    return p;
  }
};

bool listed(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

// What the router should answer, worked out over every node.
struct Expected {
  bool known = false;
  std::set<ConnId> eligible;  // serves the model under the preferences
  std::vector<std::tuple<double, double, ConnId, size_t>> ready;  // not tried, free slot
  std::set<ConnId> untried;                                         // eligible, not tried
};

Expected oracle(const Router& r, const std::string& model, const RoutingPreferences& p,
                const std::vector<ConnId>& exclude) {
  Expected e;
  const Level need = required_level(p);
  for (const auto& [id, n] : r.nodes()) {
    for (size_t i = 0; i < n.models.size(); ++i) {
      const NodeModel& m = n.models[i];
      if (m.advert.name != model) continue;
      e.known = true;
      if (n.level < need) continue;
      if (!p.regions.empty() && !listed(p.regions, n.region)) continue;
      if (!p.node_ids.empty() && !listed(p.node_ids, n.node_id)) continue;
      if ((p.needs_tools && !m.advert.capabilities.tools) || (p.needs_grammar && !m.advert.capabilities.grammar)) continue;
      e.eligible.insert(id);
      const bool tried = std::find(exclude.begin(), exclude.end(), id) != exclude.end();
      if (tried) continue;
      e.untried.insert(id);
      if (n.held || n.draining || m.in_flight >= m.advert.slots) continue;
      e.ready.emplace_back(static_cast<double>(m.in_flight) / m.advert.slots, n.ttft_ms, id, i);
    }
  }
  std::sort(e.ready.begin(), e.ready.end());
  return e;
}

TEST(RouterProperty, AttestedRequestsOnlyReachNodesAtTheirLevelAndServableOnesAreServed) {
  size_t picks = 0, attested_picks = 0, constraints = 0, busy = 0, exhausted = 0, unknown = 0;
  for (uint64_t seed = 1; seed <= 2000; ++seed) {
    Fleet f(seed);
    const int size = 1 + f.roll(24);
    for (int i = 0; i < size; ++i) f.add_node();
    for (int step = 0; step < 12; ++step) {
      if (step % 3 == 2) f.churn();
      if (f.roll(8) == 0) f.add_node();
      std::string model;
      std::vector<ConnId> exclude;
      const RoutingPreferences p = f.random_request(model, exclude);
      const Expected want = oracle(f.router, model, p, exclude);
      const auto got = f.router.pick(model, p, exclude);
      SCOPED_TRACE("seed " + std::to_string(seed) + " step " + std::to_string(step) + " model " + model +
                   " level " + std::string(level_name(required_level(p))));
      if (const Pick* pk = std::get_if<Pick>(&got)) {
        ++picks;
        ASSERT_FALSE(want.ready.empty()) << "picked conn " << pk->conn << " but no node may serve this request now";
        const NodeInfo* n = f.router.find(pk->conn);
        ASSERT_NE(n, nullptr);
        ASSERT_GE(n->level, required_level(p)) << "a node below the requested level was picked";
        ASSERT_TRUE(want.eligible.contains(pk->conn)) << "picked a node the preferences exclude";
        const auto& best = want.ready.front();
        // The best by load, then TTFT, then the lower connection: the same
        // load and TTFT as the oracle's choice (ties may pick either listing).
        EXPECT_EQ(std::get<2>(best), pk->conn);
        ASSERT_LT(pk->model_index, n->models.size());
        EXPECT_EQ(n->models[pk->model_index].advert.name, model);
        const auto& caps = n->models[pk->model_index].advert.capabilities;
        EXPECT_TRUE((!p.needs_tools || caps.tools) && (!p.needs_grammar || caps.grammar))
            << "a listing without what the request needs was picked";
        if (required_level(p) != Level::standard) ++attested_picks;
        continue;
      }
      ASSERT_TRUE(want.ready.empty()) << "a node could serve this request now, but none was picked";
      const NoPick why = std::get<NoPick>(got);
      if (!want.known) {
        EXPECT_EQ(why, NoPick::unknown_model);
        ++unknown;
      } else if (want.eligible.empty()) {
        EXPECT_EQ(why, NoPick::constraint);
        ++constraints;
      } else if (want.untried.empty()) {
        EXPECT_EQ(why, NoPick::exhausted);
        ++exhausted;
      } else {
        EXPECT_EQ(why, NoPick::busy);
        ++busy;
      }
      if (p.node_ids.empty() && want.known) {
        // eligible() agrees with the oracle (it ignores recipients and tries).
        RoutingPreferences q = p;
        const auto e2 = oracle(f.router, model, q, {});
        EXPECT_EQ(f.router.eligible(model, required_level(p), p.regions, required_needs(p)), e2.eligible.size());
      }
    }
    // Nodes per level match the fleet.
    for (size_t l = 0; l < kLevels; ++l) {
      int64_t want = 0;
      for (const auto& [id, n] : f.router.nodes()) want += static_cast<size_t>(n.level) == l;
      EXPECT_EQ(f.router.nodes_at(static_cast<Level>(l)), want) << "level " << l;
    }
    // Capacity by level matches the fleet.
    for (const auto& s : f.router.models()) {
      for (size_t l = 0; l < kLevels; ++l) {
        Capacity c;
        for (const auto& [id, n] : f.router.nodes()) {
          if (static_cast<size_t>(n.level) < l) continue;
          bool serves = false;
          for (const auto& m : n.models) {
            if (m.advert.name != s.name) continue;
            serves = true;
            c.slots += m.advert.slots;
            c.busy += m.in_flight;
          }
          c.nodes += serves;
        }
        EXPECT_EQ(s.by_level[l].nodes, c.nodes) << s.name << " level " << l;
        EXPECT_EQ(s.by_level[l].slots, c.slots) << s.name << " level " << l;
        EXPECT_EQ(s.by_level[l].busy, c.busy) << s.name << " level " << l;
      }
    }
    if (HasFatalFailure()) return;
  }
  // The random fleets exercised every outcome, attested picks included.
  EXPECT_GT(attested_picks, 1000u);
  EXPECT_GT(constraints, 500u);
  EXPECT_GT(busy, 100u);
  EXPECT_GT(exhausted, 50u);
  EXPECT_GT(unknown, 500u);
  std::printf("picks=%zu attested=%zu constraint=%zu busy=%zu exhausted=%zu unknown=%zu\n", picks, attested_picks,
              constraints, busy, exhausted, unknown);
}

}  // namespace
}  // namespace agora::gateway
