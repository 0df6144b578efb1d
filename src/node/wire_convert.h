// The node's edge between the wire (protocol/wire.h) and its engine
// (engine/engine.h): the two sets of types are separate on purpose, and
// these are the only places one becomes the other. Every field is carried;
// tests/node/wire_convert_test.cpp checks each.
#pragma once

#include <vector>

#include "engine/engine.h"
#include "protocol/wire.h"

namespace agora::node {

engine::GenerationRequest to_engine(protocol::GenerationRequest r);

protocol::FinishReason to_wire(engine::FinishReason f);
protocol::Usage to_wire(const engine::Usage& u);
protocol::Timings to_wire(const engine::Timings& t);
std::vector<protocol::TokenLogprob> to_wire(const std::vector<engine::TokenLogprob>& lps);
// Consecutive fragments of one call are joined (a client reads one entry per
// call index in a chunk).
std::vector<protocol::ToolCallDelta> to_wire(const std::vector<engine::ToolCallDelta>& calls);

}  // namespace agora::node
