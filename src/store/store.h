// Store: the gateway's durable state (API keys, providers, generation
// records, a snapshot of connected nodes). The real one is SQLite in WAL mode
// (sqlite_store.h); the CLI (`agora keys`, `agora providers`) and a running
// gateway open the same file concurrently.
//
// Threading: one Store object is used by one thread at a time (the gateway
// keeps its Store on a background writer thread, never on the event loop).
// Secrets never reach the Store: only their keyed hash (HMAC-SHA-256 under
// a key derived from the gateway's master secret, which lives outside the
// database: crypto/master_secret.h) and a short display prefix such as
// "gk_3fA9".
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"

namespace agora::store {

// How a credential's hash was made: "hmac-sha256" (keyed, since schema 3)
// or "sha256" (plain, records created before schema 3; still accepted).
inline constexpr const char* kHashHmac = "hmac-sha256";
inline constexpr const char* kHashLegacy = "sha256";

inline constexpr const char* kProviderActive = "active";
inline constexpr const char* kProviderSuspended = "suspended";
inline constexpr const char* kProviderTerminated = "terminated";

// A per-key limit: unset → the gateway's default; 0 → no limit.
using Limit = std::optional<int64_t>;

struct ApiKeyRecord {
  std::string id;      // "key_" + 16 base62 characters; safe to show and log
  std::string name;    // operator's label
  std::string prefix;  // first 7 characters of the key, e.g. "gk_3fA9"
  std::string hash;    // lower-case hex keyed hash of the whole key (see hash_scheme)
  std::string hash_scheme = kHashHmac;
  std::string role = "client";           // "client" (gk_…) or "admin" (at_…, the admin API)
  int64_t created_ms = 0;                // Unix epoch milliseconds
  std::optional<int64_t> revoked_ms;     // set once revoked; never cleared
  std::optional<int64_t> expires_ms;     // stops working at this time (rotation grace too)
  Limit rpm, tpm, max_concurrent;        // requests/min, tokens/min, requests in flight
  std::vector<std::string> models;       // models it may use; empty: all
  std::string lineage_id;  // the first key of its rotation chain (its own id if never rotated):
                           // rate limits and conversations belong to the lineage
  std::optional<std::string> replaced_by;  // id of the key it was rotated to

