// Attestation levels: what a node's hardware has proven, lowest first. A
// node at a level also serves every lower one (router.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace agora::gateway {

enum class Level : uint8_t { standard = 0, verified = 1, confidential = 2 };
inline constexpr size_t kLevels = 3;

constexpr std::string_view level_name(Level level) {
  switch (level) {
    case Level::verified:
      return "verified";
    case Level::confidential:
      return "confidential";
    case Level::standard:
      break;
  }
  return "standard";
}

// "standard" | "verified" | "confidential" -> the level; false if none.
constexpr bool parse_level(std::string_view name, Level& out) {
  for (Level l : {Level::standard, Level::verified, Level::confidential}) {
    if (name == level_name(l)) {
      out = l;
      return true;
    }
  }
  return false;
}

}  // namespace agora::gateway
