// The OpenAI codec's names (src/openai), as the gateway uses them.
#pragma once

#include "openai/api_error.h"
#include "openai/openai.h"
#include "openai/routing.h"

namespace agora::gateway {

using openai::ApiError;
using openai::ChatRequest;
using openai::ChunkWriter;
using openai::CompletionResult;
using openai::Provenance;
using openai::RequestLimits;
using openai::RoutingPreferences;
using openai::completion_body;
using openai::add_tool_call_deltas;
using openai::error_body;
using openai::sealed_error_body;
using openai::invalid_request;
using openai::kMaxConversationTtlS;
using openai::parse_chat_request;
using openai::usage_json;
using openai::valid_conversation_id;

}  // namespace agora::gateway
