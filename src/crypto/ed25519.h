// Ed25519 signatures (RFC 8032) on OpenSSL 3's EVP interface: the gateway
// signs its audit checkpoints with a key whose 32-byte seed is derived from
// the master secret ("agora/v1/audit-signing"), so there is no extra key
// file to lose; anyone with the public key can verify.
//
// Threading: a signer is immutable after construction; sign() and verify
// are thread-safe.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "crypto/encoding.h"  // to_hex, from_hex

namespace agora::crypto {

class Ed25519Signer {
 public:
  // `seed`: the 32-byte private key. Errors: invalid_argument.
  static Result<std::unique_ptr<Ed25519Signer>> from_seed(std::string_view seed);
  ~Ed25519Signer();
  Ed25519Signer(const Ed25519Signer&) = delete;
  Ed25519Signer& operator=(const Ed25519Signer&) = delete;

  // The 32-byte public key, lower-case hex.
  const std::string& public_key_hex() const { return public_hex_; }
  // The 64-byte signature of `message`, lower-case hex.
  std::string sign_hex(std::string_view message) const;

 private:
  struct Key;
  explicit Ed25519Signer(std::unique_ptr<Key> key, std::string public_hex);
  std::unique_ptr<Key> key_;
  std::string public_hex_;
};

// True when `signature_hex` (64 bytes, hex) is a valid signature of
// `message` under `public_key_hex` (32 bytes, hex). Malformed input: false.
bool ed25519_verify(std::string_view public_key_hex, std::string_view message, std::string_view signature_hex);

}  // namespace agora::crypto
