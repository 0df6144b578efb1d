// Binary-to-text encodings for keys and sealed payloads in JSON.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace agora::crypto {

// Standard base64 (RFC 4648 §4) with padding.
std::string to_base64(std::string_view bytes);
// nullopt on anything but canonical padded base64 (no whitespace).
std::optional<std::string> from_base64(std::string_view text);

}  // namespace agora::crypto