  // Active at `now_ms`: not revoked, not expired.
  bool active(int64_t now_ms) const { return !revoked_ms && (!expires_ms || now_ms < *expires_ms); }
};

struct ProviderRecord {
  std::string id;      // "prov_" + 16 base62 characters
  std::string name;    // unique among providers
  std::string prefix;  // first 7 characters of the token, e.g. "pt_Xy12"
  std::string hash;    // lower-case hex keyed hash of the whole token
  std::string hash_scheme = kHashHmac;
  int64_t created_ms = 0;
  std::optional<int64_t> revoked_ms;
  // "active"; "suspended" (nodes stay connected, get no new jobs;
  // reversible); "terminated" (token revoked, nodes disconnected, unpaid
  // earnings forfeited; final).
  std::string status = kProviderActive;
  std::optional<int64_t> status_ms;  // when the status last changed
};

// One version of the provider data-handling agreement.
struct AgreementRecord {
  int32_t version = 0;
  std::string sha256;  // of `text`
  std::string text;
  int64_t published_ms = 0;
};

// A node of a provider accepted a version of the agreement.
struct AcceptanceRecord {
  std::string provider_id;
  std::string node_id;
  int32_t version = 0;
  std::string sha256;
  int64_t accepted_ms = 0;
};

// What a provider has served (for the forfeiture recorded at termination,
// until the ledger exists).
struct ProviderTotals {
  int64_t jobs = 0;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

// ---- audit trail (store/audit.h has the format and the verifier)

// An event to append: metadata only, never prompt or response content.
struct AuditEvent {
  int64_t time_ms = 0;
  std::string kind;         // "job", "key.created", "provider.suspended", … (docs/SECURITY.md)
  std::string key_id;       // empty when none
  std::string provider_id;  // empty when none
  std::string data_json;    // a JSON object with the details ("{}" when none)
};

// An appended entry: `entry` is the exact text that was hashed,
// hash = SHA-256(prev_hash || "\n" || entry), hex.
struct AuditEntry {
  int64_t seq = 0;  // 1, 2, 3, … without gaps
  int64_t time_ms = 0;
  std::string kind, key_id, provider_id;  // copies of the entry's fields, for queries
  std::string entry;
  std::string prev_hash;
  std::string hash;
};

// The gateway's signature over the chain up to `seq`.
struct AuditCheckpoint {
  int64_t seq = 0;
  std::string hash;  // the hash of entry `seq`
  int64_t time_ms = 0;
  std::string public_key;  // Ed25519, hex
  std::string signature;   // hex, over audit_checkpoint_message()
};

struct AuditFilter {
  std::optional<std::string> key_id, provider_id, kind;
  std::optional<int64_t> since_ms, until_ms;  // time_ms in [since, until)
  int64_t after_seq = 0;
  size_t limit = 0;  // 0: all
};

// One stored conversation (opt-in memory): ciphertext only.
struct ConversationRecord {
  std::string owner;   // the API key lineage that owns it
  std::string id_mac;  // keyed hash of the client's conversation id
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
  std::optional<int64_t> expires_ms;
  std::string nonce;       // 12 bytes
  std::string ciphertext;  // AES-256-GCM, tag appended
};

// One finished (or failed) chat completion: metadata only, never content.
struct GenerationRecord {
  std::string id;           // "gen-" + random, as returned to the client
  std::string key_id;       // the API key that made it
  std::string provider_id;
  std::string node_id;
  std::string model;        // the model name the client asked for
  std::string model_sha256;
  std::string attestation;  // trust level used, "standard" for now
  std::string finish_reason;  // "stop" | "length" | "cancelled" | "error"
  bool stream = false;
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int32_t cached_prompt_tokens = 0;
  double queued_ms = 0;   // gateway: admitted -> sent to a node
  double prompt_ms = 0;   // node: prompt processing
  double decode_ms = 0;   // node: first token -> finish
  double total_ms = 0;    // gateway: admitted -> finished
  int64_t created_ms = 0;
};

// A connected node as the gateway last saw it (for `agora providers list`).
struct NodeRecord {
  std::string node_id;
  std::string provider_id;
  std::string region;
  std::string agent;        // node software, e.g. "agora/0.1.0"
  std::string models_json;  // JSON array: [{"name","sha256","quantization","slots","busy"}]
  int32_t slots = 0;
  int32_t slots_busy = 0;
  int64_t connected_ms = 0;
  int64_t updated_ms = 0;
  std::string identity_key;  // X25519 public key, hex; empty when the node sent none
  // JSON object: {"level","kind","status","error","verified_ms","expires_ms","summary"}
  // ("" from a gateway before schema 5).
  std::string attestation_json;
};

class Store {
 public:
  virtual ~Store() = default;

  // ---- API keys
  // Creates a key record from `spec` (everything but id; an empty
  // lineage_id becomes the new id). Errors: invalid_argument (empty name or
  // hash, a hash that exists), io_error.
  virtual Result<ApiKeyRecord> create_api_key(const ApiKeyRecord& spec) = 0;
  // Shorthand: a client key with default limits, hashed with HMAC.
  Result<ApiKeyRecord> create_api_key(const std::string& name, const std::string& prefix, const std::string& hash,
                                      int64_t now_ms) {
    ApiKeyRecord spec;
    spec.name = name;
    spec.prefix = prefix;
    spec.hash = hash;
    spec.created_ms = now_ms;
    return create_api_key(spec);
  }
  // All keys, oldest first, revoked ones included.
  virtual Result<std::vector<ApiKeyRecord>> list_api_keys() = 0;
  // By id ("key_…") or hash. Errors: not_found.
  virtual Result<ApiKeyRecord> find_api_key(const std::string& id_or_hash) = 0;
  // Revokes by id ("key_…") or by hash. Errors: not_found. Revoking an
  // already revoked key succeeds and keeps the first revocation time.
  virtual Result<ApiKeyRecord> revoke_api_key(const std::string& id_or_hash, int64_t now_ms) = 0;
  // In one transaction: creates `successor` (in the old key's lineage) and
  // makes the key `old_id` expire at `grace_until_ms` (or earlier, if it
  // already expires earlier), marking it replaced. Returns {old, new}.
  // Errors: not_found; invalid_argument when the old key is revoked,
  // expired or already rotated.
  virtual Result<std::pair<ApiKeyRecord, ApiKeyRecord>> rotate_api_key(const std::string& old_id,
                                                                       const ApiKeyRecord& successor,
                                                                       int64_t grace_until_ms) = 0;

