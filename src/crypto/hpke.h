// HPKE (RFC 9180), base mode, with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256
// and an AEAD of AES-128-GCM, AES-256-GCM or ChaCha20-Poly1305, plus the
// secret export interface — built on OpenSSL 3.0's X25519, HKDF and AEADs
// (OpenSSL 3.0 has no HPKE). Checked against RFC 9180's Appendix A vectors
// (tests/crypto/hpke_test.cpp).
//
// Secrets (private keys, the shared secret, key schedule outputs) are wiped
// when they go out of scope; an all-zero X25519 result is refused; a
// context refuses to seal or open once its sequence number would overflow.
//
// Threading: functions are thread-safe; a Context is used by one thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"
#include "crypto/aead.h"

namespace agora::crypto::hpke {

inline constexpr uint16_t kKemX25519Sha256 = 0x0020;
inline constexpr uint16_t kKdfHkdfSha256 = 0x0001;
inline constexpr size_t kPublicKeyBytes = 32;  // Npk = Nenc
inline constexpr size_t kPrivateKeyBytes = 32;

// ComputeNonce (RFC 9180 §5.2): `base_nonce` XOR the sequence number,
// big-endian in its last bytes (sealed response chunks use it too).
std::string compute_nonce(std::string_view base_nonce, uint64_t seq);

// RFC 9180 AEAD ids.
uint16_t aead_id(AeadAlgorithm a);

struct KeyPair {
  std::string private_key;  // 32 raw bytes
  std::string public_key;   // 32 raw bytes
  KeyPair() = default;
  KeyPair(const KeyPair&) = default;
  KeyPair& operator=(const KeyPair&) = default;
  KeyPair(KeyPair&&) = default;
  KeyPair& operator=(KeyPair&&) = default;
  ~KeyPair();
};

Result<KeyPair> generate_key_pair();
// DeriveKeyPair (RFC 9180 §7.1.3). Errors: invalid_argument (ikm < 32 bytes).
Result<KeyPair> derive_key_pair(std::string_view ikm);
// The public key of a raw X25519 private key. Errors: invalid_argument.
Result<std::string> public_key_of(std::string_view private_key);

class Context {
 public:
  Context(Context&&) noexcept = default;
  Context& operator=(Context&&) noexcept = default;
  ~Context();

  // Sender side: encrypts with the next nonce. Errors: unavailable once
  // the sequence number is exhausted.
  Result<std::string> seal(std::string_view aad, std::string_view plaintext);
  // Recipient side: decrypts the next message. Errors: corrupt (altered,
  // out of order, wrong key), unavailable (sequence exhausted). A failed
  // open does not advance the sequence number.
  Result<std::string> open(std::string_view aad, std::string_view ciphertext);
  // Secret export (RFC 9180 §5.3). `length` ≤ 8160.
  std::string export_secret(std::string_view exporter_context, size_t length) const;
  uint64_t sequence() const { return seq_; }
  // Tests only: jump to a sequence number (to test exhaustion).
  void skip_to_sequence_for_testing(uint64_t seq) { seq_ = seq; }

  // Key schedule outputs, for the test vectors.
  const std::string& key() const { return key_; }
  const std::string& base_nonce() const { return base_nonce_; }
  const std::string& exporter_secret() const { return exporter_secret_; }

 private:
  friend struct Setup;
  Context() = default;
  Result<std::string> next_nonce() const;

  AeadAlgorithm aead_ = AeadAlgorithm::aes256gcm;
  std::string key_, base_nonce_, exporter_secret_;
  uint64_t seq_ = 0;
};

struct Sender {
  std::string enc;  // the encapsulated key to send along (32 bytes)
  Context context;
};

// SetupBaseS: a fresh ephemeral key. Errors: invalid_argument (public key
// size, a low-order point giving an all-zero DH result).
Result<Sender> setup_base_sender(AeadAlgorithm aead, std::string_view recipient_public_key, std::string_view info);
// The same with a given ephemeral key pair (the test vectors' skEm).
Result<Sender> setup_base_sender(AeadAlgorithm aead, std::string_view recipient_public_key, std::string_view info,
                                 const KeyPair& ephemeral);
// SetupBaseR. Errors: invalid_argument (sizes, all-zero DH result).
Result<Context> setup_base_recipient(AeadAlgorithm aead, std::string_view enc, std::string_view recipient_private_key,
                                     std::string_view info);

}  // namespace agora::crypto::hpke
