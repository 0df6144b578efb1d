#include "gateway/credential_table.h"

#include <algorithm>
#include <cctype>

#include "crypto/sha256.h"

namespace agora::gateway {

std::string_view bearer_token(std::string_view authorization) {
  constexpr std::string_view kPrefix = "Bearer ";
  if (authorization.size() <= kPrefix.size()) return {};
  if (!std::equal(kPrefix.begin(), kPrefix.end(), authorization.begin(),
                  [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) ==
                                              std::tolower(static_cast<unsigned char>(b)); })) {
    return {};
  }
  auto token = authorization.substr(kPrefix.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
  return token;
}

void CredentialTable::load(std::vector<store::ApiKeyRecord> keys, const std::vector<store::ProviderRecord>& providers,
                           int64_t now_ms, const KeyLimits& defaults) {
  auto resolve = [](const store::Limit& own, int64_t fallback) { return own ? *own : fallback; };
  std::unordered_map<std::string, KeyEntry> k, legacy_k;
  for (auto& r : keys) {
    if (!r.active(now_ms)) continue;
    KeyEntry e;
    e.id = r.id;
    e.name = r.name;
    e.lineage = r.lineage_id.empty() ? r.id : r.lineage_id;
    e.admin = r.role == "admin";
    e.expires_ms = r.expires_ms;
    e.limits = KeyLimits{resolve(r.rpm, defaults.rpm), resolve(r.tpm, defaults.tpm),
                         resolve(r.max_concurrent, defaults.max_concurrent)};
    e.models = std::move(r.models);
    (r.hash_scheme == store::kHashLegacy ? legacy_k : k).emplace(r.hash, std::move(e));
  }
  std::unordered_map<std::string, ProviderEntry> p, legacy_p;
  std::unordered_set<std::string> active, suspended;
  for (const auto& r : providers) {
    if (r.revoked_ms || r.status == store::kProviderTerminated) continue;
    active.insert(r.id);
    if (r.status == store::kProviderSuspended) suspended.insert(r.id);
    (r.hash_scheme == store::kHashLegacy ? legacy_p : p).emplace(r.hash, ProviderEntry{r.id, r.name});
  }
  keys_ = std::move(k);
  legacy_keys_ = std::move(legacy_k);
  providers_ = std::move(p);
  legacy_providers_ = std::move(legacy_p);
  suspended_providers_ = std::move(suspended);
  active_providers_ = std::move(active);
}

const KeyEntry* CredentialTable::authenticate(std::string_view authorization, bool admin, int64_t now_ms) const {
  auto key = bearer_token(authorization);
  if (key.size() < 8 || key.size() > 256 || !key.starts_with(admin ? "at_" : "gk_")) return nullptr;
  const KeyEntry* entry = nullptr;
  if (auto it = keys_.find(master_->hash_api_key(key)); it != keys_.end()) {
    entry = &it->second;
  } else if (!legacy_keys_.empty()) {
    if (auto lit = legacy_keys_.find(crypto::sha256_hex(key)); lit != legacy_keys_.end()) entry = &lit->second;
  }
  if (!entry || entry->admin != admin) return nullptr;
  if (entry->expires_ms && now_ms >= *entry->expires_ms) return nullptr;
  return entry;
}

const ProviderEntry* CredentialTable::authenticate_provider(std::string_view authorization) const {
  auto token = bearer_token(authorization);
  if (token.size() < 8 || token.size() > 256 || !token.starts_with("pt_")) return nullptr;
  if (auto it = providers_.find(master_->hash_provider_token(token)); it != providers_.end()) return &it->second;
  if (legacy_providers_.empty()) return nullptr;
  auto it = legacy_providers_.find(crypto::sha256_hex(token));
  return it == legacy_providers_.end() ? nullptr : &it->second;
}

}  // namespace agora::gateway
