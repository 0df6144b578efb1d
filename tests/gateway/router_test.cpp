// Router: pure bookkeeping of connected nodes and which one serves the next
// request.
#include "gateway/router.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace agora::gateway {
namespace {

using ::testing::ElementsAre;

struct ModelSpec {
  std::string name;
  int32_t slots = 1;
  int32_t in_flight = 0;
  std::string sha256 = "sha-a";
  int32_t ctx_per_slot = 2048;
};

NodeInfo make_node(ConnId conn, std::vector<ModelSpec> models, std::string region = "eu", double ttft_ms = 0,
                   int64_t connected_ms = 1000) {
  NodeInfo n;
  n.conn = conn;
  n.node_id = "node-" + std::to_string(conn);
  n.provider_id = "prov-" + std::to_string(conn);
  n.region = std::move(region);
  n.ttft_ms = ttft_ms;
  n.connected_ms = connected_ms;
  for (auto& m : models) {
    NodeModel nm;
    nm.advert.name = m.name;
    nm.advert.sha256 = m.sha256;
    nm.advert.slots = m.slots;
    nm.advert.ctx_per_slot = m.ctx_per_slot;
    nm.in_flight = m.in_flight;
    n.models.push_back(std::move(nm));
  }
  return n;
}

const RoutingPreferences kAnywhere{};

// The picked connection, or 0 (after a recorded failure) when none was.
ConnId picked(const Router& r, const std::string& model, const RoutingPreferences& prefs = kAnywhere,
              std::vector<ConnId> exclude = {}) {
  auto p = r.pick(model, prefs, exclude);
  if (auto* np = std::get_if<NoPick>(&p)) {
    ADD_FAILURE() << "no pick for " << model << ": " << static_cast<int>(*np);
    return 0;
  }
  return std::get<Pick>(p).conn;
}

std::optional<NoPick> no_pick(const Router& r, const std::string& model, const RoutingPreferences& prefs = kAnywhere,
                              std::vector<ConnId> exclude = {}) {
  auto p = r.pick(model, prefs, exclude);
  if (auto* np = std::get_if<NoPick>(&p)) return *np;
  return std::nullopt;
}

TEST(Router, PicksTheOnlyNodeAndTheRightModelIndex) {
  Router r;
  r.add(make_node(7, {{"a", 2}, {"b", 2}}));
  auto p = r.pick("b", kAnywhere, {});
  ASSERT_TRUE(std::holds_alternative<Pick>(p));
  EXPECT_EQ(std::get<Pick>(p).conn, 7u);
  EXPECT_EQ(std::get<Pick>(p).model_index, 1u);
  EXPECT_TRUE(r.serves("a"));
  EXPECT_TRUE(r.serves("b"));
  EXPECT_FALSE(r.serves("c"));
}

TEST(Router, PicksTheLeastLoadedNode) {
  Router r;
  // Loads: 1 = 3/4, 2 = 1/4, 3 = 1/2. Node 2 is slowest but least loaded.
  r.add(make_node(1, {{"m", 4, 3}}, "eu", 10));
  r.add(make_node(2, {{"m", 4, 1}}, "eu", 500));
  r.add(make_node(3, {{"m", 2, 1}}, "eu", 20));
  EXPECT_EQ(picked(r, "m"), 2u);
}

TEST(Router, LoadIsRelativeToSlots) {
  Router r;
  // Node 1 has fewer jobs in flight but is fuller: 1/1 vs 2/8.
  r.add(make_node(1, {{"m", 2, 1}}));
  r.add(make_node(2, {{"m", 8, 2}}));
  EXPECT_EQ(picked(r, "m"), 2u);
}

TEST(Router, BreaksLoadTiesByLowestTtft) {
  Router r;
  r.add(make_node(1, {{"m", 2}}, "eu", 300));
  r.add(make_node(2, {{"m", 4}}, "eu", 100));
  r.add(make_node(3, {{"m", 1}}, "eu", 200));
  EXPECT_EQ(picked(r, "m"), 2u);
  r.record_ttft(2, 1000);  // 100 -> 0.8 * 100 + 0.2 * 1000 = 280: now node 3 is fastest
  EXPECT_DOUBLE_EQ(r.find(2)->ttft_ms, 280.0);
  EXPECT_EQ(picked(r, "m"), 3u);
}

TEST(Router, RecordTtftStartsFromTheFirstMeasurement) {
  Router r;
  r.add(make_node(1, {{"m", 1}}));
  r.record_ttft(1, 50);
  EXPECT_DOUBLE_EQ(r.find(1)->ttft_ms, 50.0);
  r.record_ttft(1, 100);
  EXPECT_DOUBLE_EQ(r.find(1)->ttft_ms, 60.0);
  r.record_ttft(99, 1);  // unknown: ignored
}

TEST(Router, FullNodesAreSkippedAndAllFullIsBusy) {
  Router r;
  r.add(make_node(1, {{"m", 1}}, "eu", 1));
  r.add(make_node(2, {{"m", 1}}, "eu", 2));
  const ConnId first = picked(r, "m");
  EXPECT_EQ(first, 1u);
  r.acquire(std::get<Pick>(r.pick("m", kAnywhere, {})));
  EXPECT_EQ(picked(r, "m"), 2u);  // node 1 is full now
  r.acquire(std::get<Pick>(r.pick("m", kAnywhere, {})));
  EXPECT_EQ(no_pick(r, "m"), NoPick::busy);
  r.release(2, "m");
  EXPECT_EQ(picked(r, "m"), 2u);
}

TEST(Router, NodeWithZeroSlotsIsNeverPicked) {
  Router r;
  r.add(make_node(1, {{"m", 0}}));
  EXPECT_EQ(no_pick(r, "m"), NoPick::busy);
}

TEST(Router, ExcludedNodesAreSkippedAndAllExcludedIsExhausted) {
  Router r;
  r.add(make_node(1, {{"m", 4}}, "eu", 1));
  r.add(make_node(2, {{"m", 4}}, "eu", 2));
  EXPECT_EQ(picked(r, "m", kAnywhere, {1}), 2u);
  EXPECT_EQ(no_pick(r, "m", kAnywhere, {1, 2}), NoPick::exhausted);
  // Node 1 untried but full, node 2 excluded: busy (node 1 may free up), not exhausted.
  r.acquire({1, 0});
  r.acquire({1, 0});
  r.acquire({1, 0});
  r.acquire({1, 0});
  EXPECT_EQ(no_pick(r, "m", kAnywhere, {2}), NoPick::busy);
}

TEST(Router, UnknownModel) {
  Router r;
  EXPECT_EQ(no_pick(r, "m"), NoPick::unknown_model);
  r.add(make_node(1, {{"other", 4}}));
  EXPECT_EQ(no_pick(r, "m"), NoPick::unknown_model);
  RoutingPreferences verified;
  verified.privacy_level = "verified";
  EXPECT_EQ(no_pick(r, "m", verified), NoPick::unknown_model);  // unknown wins over constraints
}

TEST(Router, RegionConstraint) {
  Router r;
  r.add(make_node(1, {{"m", 4}}, "us-east", 1));
  r.add(make_node(2, {{"m", 4, 3}}, "eu-west", 2));
  RoutingPreferences eu;
  eu.regions = {"eu-west"};
  EXPECT_EQ(picked(r, "m", eu), 2u);  // more loaded, but the only one allowed
  RoutingPreferences either;
  either.regions = {"ap-south", "us-east"};
  EXPECT_EQ(picked(r, "m", either), 1u);
  RoutingPreferences nowhere;
  nowhere.regions = {"ap-south"};
  EXPECT_EQ(no_pick(r, "m", nowhere), NoPick::constraint);
  // Allowed region, but excluded: exhausted, not constraint.
  EXPECT_EQ(no_pick(r, "m", eu, {2}), NoPick::exhausted);
}

TEST(Router, VerifiedAndConfidentialNeedTheLevel) {
  Router r;
  r.add(make_node(1, {{"m", 4}}, "eu", 1));
  RoutingPreferences verified;
  verified.privacy_level = "verified";
  RoutingPreferences confidential;
  confidential.confidential = true;
  EXPECT_EQ(no_pick(r, "m", verified), NoPick::constraint);
  EXPECT_EQ(no_pick(r, "m", confidential), NoPick::constraint);
  EXPECT_EQ(r.eligible("m", Level::verified, {}), 0u);

  // A device verdict serves verified (and standard), not confidential.
  r.add(make_node(2, {{"m", 4}}, "eu", 5));
  r.set_level(2, Level::verified);
  EXPECT_EQ(picked(r, "m", verified), 2u);
  EXPECT_EQ(no_pick(r, "m", confidential), NoPick::constraint);
  EXPECT_EQ(picked(r, "m"), 1u);  // the faster standard node for a standard request

  // A GPU TEE verdict serves all three.
  r.add(make_node(3, {{"m", 4}}, "us", 9));
  r.set_level(3, Level::confidential);
  EXPECT_EQ(picked(r, "m", confidential), 3u);
  EXPECT_EQ(picked(r, "m", verified), 2u);
  EXPECT_EQ(r.eligible("m", Level::verified, {}), 2u);
  EXPECT_EQ(r.eligible("m", Level::confidential, {"eu"}), 0u);
  RoutingPreferences confidential_eu = confidential;
  confidential_eu.regions = {"eu"};
  EXPECT_EQ(no_pick(r, "m", confidential_eu), NoPick::constraint);

  // Busy, then exhausted, within the level.
  EXPECT_EQ(no_pick(r, "m", confidential, {3}), NoPick::exhausted);
  for (int i = 0; i < 4; ++i) r.acquire(Pick{3, 0});
  EXPECT_EQ(no_pick(r, "m", confidential), NoPick::busy);

  // Dropping the verdict takes the node out of the attested tiers at once.
  r.set_level(2, Level::standard);
  EXPECT_EQ(no_pick(r, "m", verified), NoPick::busy);  // only node 3, full
  r.set_level(3, Level::standard);
  EXPECT_EQ(no_pick(r, "m", verified), NoPick::constraint);
  auto models = r.models();
  ASSERT_EQ(models.size(), 1u);
  EXPECT_EQ(models[0].by_level[0].nodes, 3);
  EXPECT_EQ(models[0].by_level[1].nodes, 0);
  EXPECT_EQ(models[0].by_level[0].busy, 4);
}

TEST(Router, DrainingNodesAreSkipped) {
  Router r;
  r.add(make_node(1, {{"m", 4}}, "eu", 1));
  r.add(make_node(2, {{"m", 4, 3}}, "eu", 2));
  r.set_draining(1);
  EXPECT_TRUE(r.find(1)->draining);
  EXPECT_EQ(picked(r, "m"), 2u);
  r.set_draining(42);  // unknown: ignored
}

// A held node (agreement not accepted, provider suspended) gets nothing,
// but still counts as capacity worth waiting for (the request queues);
// released, it is picked again, its slot counts intact.
TEST(Router, HeldNodesAreSkippedButQueueAndComeBack) {
  Router r;
  r.add(make_node(1, {{"m", 4, 1}}));
  r.set_held(1, true);
  EXPECT_TRUE(r.find(1)->held);
  auto p = r.pick("m", {}, {});
  ASSERT_TRUE(std::holds_alternative<NoPick>(p));
  EXPECT_EQ(std::get<NoPick>(p), NoPick::busy);
  r.add(make_node(2, {{"m", 4}}));
  EXPECT_EQ(picked(r, "m"), 2u);
  r.set_held(2, true);
  r.set_held(1, false);
  EXPECT_EQ(picked(r, "m"), 1u);
  EXPECT_EQ(r.find(1)->models[0].in_flight, 1);
  r.set_held(1, false);  // twice: no change
  r.set_held(42, true);  // unknown: ignored
  EXPECT_EQ(picked(r, "m"), 1u);
}

// A sealed request goes only to the nodes it was sealed to.
TEST(Router, NodeIdsRestrictThePickToTheRecipients) {
  Router r;
  r.add(make_node(1, {{"m", 4}}, "eu"));
  r.add(make_node(2, {{"m", 4, 2}}, "eu"));
  r.add(make_node(3, {{"m", 4}}, "us"));
  RoutingPreferences p;
  p.node_ids = {r.find(2)->node_id, r.find(3)->node_id};
  auto first = r.pick("m", p, {});
  ASSERT_TRUE(std::holds_alternative<Pick>(first));
  EXPECT_EQ(std::get<Pick>(first).conn, 3u);  // the less loaded recipient, not node 1
  p.regions = {"eu"};
  EXPECT_EQ(std::get<Pick>(r.pick("m", p, {})).conn, 2u);
  const std::vector<ConnId> tried{2};
  EXPECT_EQ(std::get<NoPick>(r.pick("m", p, tried)), NoPick::exhausted);
  r.set_held(2, true);
  EXPECT_EQ(std::get<NoPick>(r.pick("m", p, {})), NoPick::busy);  // worth waiting for
  p.node_ids = {"no-such-node"};
  p.regions.clear();
  EXPECT_EQ(std::get<NoPick>(r.pick("m", p, {})), NoPick::constraint);
  r.remove(3);
  p.node_ids = {"node-3"};
  EXPECT_EQ(std::get<NoPick>(r.pick("m", p, {})), NoPick::constraint);
}

TEST(Router, ContextForIsTheSmallestAmongTheModelsNodes) {
  Router r;
  EXPECT_EQ(r.context_for("m"), 0);
  auto a = make_node(1, {{"m", 4}});
  a.models[0].advert.ctx_per_slot = 4096;
  auto b = make_node(2, {{"m", 4}, {"other", 1}});
  b.models[0].advert.ctx_per_slot = 1024;
  b.models[1].advert.ctx_per_slot = 128;
  r.add(a);
  r.add(b);
  EXPECT_EQ(r.context_for("m"), 1024);
  EXPECT_EQ(r.context_for("other"), 128);
  r.remove(2);
  EXPECT_EQ(r.context_for("m"), 4096);
}

TEST(Router, AcquireAndReleaseKeepSlotCountsRight) {
  Router r;
  r.add(make_node(1, {{"a", 4}, {"b", 2, 1}}));
  r.add(make_node(2, {{"a", 3}}));
  EXPECT_EQ(r.slots_total(), 9);
  EXPECT_EQ(r.slots_busy(), 1);

  r.acquire({1, 0});
  r.acquire({1, 0});
  r.acquire({2, 0});
  EXPECT_EQ(r.slots_busy(), 4);
  EXPECT_EQ(r.find(1)->models[0].in_flight, 2);
  EXPECT_EQ(r.find(2)->models[0].in_flight, 1);

  r.release(1, "a");
  EXPECT_EQ(r.slots_busy(), 3);
  EXPECT_EQ(r.find(1)->models[0].in_flight, 1);
  r.release(1, "b");
  EXPECT_EQ(r.find(1)->models[1].in_flight, 0);
  EXPECT_EQ(r.slots_busy(), 2);

  // Releases that match nothing never go negative.
  r.release(1, "b");
  r.release(1, "zzz");
  r.release(99, "a");
  EXPECT_EQ(r.find(1)->models[1].in_flight, 0);
  EXPECT_EQ(r.slots_busy(), 2);
  // Acquires on unknown nodes or model indexes are ignored.
  r.acquire({99, 0});
  r.acquire({1, 5});
  EXPECT_EQ(r.slots_busy(), 2);

  // Removing a node takes its slots and busy slots with it.
  r.remove(1);
  EXPECT_EQ(r.slots_total(), 3);
  EXPECT_EQ(r.slots_busy(), 1);
  r.release(2, "a");
  EXPECT_EQ(r.slots_busy(), 0);
  r.remove(2);
  EXPECT_EQ(r.slots_total(), 0);
  EXPECT_EQ(r.slots_busy(), 0);
  r.remove(2);  // twice: no-op
  EXPECT_EQ(r.slots_total(), 0);
}

TEST(Router, AddReplacesANodeWithTheSameConn) {
  Router r;
  r.add(make_node(1, {{"a", 4, 2}}));
  r.add(make_node(1, {{"b", 3, 1}}));
  EXPECT_EQ(r.nodes().size(), 1u);
  EXPECT_EQ(r.slots_total(), 3);
  EXPECT_EQ(r.slots_busy(), 1);
  EXPECT_FALSE(r.serves("a"));
  EXPECT_TRUE(r.serves("b"));
  EXPECT_EQ(no_pick(r, "a"), NoPick::unknown_model);
}

TEST(Router, RemoveCleansTheByModelIndex) {
  Router r;
  r.add(make_node(1, {{"a", 1}, {"b", 1}}));
  r.add(make_node(2, {{"a", 1}}));
  r.remove(1);
  EXPECT_EQ(r.find(1), nullptr);
  EXPECT_TRUE(r.serves("a"));
  EXPECT_FALSE(r.serves("b"));
  EXPECT_EQ(no_pick(r, "b"), NoPick::unknown_model);
  EXPECT_EQ(picked(r, "a"), 2u);
  r.remove(2);
  EXPECT_FALSE(r.serves("a"));
  EXPECT_TRUE(r.models().empty());
  EXPECT_TRUE(r.nodes().empty());
}

TEST(Router, ModelsSummary) {
  Router r;
  r.add(make_node(1, {{"a", 4, 1, "sha-1", 4096}, {"b", 1, 0, "sha-b", 512}}, "eu", 0, 3000));
  r.add(make_node(2, {{"a", 2, 2, "sha-2", 1024}}, "us", 0, 2000));
  r.add(make_node(3, {{"a", 1, 0, "sha-1", 8192}}, "us", 0, 5000));
  const auto models = r.models();
  ASSERT_EQ(models.size(), 2u);
  const ModelSummary& a = models[0];
  EXPECT_EQ(a.name, "a");
  EXPECT_EQ(a.nodes, 3);
  EXPECT_EQ(a.slots, 7);
  EXPECT_EQ(a.busy, 3);
  EXPECT_EQ(a.ctx_per_slot, 1024);
  EXPECT_EQ(a.created_ms, 2000);
  auto sha = a.sha256;
  std::sort(sha.begin(), sha.end());
  EXPECT_THAT(sha, ElementsAre("sha-1", "sha-2"));
  const ModelSummary& b = models[1];
  EXPECT_EQ(b.name, "b");
  EXPECT_EQ(b.nodes, 1);
  EXPECT_EQ(b.slots, 1);
  EXPECT_EQ(b.busy, 0);
  EXPECT_EQ(b.ctx_per_slot, 512);
  EXPECT_EQ(b.created_ms, 3000);
  EXPECT_THAT(b.sha256, ElementsAre("sha-b"));
}

TEST(Router, FindReturnsTheStoredNode) {
  Router r;
  r.add(make_node(5, {{"m", 1}}, "ap"));
  const Router& cr = r;
  ASSERT_NE(cr.find(5), nullptr);
  EXPECT_EQ(cr.find(5)->region, "ap");
  EXPECT_EQ(cr.find(5)->node_id, "node-5");
  EXPECT_EQ(cr.find(6), nullptr);
}

}  // namespace
}  // namespace agora::gateway
