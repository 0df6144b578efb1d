// Attestation verifiers: evidence a node produced for a gateway nonce →
// a verdict (what level it grants, until when) or a reason for refusal.
// Real evidence comes from Google (Play Integrity) and NVIDIA (NRAS); the
// verifiers work offline against pinned keys and roots the operator
// configures, and never trust the token to choose an algorithm.
//
// Nonces: the gateway issues a fresh random nonce per challenge; the
// evidence must carry SHA-256(gateway nonce ‖ node identity public key)
// (evidence_nonce), which binds it to the node's X25519 key. NonceRegistry
// makes each gateway nonce single-use.
//
// Threading: verifiers are immutable after construction and thread-safe;
// a NonceRegistry is used by one thread (the gateway's loop).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "attest/jose.h"
#include "common/result.h"

namespace agora::attest {

struct Verdict {
  std::string level;    // "verified" (device integrity) or "confidential" (GPU TEE)
  std::string kind;     // "play_integrity" | "nvidia_cc"
  int64_t verified_ms = 0;
  int64_t expires_ms = 0;
  std::string summary;  // what was checked, for operators (no secrets)
};

class AttestationVerifier {
 public:
  virtual ~AttestationVerifier() = default;
  virtual std::string_view kind() const = 0;
  // Errors: invalid_argument with the reason (format, signature, nonce,
  // time, policy).
  virtual Result<Verdict> verify(std::string_view evidence, std::string_view expected_nonce, int64_t now_ms) const = 0;
};

// The evidence nonce for a gateway nonce and a node's raw X25519 public
// key: lower-case hex SHA-256(nonce ‖ key).
std::string evidence_nonce(std::string_view gateway_nonce, std::string_view node_public_key);

// Gateway nonces: issued per node, consumed once.
class NonceRegistry {
 public:
  explicit NonceRegistry(int64_t lifetime_ms = 5 * 60 * 1000) : lifetime_ms_(lifetime_ms) {}
  // A fresh 32-byte random nonce (hex) for `node_id`, replacing its last.
  std::string issue(const std::string& node_id, int64_t now_ms);
  // true once for the nonce issued to `node_id`, if not expired.
  bool consume(const std::string& node_id, std::string_view nonce, int64_t now_ms);
  // Drops what was issued to `node_id` (its session ended).
  void forget(const std::string& node_id) { issued_.erase(node_id); }

 private:
  struct Issued {
    std::string nonce;
    int64_t expires_ms = 0;
  };
  int64_t lifetime_ms_;
  std::unordered_map<std::string, Issued> issued_;
};

// ---- Google Play Integrity, locally decrypted mode

struct PlayIntegrityPolicy {
  std::string decryption_key;  // 32 bytes (A256KW)
  Pkey verification_key;       // EC P-256 public key (ES256)
  std::string package_name;
  std::string certificate_sha256;  // as Google reports it (base64url SHA-256 of the signing cert)
  bool require_strong = false;     // MEETS_STRONG_INTEGRITY instead of MEETS_DEVICE_INTEGRITY
  int64_t max_age_ms = 5 * 60 * 1000;
  int64_t max_future_ms = 60 * 1000;
  int64_t verdict_lifetime_ms = 24LL * 3600 * 1000;
};

std::unique_ptr<AttestationVerifier> make_play_integrity_verifier(PlayIntegrityPolicy policy);

// The checks on a verdict's payload (the JSON claims inside the JWS, once
// decrypted and its signature verified): nonce, time, package, app and
// device verdicts. Exposed for tests and the fuzz target; verify() calls it.
Result<Verdict> check_play_integrity_payload(std::string_view payload, const PlayIntegrityPolicy& policy,
                                             std::string_view expected_nonce, int64_t now_ms);

}  // namespace agora::attest

namespace agora::attest {

// ---- NVIDIA GPU confidential computing: an NRAS attestation result
//
// The evidence is the detached EAT bundle NRAS returns,
//   [["JWT", "<overall token>"], {"GPU-0": "<device token>", …}],
// every token an ES384 JWS whose x5c chain must validate to the pinned
// root. The overall token vouches for each device token by its SHA-256
// in "submods". A verdict lasts verdict_lifetime_ms, or until the first of
// its tokens expires if that is sooner.
struct NvidiaPolicy {
  std::string root_pem;                 // the pinned NRAS signing root (PEM)
  std::vector<std::string> hw_models;   // allowed "hwmodel" values
  std::string min_driver_version;       // e.g. "550.54.15"
  int64_t verdict_lifetime_ms = 24LL * 3600 * 1000;
  int64_t leeway_s = 60;                // clock skew allowed on nbf / exp
};

// Errors: invalid_argument (a bad root PEM).
Result<std::unique_ptr<AttestationVerifier>> make_nvidia_verifier(NvidiaPolicy policy);

// The checks on one token's claims (its JWS payload, once the signature
// verified): a JSON object whose eat_nonce is `nonce`, with an integer exp
// not past and an nbf (if any) not ahead of `now_ms`, `leeway_s` either
// way. `what` names the token in errors. Exposed for tests and fuzzing.
Result<boost::json::object> check_eat_claims(std::string_view payload, std::string_view nonce, int64_t now_ms,
                                             int64_t leeway_s, const std::string& what);
// One GPU's claims against the policy: measres, secboot, dbgstat, hwmodel,
// driver floor.
Status check_gpu_claims(const std::string& name, const boost::json::object& claims, const NvidiaPolicy& policy);

// Dotted version comparison ("550.54.15" < "550.100.1"): -1, 0, 1; a
// non-numeric part compares as smaller.
int compare_versions(std::string_view a, std::string_view b);

}  // namespace agora::attest
