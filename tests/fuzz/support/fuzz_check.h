// Helpers for the libFuzzer targets: an invariant check that aborts (so
// libFuzzer keeps the input as a crash) and the fixed test keys.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>

// A property of the parser that must hold for every input.
#define FUZZ_CHECK(cond, what)                                                   \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "FUZZ_CHECK failed: %s (%s:%d)\n", what, __FILE__, __LINE__); \
      std::abort();                                                              \
    }                                                                            \
  } while (0)

namespace agora::fuzz {

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// A file of tests/fuzz/keys (test-only keys, public or made for fuzzing).
inline std::string key_file(const char* name) {
  std::ifstream in(std::string(AGORA_FUZZ_KEYS_DIR) + "/" + name, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "missing fuzz key %s/%s (run `make fuzz-seeds`)\n", AGORA_FUZZ_KEYS_DIR, name);
    std::abort();
  }
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The fixed nonce and time the attestation seeds were made for.
inline constexpr std::string_view kNonce = "5d1c6cf0f7c3a0a5c2ff5ad6f4bbf1f3e7c1b5d0a9e8f7c6b5a4f3e2d1c0b9a8";
inline constexpr int64_t kNowMs = 1'800'000'000'000;  // 2027-01-15
inline constexpr std::string_view kIdentityIkm = "agora fuzz identity key (test only)";
inline constexpr std::string_view kFuzzNodeId = "node-fuzz";

}  // namespace agora::fuzz
