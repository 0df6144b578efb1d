// The bodies of the gateway's listings, as pure functions of the state they
// show: GET /v1/models (the router's model summaries), GET /v1/providers
// (the nodes a client could seal a request to) and GET /v1/generations/{id}
// (one generation record). Unit-tested in tests/gateway/listings_test.cpp.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "gateway/providers_query.h"
#include "gateway/router.h"
#include "store/store.h"

namespace agora::gateway {

// {"object":"list","data":[{"id","object":"model","created","owned_by",
// "agora":{sha256[], nodes, slots, slots_busy, slots_free, context_length,
// capacity{standard,verified,confidential}}}]}
std::string models_body(const std::vector<ModelSummary>& models);

// The nodes serving q.model that take jobs now (not held or draining), have
// an identity key and meet q.routing (level, regions); at most q.limit,
// each with its attestation (and, when live, the evidence and nonce a
// client re-verifies).
std::string providers_body(const std::unordered_map<ConnId, NodeInfo>& nodes, const ProvidersQuery& q);

std::string generation_json(const store::GenerationRecord& r);

}  // namespace agora::gateway
