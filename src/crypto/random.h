// Random secrets from the operating system's CSPRNG (OpenSSL RAND_bytes), and
// the helpers that go with them: base62 text, prefixed secrets such as API
// keys ("gk_…") and provider tokens ("pt_…"), a constant-time comparison and
// the short display prefix that is safe to store and show.
//
// Threading: every function is thread-safe (OpenSSL 3's RAND is).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace agora::crypto {

// `n` random bytes (binary). RAND_bytes failing means the process has no
// usable entropy source; there is no safe way to go on, so the process is
// ended with std::abort() (after a message on stderr) rather than return a
// weak secret. Never fails otherwise.
std::string random_bytes(size_t n);

// `chars` characters drawn uniformly and independently from [0-9A-Za-z]
// (rejection sampling: no modulo bias). Each character carries log2(62) ≈
// 5.95 bits. Aborts like random_bytes().
std::string random_base62(size_t chars);

// Length of the random part of new_secret(): 43 base62 characters ≥ 256 bits.
inline constexpr size_t kSecretRandomChars = 43;

// `prefix` followed by kSecretRandomChars random base62 characters, e.g.
// new_secret("gk_") → "gk_3fA9…" (46 characters). Aborts like random_bytes().
std::string new_secret(std::string_view prefix);

// Compares two strings without leaking, through timing, where they differ
// (CRYPTO_memcmp). Different lengths compare unequal (the length itself is
// not secret).
bool constant_time_equal(std::string_view a, std::string_view b);

// Length of secret_display_prefix().
inline constexpr size_t kSecretDisplayPrefixChars = 7;

// The first 7 characters of a secret (e.g. "gk_3fA9"), or the whole string
// when shorter: enough to tell keys apart in a list, too little to guess.
std::string secret_display_prefix(std::string_view secret);

}  // namespace agora::crypto