  // ---- providers
  // Errors: invalid_argument (empty name, or a provider with that name exists).
  // The hash is an HMAC (kHashHmac).
  virtual Result<ProviderRecord> create_provider(const std::string& name, const std::string& prefix,
                                                 const std::string& hash, int64_t now_ms) = 0;
  virtual Result<std::vector<ProviderRecord>> list_providers() = 0;
  // By id ("prov_…"), name or hash. Errors: not_found.
  virtual Result<ProviderRecord> revoke_provider(const std::string& id_name_or_hash, int64_t now_ms) = 0;
  virtual Result<ProviderRecord> find_provider(const std::string& id_name_or_hash) = 0;
  // Sets the status (kProvider*); terminated also revokes the token.
  // Errors: not_found; invalid_argument when the provider is terminated
  // (final) or revoked and the change is not to terminated.
  // `audit` is appended in the same transaction (the change and its record
  // exist together or not at all).
  virtual Result<ProviderRecord> set_provider_status(const std::string& id_name_or_hash, const std::string& status,
                                                     int64_t now_ms, std::span<const AuditEvent> audit) = 0;
  virtual Result<ProviderTotals> provider_totals(const std::string& provider_id) = 0;

  // ---- the provider agreement
  // Errors: invalid_argument when `a.version` is not above the current one
  // or the text is already published. `audit` is appended in the same
  // transaction.
  virtual Status publish_agreement(const AgreementRecord& a, std::span<const AuditEvent> audit) = 0;
  // The highest version; nullopt before any was published.
  virtual Result<std::optional<AgreementRecord>> current_agreement() = 0;
  // Errors: not_found.
  virtual Result<AgreementRecord> get_agreement(int32_t version) = 0;
  // true when this (provider, node, version) had not accepted before; then
  // `audit` is appended in the same transaction.
  virtual Result<bool> record_acceptance(const AcceptanceRecord& a, std::span<const AuditEvent> audit) = 0;
  virtual Result<std::vector<AcceptanceRecord>> list_acceptances() = 0;

  // ---- audit trail
  // Appends in one transaction, chained after the last entry (any process).
  virtual Status append_audit(std::span<const AuditEvent> events) = 0;
  // Entries matching `filter` in seq order, handed to `each` (false stops).
  virtual Status scan_audit(const AuditFilter& filter, const std::function<bool(const AuditEntry&)>& each) = 0;
  // Signs the chain's last entry with `sign` (message -> hex signature) as
  // `public_key`; nullopt when the log is empty or already signed to its end.
  virtual Result<std::optional<AuditCheckpoint>> checkpoint_audit(
      const std::function<std::string(std::string_view)>& sign, const std::string& public_key, int64_t now_ms) = 0;
  virtual Result<std::vector<AuditCheckpoint>> list_audit_checkpoints() = 0;

  // ---- generations (written by the gateway in batches, one transaction
  // each, with their audit entries in the same transaction)
  virtual Status insert_generations(std::span<const GenerationRecord> records,
                                    std::span<const AuditEvent> audit = {}) = 0;
  // Errors: not_found.
  virtual Result<GenerationRecord> get_generation(const std::string& id) = 0;

  // ---- connected nodes (the gateway is the only writer)
  // Replaces the whole snapshot in one transaction.
  virtual Status replace_nodes(std::span<const NodeRecord> nodes) = 0;
  virtual Result<std::vector<NodeRecord>> list_nodes() = 0;

  // ---- conversations (opt-in memory; ciphertext only)
  virtual Result<std::optional<ConversationRecord>> get_conversation(const std::string& owner,
                                                                     const std::string& id_mac) = 0;
  // Creates or replaces (keeping created_ms).
  virtual Status put_conversation(const ConversationRecord& c) = 0;
  // true when it existed. Call purge_deleted() afterwards.
  virtual Result<bool> delete_conversation(const std::string& owner, const std::string& id_mac) = 0;
  virtual Result<int64_t> delete_expired_conversations(int64_t now_ms) = 0;
  // Leaves no copy of deleted rows in the database file or its WAL
  // (secure_delete zeroes them; this checkpoints and empties the WAL).
  // Errors: unavailable when another connection's read kept the WAL.
  virtual Status purge_deleted() = 0;

  // A number that changes whenever keys, providers or the agreement change, through any
  // connection to the same database (generation records and the node
  // snapshot leave it alone): the gateway polls it to notice keys and
  // providers created or revoked by the CLI without a restart.
  virtual Result<uint64_t> credentials_version() = 0;
};

}  // namespace agora::store
