// The function-calling and structured-output part of the OpenAI codec
// (internal to src/openai): parsing tools, tool_choice,
// parallel_tool_calls, response_format and the messages that carry calls
// and their results, and writing message.tool_calls and delta.tool_calls
// exactly as OpenAI's Chat Completions API does. Pure.
#pragma once

#include <boost/json/fwd.hpp>

#include <optional>
#include <string>
#include <vector>

#include "openai/api_error.h"
#include "protocol/wire.h"

namespace agora::openai::detail {

// tools, tool_choice, parallel_tool_calls and response_format into `g`.
// Schemas become JSON text; their keywords are checked by the request
// rules (protocol/schema_rules.h). Errors name the parameter.
std::optional<ApiError> parse_tool_fields(const boost::json::object& o, protocol::GenerationRequest& g);

// An assistant message's "tool_calls" (param: "messages[i].tool_calls").
std::optional<ApiError> parse_message_tool_calls(const boost::json::value& v, const std::string& param,
                                                 std::vector<protocol::ToolCall>& out);

// "tool_calls":[{"id","type":"function","function":{"name","arguments"}}…]
void append_message_tool_calls(std::string& out, const std::vector<protocol::ToolCallDelta>& calls);
// "tool_calls":[{"index", then "id","type","function":{"name","arguments"}
// for a call's first fragment, else "function":{"arguments"}}…]
void append_delta_tool_calls(std::string& out, const std::vector<protocol::ToolCallDelta>& calls);

}  // namespace agora::openai::detail
