// The gateway's master secret: 32 random bytes in a file of their own
// (default DATA_DIR/master.key, mode 0600), never in the database. Every
// other secret the gateway needs is derived from it with HKDF-SHA-256 under
// a distinct label, so one file backs up and rotates them all:
//
//   "agora/v1/api-key-hash"        HMAC key for API keys (gk_, at_)
//   "agora/v1/provider-token-hash" HMAC key for provider tokens (pt_)
//   "agora/v1/conversations"       root of the per-key conversation keys
//   "agora/v1/audit-signing"       Ed25519 seed of the audit checkpoints
//
// A copy of the database alone (a backup, a stolen disk image of the data
// volume when the key lives elsewhere) then reveals no key hash that can be
// brute-forced offline and no conversation plaintext.
//
// Threading: immutable after load; every method is thread-safe.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"
#include "crypto/hmac.h"

namespace agora::crypto {

class MasterSecret {
 public:
  // Reads `path`, or creates it (32 fresh random bytes, hex, mode 0600)
  // when missing and `create` is set. Two processes creating it at once
  // agree on one secret (the file appears atomically, first one wins).
  // Errors: not_found (missing and !create), corrupt (not 64 hex digits),
  // invalid_argument (readable by group or others: "chmod 600 FILE"),
  // io_error.
  static Result<std::shared_ptr<const MasterSecret>> load(const std::filesystem::path& path, bool create);
  // For tests: a secret from given bytes (32).
  static std::shared_ptr<const MasterSecret> from_bytes(std::string_view bytes);
  ~MasterSecret();

  // Lower-case hex HMAC-SHA-256 of an API key or admin token.
  std::string hash_api_key(std::string_view key) const { return api_key_hasher_.mac_hex(key); }
  // Lower-case hex HMAC-SHA-256 of a provider token.
  std::string hash_provider_token(std::string_view token) const { return token_hasher_.mac_hex(token); }
  // `length` bytes for `label` (one of the labels above) and `context`
  // (for example a key id): HKDF-Expand(PRK, label || 0x00 || context).
  std::string derive(std::string_view label, std::string_view context, size_t length) const;

 private:
  explicit MasterSecret(std::string_view bytes);

  Digest256 prk_{};
  HmacSha256 api_key_hasher_;
  HmacSha256 token_hasher_;
};

// DATA_DIR/master.key
std::filesystem::path default_master_secret_path(const std::filesystem::path& data_dir);

}  // namespace agora::crypto
