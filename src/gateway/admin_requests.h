// Request bodies of the admin API (admin_api.cpp), as pure parsers:
//   POST /admin/v1/keys              {"name", "rpm", "tpm", "max_concurrent",
//                                    "expires_in": "30d", "models": [...]}
//   POST /admin/v1/keys/{id}/rotate  {"grace": "24h"} (or no body)
// Errors are 400s in OpenAI's shape naming the field.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "gateway/openai_names.h"
#include "store/credentials.h"

namespace agora::gateway {

// An admin API error: server_error type for 5xx, else invalid_request_error.
ApiError admin_error(int status, std::string code, std::string message, std::string param = "");

// The field a store::validate_key_spec message names ("rpm: must be …" →
// "rpm"); empty when it names none.
std::string key_spec_field(const std::string& message);

// The body of POST /admin/v1/keys, validated (store::validate_key_spec)
// at `now_ms`. Limits: a positive integer, null (no limit) or absent
// (gateway default). At most 8 levels of JSON.
std::variant<store::KeySpec, ApiError> parse_key_spec(std::string_view body, int64_t now_ms);

// The body of POST /admin/v1/keys/{id}/rotate: the old key's grace period
// (default 24 h); an empty body takes the default. At most 8 levels of JSON.
inline constexpr int64_t kDefaultRotateGraceMs = 24LL * 3600 * 1000;
std::variant<int64_t, ApiError> parse_rotate_grace(std::string_view body);

}  // namespace agora::gateway
