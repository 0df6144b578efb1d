// The credential lifecycle shared by the CLI (`agora keys`, `agora
// providers`) and the gateway's admin API: issuing, finding, rotating and
// revoking API keys, admin tokens and provider tokens. Secrets are made
// here, returned once, and only their keyed hash (MasterSecret) reaches the
// Store.
//
//   gk_… client API key (the OpenAI-compatible API)
//   at_… admin token (the admin API); same table, role "admin"
//   pt_… provider token (nodes)
//
// Each secret is the prefix and 43 base62 characters: 256 bits from the
// OS's CSPRNG (crypto/random.h), like 32 random bytes in base62.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "crypto/master_secret.h"
#include "store/store.h"

namespace agora::store {

inline constexpr std::string_view kClientKeyPrefix = "gk_";
inline constexpr std::string_view kAdminTokenPrefix = "at_";
inline constexpr std::string_view kProviderTokenPrefix = "pt_";

struct KeySpec {
  std::string name;
  std::string role = "client";  // or "admin"
  Limit rpm, tpm, max_concurrent;
  std::optional<int64_t> expires_ms;  // absolute
  std::vector<std::string> models;    // empty: every model
};

struct IssuedKey {
  std::string secret;  // shown once
  ApiKeyRecord record;
};

// Checks a spec: name 1-100 bytes without control characters, role, limits
// ≥ 0, model names 1-256 bytes without control characters or commas (at
// most 64), expiry in the future. Errors: invalid_argument naming the field.
Status validate_key_spec(const KeySpec& spec, int64_t now_ms);

// Creates a key from a validated spec and returns it with its secret.
// Every change below appends an audit entry naming `actor` ("cli", or
// "admin:key_…" for the admin API).
Result<IssuedKey> issue_api_key(Store& store, const crypto::MasterSecret& secret, const KeySpec& spec,
                                int64_t now_ms, std::string_view actor = "cli");

// A key by id ("key_…") or by its full secret (gk_…/at_…, hashed first;
// keys from before schema 3 are found by their plain SHA-256).
// Errors: not_found (the message never repeats a secret), invalid_argument
// (neither an id nor a well-formed secret).
Result<ApiKeyRecord> find_api_key(Store& store, const crypto::MasterSecret& secret, const std::string& id_or_secret);

// A new key with the old one's name, role, limits, models and lineage; the
// old one keeps working for `grace_ms` (0: stops now), then expires.
// Returns {the old key as updated, the new key with its secret}.
Result<std::pair<ApiKeyRecord, IssuedKey>> rotate_api_key(Store& store, const crypto::MasterSecret& secret,
                                                           const std::string& id_or_secret, int64_t grace_ms,
                                                           int64_t now_ms, std::string_view actor = "cli");

Result<ApiKeyRecord> revoke_api_key(Store& store, const crypto::MasterSecret& secret, const std::string& id_or_secret,
                                    int64_t now_ms, std::string_view actor = "cli");

// Provider tokens.
struct IssuedToken {
  std::string secret;
  ProviderRecord record;
};
Result<IssuedToken> issue_provider_token(Store& store, const crypto::MasterSecret& secret, const std::string& name,
                                         int64_t now_ms, std::string_view actor = "cli");
// By id (prov_…), name, or full token (pt_…). Errors: not_found.
Result<ProviderRecord> find_provider(Store& store, const crypto::MasterSecret& secret,
                                     const std::string& id_name_or_token);
Result<ProviderRecord> revoke_provider(Store& store, const crypto::MasterSecret& secret,
                                       const std::string& id_name_or_token, int64_t now_ms,
                                       std::string_view actor = "cli");
// Suspends (kProviderSuspended), resumes (kProviderActive) or terminates
// (kProviderTerminated: token revoked; what it served is recorded as
// forfeited earnings in the audit entry). Setting the current status again
// changes nothing. Errors: not_found, invalid_argument (terminated is final;
// a revoked provider can only be terminated).
Result<ProviderRecord> set_provider_status(Store& store, const crypto::MasterSecret& secret,
                                           const std::string& id_name_or_token, const std::string& status,
                                           int64_t now_ms, std::string_view actor = "cli");

// Publishes a version of the provider agreement with its audit entry, in
// one transaction (the CLI, and a gateway publishing its built-in one).
// Errors: those of Store::publish_agreement.
Status publish_agreement(Store& store, const AgreementRecord& a, std::string_view actor);

// A key as JSON (the CLI's --json and the admin API): id, name, prefix,
// role, created/created_ms, status ("active" | "expired" | "revoked"),
// revoked/revoked_ms, expires/expires_ms, limits {rpm, tpm, max_concurrent}
// (a number, null for no limit, "default"), models, lineage_id,
// replaced_by, hash_scheme. Never the hash.
std::string key_json(const ApiKeyRecord& k, int64_t now_ms);
// "2025-01-31T12:00:00Z"
std::string iso_utc(int64_t ms);

// The stored hash of `secret` under `scheme` (kHashHmac or kHashLegacy),
// with the right purpose for its prefix.
std::string credential_hash(const crypto::MasterSecret& master, std::string_view secret, std::string_view scheme);

// A full secret of the given prefix (prefix + 43 base62)?
bool looks_like_secret(std::string_view s, std::string_view prefix);

// "30d", "12h", "90m", "45s", "500ms" (a positive integer and a unit) →
// milliseconds. Errors: invalid_argument.
Result<int64_t> parse_duration_ms(std::string_view text);

}  // namespace agora::store
