// A generation request as JSON (the job frame's "request", and a sealed
// job's payload): internal to src/protocol.
#pragma once

#include "protocol/json_reader.h"
#include "protocol/wire.h"

namespace agora::protocol::detail {

json::object request_to_json(const GenerationRequest& r);
bool request_from_json(Reader& parent, const json::object& o, GenerationRequest& r);

}  // namespace agora::protocol::detail
