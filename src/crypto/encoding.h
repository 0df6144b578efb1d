// Binary-to-text encodings for keys and sealed payloads in JSON.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace agora::crypto {

// Lower-case hex of any bytes.
std::string to_hex(std::string_view bytes);
std::string to_hex(std::span<const uint8_t> bytes);
// Either case in; nullopt on odd length or a non-hex digit (what was
// decoded so far is wiped: the text may be a secret).
std::optional<std::string> from_hex(std::string_view hex);

// Standard base64 (RFC 4648 §4) with padding.
std::string to_base64(std::string_view bytes);
// nullopt on anything but canonical padded base64 (no whitespace).
std::optional<std::string> from_base64(std::string_view text);

}  // namespace agora::crypto
