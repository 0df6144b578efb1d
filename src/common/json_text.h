// Hand-written JSON output for hot paths (SSE chunks, node deltas), where
// building a DOM per token would cost more than the token itself.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace agora {

// Appends `s` as a JSON string literal (with the quotes). Control characters
// are escaped; bytes that are not valid UTF-8 become U+FFFD so the output is
// always valid JSON text.
void append_json_string(std::string& out, std::string_view s);

// Appends a number in the shortest form that round-trips (finite values only;
// NaN and infinities are written as 0 — they never occur in valid output).
void append_json_number(std::string& out, double v);
void append_json_number(std::string& out, int64_t v);

// Appends raw bytes as a JSON array of integers 0-255 (token bytes that may
// be part of a UTF-8 character, as OpenAI's logprobs "bytes" field).
void append_json_bytes(std::string& out, std::string_view bytes);

}  // namespace agora
