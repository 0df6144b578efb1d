#include "gateway/errors.h"

#include <fmt/format.h>

namespace agora::gateway::errors {

namespace {
ApiError make(int status, std::string_view type, std::string_view code, std::string_view param, std::string message,
              int retry_after_s = 0) {
  return ApiError{status, std::string(type), std::string(code), std::string(param), std::move(message), retry_after_s};
}
constexpr std::string_view kServer = "server_error";
constexpr std::string_view kInvalid = "invalid_request_error";
}  // namespace

ApiError shutting_down() { return make(503, kServer, "shutting_down", "", "the gateway is shutting down", 5); }

ApiError model_not_found(std::string_view model) {
  return make(404, kInvalid, "model_not_found", "model",
              fmt::format("The model '{}' is not served by any connected provider", model));
}

ApiError queue_full() { return make(503, kServer, "queue_full", "", "All providers are busy and the queue is full", 1); }

ApiError no_capacity() {
  return make(503, kServer, "no_capacity", "", "No provider had a free slot for this model within the queue timeout", 5);
}

ApiError no_eligible_provider(std::string_view what) {
  return make(503, kServer, "no_eligible_provider", "", fmt::format("No provider can serve this request under {}", what),
              30);
}

ApiError no_longer_eligible() {
  return make(503, kServer, "no_eligible_provider", "", "No connected provider can serve this request any more", 5);
}

ApiError every_provider_failed() {
  return make(503, kServer, "provider_failed", "", "Every provider that could serve this request failed", 5);
}

ApiError providers_failed(int attempts) {
  return make(502, kServer, "provider_failed", "", fmt::format("{} providers failed this request", attempts), 5);
}

ApiError node_failure(const protocol::Failed& f) { return openai::provider_failure(f.code, f.message); }

ApiError provider_timeout() {
  return make(502, kServer, "provider_timeout", "", "The provider failed: the provider sent nothing for too long");
}

ApiError provider_disconnected() {
  return make(502, kServer, "provider_failed", "", "The provider disconnected while generating");
}

ApiError sealed_answer_incomplete() {
  return make(502, kServer, "provider_failed", "", "The provider's sealed answer has no final chunk");
}

ApiError missing_api_key() {
  return make(401, kInvalid, "missing_api_key", "",
              "You didn't provide an API key. Send it as 'Authorization: Bearer gk_…'.");
}

ApiError invalid_api_key() { return make(401, kInvalid, "invalid_api_key", "", "Incorrect or revoked API key."); }

ApiError invalid_provider_token() {
  return make(401, kInvalid, "invalid_provider_token", "", "Missing, unknown or revoked provider token");
}

ApiError model_not_allowed(std::string_view model) {
  return make(403, "permission_error", "model_not_allowed", "model",
              fmt::format("This API key may not use the model '{}'", model));
}

ApiError conversation_unavailable(std::string_view param, std::string_view what) {
  return make(500, kServer, "conversation_unavailable", param, fmt::format("The conversation could not be {}", what));
}

ApiError conversation_not_found(std::string_view id) {
  return make(404, kInvalid, "conversation_not_found", "id", fmt::format("No conversation '{}' for this API key", id));
}

ApiError generation_not_found(std::string_view id) {
  return make(404, kInvalid, "generation_not_found", "id", fmt::format("No generation '{}' for this API key", id));
}

ApiError not_found(std::string_view what) { return make(404, kInvalid, "not_found", "", std::string(what)); }

ApiError method_not_allowed(std::string_view allow, std::string_view target) {
  return make(405, kInvalid, "method_not_allowed", "", fmt::format("Use {} for {}", allow, target));
}

ApiError body_too_large(size_t limit) {
  return make(413, kInvalid, "request_too_large", "", fmt::format("The request body is larger than {} bytes", limit));
}

ApiError headers_too_large(size_t limit) {
  return make(431, kInvalid, "headers_too_large", "", fmt::format("The request headers are larger than {} bytes", limit));
}

ApiError malformed_request(std::string_view why) {
  return make(400, kInvalid, "bad_request", "", fmt::format("Malformed HTTP request: {}", why));
}

}  // namespace agora::gateway::errors
