// The node snapshot: what the store's `nodes` table shows of the connected
// nodes (`agora providers list` reads it), built from the router's view.
// Pure; the gateway writes it about once a second and at stop.
#pragma once

#include <unordered_map>
#include <vector>

#include "gateway/router.h"
#include "store/store.h"

namespace agora::gateway {

std::vector<store::NodeRecord> node_records(const std::unordered_map<ConnId, NodeInfo>& nodes, int64_t now_ms);

}  // namespace agora::gateway
