#include "gateway/listings.h"

#include <boost/json.hpp>

#include <algorithm>
#include <gtest/gtest.h>

namespace agora::gateway {
namespace {

namespace json = boost::json;

NodeInfo node(ConnId conn, std::string model, Level level = Level::standard, std::string region = "eu") {
  NodeInfo n;
  n.conn = conn;
  n.node_id = "node-" + std::to_string(conn);
  n.provider_id = "prov-1";
  n.region = std::move(region);
  n.identity_key = std::string(64, 'b');
  n.level = level;
  protocol::ModelAdvert a;
  a.name = std::move(model);
  a.sha256 = std::string(64, 'a');
  a.slots = 2;
  a.ctx_per_slot = 1024;
  n.models.push_back(NodeModel{a, 1});
  if (level != Level::standard) {
    n.attestation.kind = "nvidia_cc";
    n.attestation.status = "verified";
    n.attestation.verified_ms = 1'000'000;
    n.attestation.expires_ms = 2'000'000;
    n.attestation.nonce = "abcd";
    n.attestation.evidence = "{\"eat\":1}";
  }
  return n;
}

TEST(Listings, ModelsBodyIsOpenAIsListWithCapacityByLevel) {
  ModelSummary m;
  m.name = "tiny";
  m.sha256 = {std::string(64, 'a')};
  m.nodes = 2;
  m.slots = 4;
  m.busy = 1;
  m.ctx_per_slot = 512;
  m.created_ms = 1'700'000'123'456;
  m.by_level[0] = Capacity{2, 4, 1};
  m.by_level[2] = Capacity{1, 2, 0};
  const auto v = json::parse(models_body({m}));
  EXPECT_EQ(v.at("object"), "list");
  const auto& d = v.at("data").as_array().at(0);
  EXPECT_EQ(d.at("id"), "tiny");
  EXPECT_EQ(d.at("object"), "model");
  EXPECT_EQ(d.at("created"), 1'700'000'123);
  EXPECT_EQ(d.at("owned_by"), "agora");
  const auto& a = d.at("agora");
  EXPECT_EQ(a.at("slots_free"), 3);
  EXPECT_EQ(a.at("context_length"), 512);
  EXPECT_EQ(a.at("capacity").at("confidential").at("slots_free"), 2);
  EXPECT_EQ(a.at("capacity").at("verified").at("nodes"), 0);
  EXPECT_EQ(json::parse(models_body({})).at("data").as_array().size(), 0u);
}

TEST(Listings, ProvidersBodyListsOnlyNodesAClientCouldSealTo) {
  std::unordered_map<ConnId, NodeInfo> nodes;
  nodes[1] = node(1, "tiny");
  nodes[2] = node(2, "tiny", Level::confidential, "us");
  nodes[3] = node(3, "other");
  nodes[4] = node(4, "tiny");
  nodes[4].held = true;
  nodes[5] = node(5, "tiny");
  nodes[5].draining = true;
  nodes[6] = node(6, "tiny");
  nodes[6].identity_key.clear();
  ProvidersQuery q;
  q.model = "tiny";
  auto ids = [&](const ProvidersQuery& query) {
    std::set<std::string> out;
    const json::value v = json::parse(providers_body(nodes, query));
    for (const auto& e : v.at("data").as_array()) {
      out.insert(std::string(e.at("id").as_string()));
    }
    return out;
  };
  EXPECT_EQ(ids(q), (std::set<std::string>{"node-1", "node-2"}));
  q.routing.confidential = true;
  EXPECT_EQ(ids(q), (std::set<std::string>{"node-2"}));
  q.routing.confidential = false;
  q.routing.regions = {"eu"};
  EXPECT_EQ(ids(q), (std::set<std::string>{"node-1"}));
  q.routing.regions.clear();
  q.limit = 1;
  EXPECT_EQ(ids(q).size(), 1u);
}

std::vector<std::string> strings(const json::value& v) {
  std::vector<std::string> out;
  for (const auto& x : v.as_array()) out.emplace_back(x.as_string());
  return out;
}

TEST(Listings, SupportedParametersFollowWhatTheNodesAnnounce) {
  ModelSummary plain;
  plain.name = "plain";
  ModelSummary full = plain;
  full.name = "full";
  full.capabilities = {true, true, true};
  const auto v = json::parse(models_body({plain, full}));
  const auto p = strings(v.at("data").at(0).at("supported_parameters"));
  const auto f = strings(v.at("data").at(1).at("supported_parameters"));
  auto has = [](const std::vector<std::string>& l, const char* x) { return std::find(l.begin(), l.end(), x) != l.end(); };
  for (const char* k : {"max_tokens", "temperature", "top_p", "stop", "seed", "logprobs"}) {
    EXPECT_TRUE(has(p, k)) << k;
    EXPECT_TRUE(has(f, k)) << k;
  }
  for (const char* k : {"tools", "tool_choice", "parallel_tool_calls", "response_format", "structured_outputs"}) {
    EXPECT_FALSE(has(p, k)) << k;
    EXPECT_TRUE(has(f, k)) << k;
  }

  // Per node in /v1/providers, capable nodes first (a client filters them
  // itself; the query never says what its request needs).
  std::unordered_map<ConnId, NodeInfo> nodes;
  for (ConnId c = 1; c <= 6; ++c) nodes[c] = node(c, "tiny");
  nodes[5].models[0].advert.capabilities = {true, false, true};
  nodes[5].protocol = 2;
  nodes[2].protocol = 1;
  ProvidersQuery q;
  q.model = "tiny";
  q.limit = 2;
  const auto listed = json::parse(providers_body(nodes, q)).at("data").as_array();
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].at("id"), "node-5");
  EXPECT_EQ(listed[0].at("protocol"), 2);
  EXPECT_EQ(listed[0].at("capabilities").at("tools"), true);
  EXPECT_EQ(listed[0].at("capabilities").at("parallel_tool_calls"), false);
  EXPECT_EQ(listed[0].at("capabilities").at("structured_outputs"), true);
  EXPECT_TRUE(has(strings(listed[0].at("supported_parameters")), "response_format"));
  EXPECT_EQ(listed[1].at("capabilities").at("tools"), false);
}

TEST(Listings, ProvidersBodyCarriesTheEvidenceOfALiveVerdictOnly) {
  std::unordered_map<ConnId, NodeInfo> nodes;
  nodes[2] = node(2, "tiny", Level::confidential);
  nodes[1] = node(1, "tiny");
  ProvidersQuery q;
  q.model = "tiny";
  const json::value v = json::parse(providers_body(nodes, q));
  ASSERT_EQ(v.at("data").as_array().size(), 2u);
  for (const auto& e : v.at("data").as_array()) {
    const auto& a = e.at("attestation");
    EXPECT_EQ(e.at("object"), "provider.node");
    EXPECT_EQ(e.at("model_sha256").as_string(), std::string(64, 'a'));
    if (e.at("id") == "node-2") {
      EXPECT_EQ(a.at("level"), "confidential");
      EXPECT_EQ(a.at("kind"), "nvidia_cc");
      EXPECT_EQ(a.at("nonce"), "abcd");
      EXPECT_EQ(a.at("evidence"), "{\"eat\":1}");
      EXPECT_EQ(a.at("expires_at"), 2'000);
    } else {
      EXPECT_EQ(a.at("level"), "standard");
      EXPECT_TRUE(a.at("kind").is_null());
      EXPECT_TRUE(a.at("evidence").is_null());
    }
  }
}

TEST(Listings, GenerationJsonHasUsageAndTimings) {
  store::GenerationRecord r;
  r.id = "gen-1";
  r.model = "tiny";
  r.finish_reason = "stop";
  r.stream = true;
  r.prompt_tokens = 3;
  r.completion_tokens = 5;
  r.queued_ms = 1.5;
  r.total_ms = 9;
  r.created_ms = 1'700'000'000'999;
  const auto v = json::parse(generation_json(r));
  EXPECT_EQ(v.at("object"), "generation");
  EXPECT_EQ(v.at("created"), 1'700'000'000);
  EXPECT_EQ(v.at("stream"), true);
  EXPECT_EQ(v.at("usage").at("total_tokens"), 8);
  EXPECT_EQ(v.at("timings").at("queued_ms"), 1.5);
}

}  // namespace
}  // namespace agora::gateway
