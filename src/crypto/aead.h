// AES-256-GCM (NIST SP 800-38D) on OpenSSL's EVP interface: 12-byte nonces,
// 16-byte tags appended to the ciphertext. Used for conversations at rest
// (and the end-to-end layer's sealed messages).
//
// Threading: free functions, thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"

namespace agora::crypto {

inline constexpr size_t kAesGcmKeyBytes = 32;
inline constexpr size_t kAesGcmNonceBytes = 12;
inline constexpr size_t kAesGcmTagBytes = 16;

// ciphertext || tag. Errors: invalid_argument (key or nonce size).
Result<std::string> aes256gcm_seal(std::string_view key, std::string_view nonce, std::string_view aad,
                                   std::string_view plaintext);
// The plaintext, or an error when the tag does not verify (any change to
// the key, nonce, AAD, ciphertext or tag): corrupt.
Result<std::string> aes256gcm_open(std::string_view key, std::string_view nonce, std::string_view aad,
                                   std::string_view sealed);

// Overwrites a secret's bytes (not optimised away), then empties it.
void secure_wipe(std::string& s);

}  // namespace agora::crypto
