#include "gateway/node_snapshot.h"

#include <boost/json.hpp>

namespace agora::gateway {

namespace {

// A node's attestation as `agora providers list` reads it (nodes.attestation).
std::string attestation_json(const NodeInfo& n) {
  const NodeAttestation& a = n.attestation;
  return boost::json::serialize(boost::json::object{{"level", level_name(n.level)},
                                                    {"kind", a.kind},
                                                    {"status", a.status},
                                                    {"error", a.error},
                                                    {"verified_ms", a.verified_ms},
                                                    {"expires_ms", a.expires_ms},
                                                    {"summary", a.summary}});
}

}  // namespace

std::vector<store::NodeRecord> node_records(const std::unordered_map<ConnId, NodeInfo>& nodes, int64_t now_ms) {
  std::vector<store::NodeRecord> out;
  out.reserve(nodes.size());
  // Every second, for every node: a node that offers no attestation (most
  // of them) shares one serialised default instead of building its own.
  static const std::string kNone = attestation_json(NodeInfo{});
  for (const auto& [id, n] : nodes) {
    store::NodeRecord r;
    r.node_id = n.node_id;
    r.provider_id = n.provider_id;
    r.region = n.region;
    r.agent = n.agent;
    r.identity_key = n.identity_key;
    r.connected_ms = n.connected_ms;
    r.updated_ms = now_ms;
    boost::json::array models;
    for (const auto& m : n.models) {
      r.slots += m.advert.slots;
      r.slots_busy += m.in_flight;
      models.push_back(boost::json::object{{"name", m.advert.name},
                                           {"sha256", m.advert.sha256},
                                           {"quantization", m.advert.quantization},
                                           {"slots", m.advert.slots},
                                           {"busy", m.in_flight}});
    }
    r.models_json = boost::json::serialize(models);
    r.attestation_json = n.attestation.kind.empty() && n.level == Level::standard ? kNone : attestation_json(n);
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace agora::gateway
