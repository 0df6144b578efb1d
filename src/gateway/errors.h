// Every OpenAI-shaped error the gateway's core and HTTP shell return, built
// in one place: status, type, code, param, message and retry-after are
// decided here, so two paths never word the same failure differently.
// (The request parsers — openai.cpp, admin_requests.cpp, http_request.cpp —
// name the offending parameter themselves with invalid_request().) Pure.
#pragma once

#include <string>
#include <string_view>

#include "gateway/openai_names.h"
#include "protocol/messages.h"

namespace agora::gateway::errors {

// ---- scheduling (503s carry a retry-after)
ApiError shutting_down();
ApiError model_not_found(std::string_view model);
ApiError queue_full();
ApiError no_capacity();  // waited in the queue past queue_timeout
ApiError no_eligible_provider(std::string_view what);  // "No provider can serve this request under " + what
ApiError no_longer_eligible();  // a queued request whose last eligible node went away
ApiError every_provider_failed();
// ---- a node's failure, as the client sees it
ApiError providers_failed(int attempts);  // max_attempts nodes failed before output began
ApiError node_failure(const protocol::Failed& f);
ApiError provider_timeout();  // the node sent nothing for job_idle_timeout
ApiError provider_disconnected();  // the node went away after output began
ApiError sealed_answer_incomplete();
// ---- the HTTP shell
ApiError missing_api_key();
ApiError invalid_api_key();
ApiError invalid_provider_token();
ApiError model_not_allowed(std::string_view model);
ApiError conversation_unavailable(std::string_view param, std::string_view what);  // what: "read" / "deleted"
ApiError conversation_not_found(std::string_view id_or_placeholder);
ApiError generation_not_found(std::string_view id);
ApiError not_found(std::string_view what);  // "Unknown path /x", "No WebSocket endpoint at /y"
ApiError method_not_allowed(std::string_view allow, std::string_view target);
ApiError body_too_large(size_t limit);
ApiError headers_too_large(size_t limit);
ApiError malformed_request(std::string_view why);

}  // namespace agora::gateway::errors
