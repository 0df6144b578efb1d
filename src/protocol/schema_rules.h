// The JSON Schema subset a node enforces by grammar. llama.cpp's converter
// silently drops some keywords (number bounds, uniqueItems, ...) and only
// warns about others (an unanchored pattern), which would turn a schema
// into an unconstrained answer; so every schema is checked against the
// keywords the grammar really enforces first, and anything else is a 400
// naming the keyword. Pure; the node calls it before compiling a grammar.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"
#include "protocol/wire.h"

namespace agora::protocol {

// Checks one schema, given as JSON text. `param` names it in errors
// ("tools[0].function.parameters"). Errors: invalid_argument naming the
// parameter and the keyword (or the JSON error, or the depth).
Status check_schema(std::string_view schema_json, const std::string& param);

// Every schema a request carries: each tool's parameters and
// response_format's json_schema.
Status check_request_schemas(const GenerationRequest& r);

}  // namespace agora::protocol
