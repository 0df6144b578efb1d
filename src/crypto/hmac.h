// HMAC-SHA-256 (RFC 2104) and HKDF-SHA-256 (RFC 5869) on OpenSSL's EVP
// digests.
//
// HmacSha256 is the keyed hash on the request path (API keys and provider
// tokens are looked up by HMAC): it absorbs the key's inner and outer pad
// blocks once, so each MAC costs two digest-state copies and the hashing of
// the message itself — no key schedule, no provider fetch per call.
//
// Threading: a HmacSha256 is immutable after construction and mac() is
// thread-safe (each call copies the precomputed states). HKDF functions are
// thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "crypto/encoding.h"  // to_hex

namespace agora::crypto {

using Digest256 = std::array<uint8_t, 32>;

class HmacSha256 {
 public:
  // Any key length (RFC 2104: keys longer than a block are hashed first).
  explicit HmacSha256(std::span<const uint8_t> key);
  ~HmacSha256();
  HmacSha256(const HmacSha256&) = delete;
  HmacSha256& operator=(const HmacSha256&) = delete;

  Digest256 mac(std::string_view message) const;
  // Lower-case hex of mac(): what the database stores.
  std::string mac_hex(std::string_view message) const;

 private:
  struct States;
  std::unique_ptr<States> s_;
};

// One-shot HMAC-SHA-256.
Digest256 hmac_sha256(std::span<const uint8_t> key, std::string_view message);

// HKDF-Extract and HKDF-Expand with SHA-256 (RFC 5869). `length` ≤ 255 * 32;
// larger requests abort (a programming error, never input-driven).
Digest256 hkdf_extract(std::span<const uint8_t> salt, std::span<const uint8_t> ikm);
std::string hkdf_expand(std::span<const uint8_t> prk, std::span<const uint8_t> info, size_t length);

inline std::span<const uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace agora::crypto
