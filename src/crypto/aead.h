// Authenticated encryption on OpenSSL's EVP interface: AES-128-GCM,
// AES-256-GCM (NIST SP 800-38D) and ChaCha20-Poly1305 (RFC 8439), all with
// 12-byte nonces and 16-byte tags appended to the ciphertext. Used for
// conversations at rest and by HPKE (hpke.h).
//
// Threading: free functions, thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"

namespace agora::crypto {

enum class AeadAlgorithm { aes128gcm, aes256gcm, chacha20poly1305 };

inline constexpr size_t kAeadNonceBytes = 12;
inline constexpr size_t kAeadTagBytes = 16;

// 16 for AES-128-GCM, 32 for the others.
size_t aead_key_bytes(AeadAlgorithm a);

// ciphertext || tag. Errors: invalid_argument (key or nonce size).
Result<std::string> aead_seal(AeadAlgorithm a, std::string_view key, std::string_view nonce, std::string_view aad,
                              std::string_view plaintext);
// The plaintext, or corrupt when the tag does not verify (any change to the
// key, nonce, AAD, ciphertext or tag).
Result<std::string> aead_open(AeadAlgorithm a, std::string_view key, std::string_view nonce, std::string_view aad,
                              std::string_view sealed);

inline Result<std::string> aes256gcm_seal(std::string_view key, std::string_view nonce, std::string_view aad,
                                          std::string_view plaintext) {
  return aead_seal(AeadAlgorithm::aes256gcm, key, nonce, aad, plaintext);
}
inline Result<std::string> aes256gcm_open(std::string_view key, std::string_view nonce, std::string_view aad,
                                          std::string_view sealed) {
  return aead_open(AeadAlgorithm::aes256gcm, key, nonce, aad, sealed);
}

// Overwrites a secret's bytes (not optimised away), then empties it.
void secure_wipe(std::string& s);

}  // namespace agora::crypto
