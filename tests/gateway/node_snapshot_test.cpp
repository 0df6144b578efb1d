#include "gateway/node_snapshot.h"

#include <boost/json.hpp>
#include <gtest/gtest.h>

namespace agora::gateway {
namespace {

TEST(NodeSnapshot, OneRecordPerNodeWithSlotsModelsAndAttestation) {
  std::unordered_map<ConnId, NodeInfo> nodes;
  NodeInfo a;
  a.conn = 1;
  a.node_id = "n1";
  a.provider_id = "p1";
  a.connected_ms = 5;
  protocol::ModelAdvert m;
  m.name = "tiny";
  m.sha256 = std::string(64, 'c');
  m.slots = 4;
  a.models = {NodeModel{m, 3}, NodeModel{m, 1}};
  nodes[1] = a;
  NodeInfo b = a;
  b.conn = 2;
  b.node_id = "n2";
  b.level = Level::confidential;
  b.attestation.kind = "nvidia_cc";
  b.attestation.status = "verified";
  b.attestation.expires_ms = 99;
  nodes[2] = b;
  auto records = node_records(nodes, 1234);
  ASSERT_EQ(records.size(), 2u);
  std::sort(records.begin(), records.end(), [](const auto& x, const auto& y) { return x.node_id < y.node_id; });
  EXPECT_EQ(records[0].slots, 8);
  EXPECT_EQ(records[0].slots_busy, 4);
  EXPECT_EQ(records[0].updated_ms, 1234);
  EXPECT_EQ(records[0].connected_ms, 5);
  const auto models = boost::json::parse(records[0].models_json).as_array();
  ASSERT_EQ(models.size(), 2u);
  EXPECT_EQ(models[0].at("busy"), 3);
  EXPECT_EQ(boost::json::parse(records[0].attestation_json).at("level"), "standard");
  const auto att = boost::json::parse(records[1].attestation_json);
  EXPECT_EQ(att.at("level"), "confidential");
  EXPECT_EQ(att.at("kind"), "nvidia_cc");
  EXPECT_EQ(att.at("expires_ms"), 99);
  EXPECT_TRUE(node_records({}, 0).empty());
}

}  // namespace
}  // namespace agora::gateway
