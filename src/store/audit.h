// The audit trail's format and its verifier.
//
// Entry n is a JSON object, stored as the exact text that was hashed:
//   {"seq":n,"time_ms":T,"time":"…Z","kind":"job","key_id":"key_…","provider_id":"prov_…","data":{…}}
// (key_id / provider_id only when the event has them; `data` holds the
// event's metadata — never prompt or response content). Each entry's hash
// is SHA-256(prev_hash || "\n" || entry) in hex, with prev_hash the previous
// entry's hash (64 zeros for entry 1), so changing, deleting, inserting or
// reordering an entry breaks every later link. The gateway signs the last
// hash periodically (a checkpoint, Ed25519 under a key derived from the
// master secret), so rewriting the whole chain from some point on also
// fails: the signatures no longer match. What the chain cannot show is the
// removal of entries written after the newest checkpoint, together with
// nothing else (docs/SECURITY.md).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <memory>
#include <span>

#include "common/result.h"
#include "crypto/ed25519.h"
#include "crypto/master_secret.h"
#include "store/store.h"

namespace agora::store {

inline constexpr std::string_view kAuditGenesisHash =
    "0000000000000000000000000000000000000000000000000000000000000000";

std::string audit_entry_text(int64_t seq, const AuditEvent& e);
std::string audit_hash(std::string_view prev_hash, std::string_view entry);
// What a checkpoint's signature covers.
std::string audit_checkpoint_message(int64_t seq, std::string_view hash, int64_t time_ms);

// The "job" event for a generation record: ids, model, token counts,
// outcome and timings.
AuditEvent audit_event_for(const GenerationRecord& g);

// The gateway's checkpoint signing key, derived from the master secret
// ("agora/v1/audit-signing"): the gateway and the CLI sign with the same key.
Result<std::unique_ptr<crypto::Ed25519Signer>> audit_signer(const crypto::MasterSecret& master);

// Signs the end of the chain now (if anything is unsigned).
Result<std::optional<AuditCheckpoint>> checkpoint_audit(Store& store, const crypto::Ed25519Signer& signer,
                                                        int64_t now_ms);

struct AuditProblem {
  int64_t seq = 0;  // the entry (or checkpoint) where it shows; 0 when global
  std::string message;
};

struct AuditReport {
  int64_t entries = 0;          // entries read
  int64_t last_seq = 0;         // the chain's last entry
  int64_t checkpoints = 0;      // checkpoints whose signature and hash verified
  int64_t last_signed_seq = 0;  // the newest verified checkpoint's seq
  std::vector<AuditProblem> problems;
  bool ok() const { return problems.empty(); }
};

// Reads the whole chain and every checkpoint. Checkpoints must be signed by
// `public_key` (hex Ed25519). Errors: only failures to read the store; what
// is wrong with the chain is in the report.
// `anchors`: (seq, hash) pairs known from outside the database — the
// gateway logs every checkpoint (`audit_checkpoint seq=… hash=…`), an
// export holds them — which catch a rewrite whose checkpoints were deleted
// too.
struct AuditAnchor {
  int64_t seq = 0;
  std::string hash;
};
Result<AuditReport> verify_audit(Store& store, const std::string& public_key,
                                 std::span<const AuditAnchor> anchors = {});

}  // namespace agora::store
