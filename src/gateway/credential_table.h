// The credential table: the client keys, admin tokens and provider tokens
// that are active now, as the store last reported them, looked up by keyed
// hash (the table never holds a secret, and a hash lookup leaks no key
// bytes through timing). Pure: the store's control thread loads it through
// the gateway; tests/gateway/credential_table_test.cpp drives it directly.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "crypto/master_secret.h"
#include "gateway/rate_limiter.h"
#include "store/store.h"

namespace agora::gateway {

struct KeyEntry {
  std::string id;
  std::string name;
  std::string lineage;   // rate limits are per lineage (rotation keeps it)
  bool admin = false;    // an admin token (at_…): the admin API only
  std::optional<int64_t> expires_ms;
  KeyLimits limits;      // the key's own, else the gateway's defaults
  std::vector<std::string> models;  // allowed models; empty: all

  bool allows(std::string_view model) const {
    if (models.empty()) return true;
    for (const auto& m : models) {
      if (m == model) return true;
    }
    return false;
  }
};

struct ProviderEntry {
  std::string id;
  std::string name;
};

// The token of an `Authorization: Bearer …` header (case-insensitive
// scheme, surrounding spaces trimmed); empty when it is not one.
std::string_view bearer_token(std::string_view authorization);

class CredentialTable {
 public:
  explicit CredentialTable(std::shared_ptr<const crypto::MasterSecret> master) : master_(std::move(master)) {}

  // Replaces the table with the credentials active at `now_ms`; a key
  // without limits of its own gets `defaults`.
  void load(std::vector<store::ApiKeyRecord> keys, const std::vector<store::ProviderRecord>& providers,
            int64_t now_ms, const KeyLimits& defaults);

  // A client key (gk_…) or, with `admin`, an admin token (at_…) that is
  // active at `now_ms`; nullptr otherwise. The entry lives until the next load().
  const KeyEntry* authenticate(std::string_view authorization, bool admin, int64_t now_ms) const;
  // A provider token (pt_…) of a provider neither revoked nor terminated.
  const ProviderEntry* authenticate_provider(std::string_view authorization) const;
  bool provider_active(const std::string& provider_id) const { return active_providers_.contains(provider_id); }
  bool provider_suspended(const std::string& provider_id) const { return suspended_providers_.contains(provider_id); }

  size_t key_count() const { return keys_.size() + legacy_keys_.size(); }
  size_t legacy_key_count() const { return legacy_keys_.size(); }
  size_t provider_count() const { return providers_.size() + legacy_providers_.size(); }

 private:
  std::shared_ptr<const crypto::MasterSecret> master_;
  std::unordered_map<std::string, KeyEntry> keys_;           // by keyed hash (HMAC) of the key
  std::unordered_map<std::string, KeyEntry> legacy_keys_;    // by SHA-256 (keys from before schema 3)
  std::unordered_map<std::string, ProviderEntry> providers_; // by keyed hash of the token
  std::unordered_map<std::string, ProviderEntry> legacy_providers_;  // by SHA-256
  std::unordered_set<std::string> active_providers_;                  // by id: neither revoked nor terminated
  std::unordered_set<std::string> suspended_providers_;               // by id
};

}  // namespace agora::gateway
