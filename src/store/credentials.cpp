#include "store/credentials.h"

#include <charconv>
#include <ctime>
#include <cctype>

#include <boost/json.hpp>

#include "common/json_text.h"
#include "common/log.h"
#include "crypto/random.h"
#include "crypto/sha256.h"

namespace agora::store {
namespace json = boost::json;
namespace {

constexpr size_t kMaxNameBytes = 100;
constexpr size_t kMaxModelBytes = 256;
constexpr size_t kMaxModels = 64;
constexpr int64_t kMaxLimit = 1'000'000'000'000;

bool has_control(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

Status check_name(const std::string& name) {
  if (name.empty()) return make_error(Errc::invalid_argument, "name: must not be empty");
  if (name.size() > kMaxNameBytes) {
    return make_error(Errc::invalid_argument, "name: longer than " + std::to_string(kMaxNameBytes) + " bytes");
  }
  if (has_control(name)) return make_error(Errc::invalid_argument, "name: must not contain control characters");
  return ok_status();
}

Status check_limit(const char* what, const Limit& l) {
  if (l && (*l < 0 || *l > kMaxLimit)) {
    return make_error(Errc::invalid_argument,
                      std::string(what) + ": must be between 0 (no limit) and " + std::to_string(kMaxLimit));
  }
  return ok_status();
}

std::string_view prefix_for_role(std::string_view role) {
  return role == "admin" ? kAdminTokenPrefix : kClientKeyPrefix;
}

// How a lookup target is named in an error: never a whole secret.
std::string shown(const std::string& id_or_secret) {
  const std::string prefix = crypto::secret_display_prefix(id_or_secret) + "…";
  if (looks_like_secret(id_or_secret, kClientKeyPrefix)) return "the API key " + prefix;
  if (looks_like_secret(id_or_secret, kAdminTokenPrefix)) return "the admin token " + prefix;
  if (looks_like_secret(id_or_secret, kProviderTokenPrefix)) return "the token " + prefix;
  return "'" + id_or_secret + "'";
}

// Appends one audit entry for an operator's change. The change itself is
// already committed; a failed append is logged (the caller's secret, shown
// once, must still reach the operator).
void audit(Store& store, int64_t now_ms, std::string kind, std::string key_id, std::string provider_id,
           json::object data, std::string_view actor) {
  data["by"] = actor;
  AuditEvent e{now_ms, std::move(kind), std::move(key_id), std::move(provider_id), json::serialize(data)};
  if (Status st = store.append_audit(std::span<const AuditEvent>(&e, 1)); !st) {
    spdlog::error("audit_append_failed kind={} error={}", e.kind, logfmt_value(st.error().to_string()));
  }
}

}  // namespace

bool looks_like_secret(std::string_view s, std::string_view prefix) {
  if (s.size() != prefix.size() + crypto::kSecretRandomChars || !s.starts_with(prefix)) return false;
  for (size_t i = prefix.size(); i < s.size(); ++i) {
    if (!std::isalnum(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}

std::string credential_hash(const crypto::MasterSecret& master, std::string_view secret, std::string_view scheme) {
  if (scheme == kHashLegacy) return crypto::sha256_hex(secret);
  return secret.starts_with(kProviderTokenPrefix) ? master.hash_provider_token(secret) : master.hash_api_key(secret);
}

Status validate_key_spec(const KeySpec& spec, int64_t now_ms) {
  if (Status st = check_name(spec.name); !st) return st;
  if (spec.role != "client" && spec.role != "admin") {
    return make_error(Errc::invalid_argument, "role: must be \"client\" or \"admin\"");
  }
  if (Status st = check_limit("rpm", spec.rpm); !st) return st;
  if (Status st = check_limit("tpm", spec.tpm); !st) return st;
  if (Status st = check_limit("max_concurrent", spec.max_concurrent); !st) return st;
  if (spec.expires_ms && *spec.expires_ms <= now_ms) {
    return make_error(Errc::invalid_argument, "expires: must be in the future");
  }
  if (spec.models.size() > kMaxModels) {
    return make_error(Errc::invalid_argument, "models: at most " + std::to_string(kMaxModels) + " models");
  }
  for (const auto& m : spec.models) {
    if (m.empty() || m.size() > kMaxModelBytes || has_control(m) || m.find(',') != std::string::npos) {
      return make_error(Errc::invalid_argument,
                        "models: each name must be 1-256 bytes without commas or control characters");
    }
  }
  return ok_status();
}

Result<IssuedKey> issue_api_key(Store& store, const crypto::MasterSecret& master, const KeySpec& spec,
                                int64_t now_ms, std::string_view actor) {
  if (Status st = validate_key_spec(spec, now_ms); !st) return st.error();
  IssuedKey out;
  out.secret = crypto::new_secret(prefix_for_role(spec.role));
  ApiKeyRecord r;
  r.name = spec.name;
  r.role = spec.role;
  r.prefix = crypto::secret_display_prefix(out.secret);
  r.hash = master.hash_api_key(out.secret);
  r.hash_scheme = kHashHmac;
  r.created_ms = now_ms;
  r.expires_ms = spec.expires_ms;
  r.rpm = spec.rpm;
  r.tpm = spec.tpm;
  r.max_concurrent = spec.max_concurrent;
  r.models = spec.models;
  auto created = store.create_api_key(r);
  if (!created) return created.error();
  out.record = std::move(*created);
  json::object d{{"name", out.record.name}, {"role", out.record.role}, {"prefix", out.record.prefix}};
  if (out.record.expires_ms) d["expires_ms"] = *out.record.expires_ms;
  audit(store, now_ms, "key.created", out.record.id, "", std::move(d), actor);
  return out;
}

Result<ApiKeyRecord> find_api_key(Store& store, const crypto::MasterSecret& master, const std::string& id_or_secret) {
  const bool secret = looks_like_secret(id_or_secret, kClientKeyPrefix) ||
                      looks_like_secret(id_or_secret, kAdminTokenPrefix);
  if (!secret) {
    if (!id_or_secret.starts_with("key_")) {
      return make_error(Errc::invalid_argument, "'" + id_or_secret +
                                                    "' is neither a key id (key_…) nor a key (gk_… or at_… "
                                                    "with 43 letters and digits)");
    }
    auto r = store.find_api_key(id_or_secret);
    if (!r && r.error().code == Errc::not_found) return make_error(Errc::not_found, "no API key " + shown(id_or_secret));
    return r;
  }
  for (const char* scheme : {kHashHmac, kHashLegacy}) {
    auto r = store.find_api_key(credential_hash(master, id_or_secret, scheme));
    if (r && r->hash_scheme == scheme) return r;
    if (!r && r.error().code != Errc::not_found) return r.error();
  }
  return make_error(Errc::not_found, "no API key matches " + shown(id_or_secret));
}

Result<std::pair<ApiKeyRecord, IssuedKey>> rotate_api_key(Store& store, const crypto::MasterSecret& master,
                                                           const std::string& id_or_secret, int64_t grace_ms,
                                                           int64_t now_ms, std::string_view actor) {
  if (grace_ms < 0) return make_error(Errc::invalid_argument, "grace: must not be negative");
  auto old = find_api_key(store, master, id_or_secret);
  if (!old) return old.error();
  IssuedKey fresh;
  fresh.secret = crypto::new_secret(prefix_for_role(old->role));
  ApiKeyRecord spec = *old;
  spec.prefix = crypto::secret_display_prefix(fresh.secret);
  spec.hash = master.hash_api_key(fresh.secret);
  spec.hash_scheme = kHashHmac;
  spec.created_ms = now_ms;
  spec.revoked_ms.reset();
  spec.replaced_by.reset();
  // The successor keeps an absolute expiry the old key had, if any.
  auto pair = store.rotate_api_key(old->id, spec, now_ms + grace_ms);
  if (!pair) return pair.error();
  fresh.record = std::move(pair->second);
  audit(store, now_ms, "key.rotated", pair->first.id, "",
        json::object{{"successor", fresh.record.id}, {"prefix", fresh.record.prefix},
                     {"old_key_until_ms", pair->first.expires_ms.value_or(now_ms + grace_ms)}},
        actor);
  return std::make_pair(std::move(pair->first), std::move(fresh));
}

Result<ApiKeyRecord> revoke_api_key(Store& store, const crypto::MasterSecret& master, const std::string& id_or_secret,
                                    int64_t now_ms, std::string_view actor) {
  auto key = find_api_key(store, master, id_or_secret);
  if (!key) return key.error();
  auto r = store.revoke_api_key(key->id, now_ms);
  if (r && !key->revoked_ms) audit(store, now_ms, "key.revoked", r->id, "", json::object{}, actor);
  return r;
}

Result<IssuedToken> issue_provider_token(Store& store, const crypto::MasterSecret& master, const std::string& name,
                                         int64_t now_ms, std::string_view actor) {
  if (Status st = check_name(name); !st) return st.error();
  IssuedToken out;
  out.secret = crypto::new_secret(kProviderTokenPrefix);
  auto p = store.create_provider(name, crypto::secret_display_prefix(out.secret),
                                 master.hash_provider_token(out.secret), now_ms);
  if (!p) return p.error();
  out.record = std::move(*p);
  audit(store, now_ms, "provider.registered", "", out.record.id,
        json::object{{"name", out.record.name}, {"prefix", out.record.prefix}}, actor);
  return out;
}

Result<ProviderRecord> find_provider(Store& store, const crypto::MasterSecret& master,
                                     const std::string& id_name_or_token) {
  if (!looks_like_secret(id_name_or_token, kProviderTokenPrefix)) {
    auto r = store.find_provider(id_name_or_token);
    if (!r && r.error().code == Errc::not_found) {
      return make_error(Errc::not_found, "no provider matches " + shown(id_name_or_token));
    }
    return r;
  }
  // A token: its keyed hash, or its plain SHA-256 for a provider registered
  // before schema 3 (only a row whose scheme matches counts).
  for (const char* scheme : {kHashHmac, kHashLegacy}) {
    auto r = store.find_provider(credential_hash(master, id_name_or_token, scheme));
    if (r && r->hash_scheme == scheme) return r;
    if (!r && r.error().code != Errc::not_found) return r.error();
  }
  return make_error(Errc::not_found, "no provider matches " + shown(id_name_or_token));
}

Result<ProviderRecord> revoke_provider(Store& store, const crypto::MasterSecret& master,
                                       const std::string& id_name_or_token, int64_t now_ms, std::string_view actor) {
  auto p = find_provider(store, master, id_name_or_token);
  if (!p) return p.error();
  auto r = store.revoke_provider(p->id, now_ms);
  if (r && !p->revoked_ms) audit(store, now_ms, "provider.revoked", "", r->id, json::object{}, actor);
  return r;
}

Status publish_agreement(Store& store, const AgreementRecord& a, std::string_view actor) {
  const AuditEvent e{a.published_ms, "agreement.published", "", "",
                     json::serialize(json::object{{"version", a.version}, {"sha256", a.sha256}, {"by", actor}})};
  return store.publish_agreement(a, std::span<const AuditEvent>(&e, 1));
}

Result<ProviderRecord> set_provider_status(Store& store, const crypto::MasterSecret& master,
                                           const std::string& id_name_or_token, const std::string& status,
                                           int64_t now_ms, std::string_view actor) {
  auto p = find_provider(store, master, id_name_or_token);
  if (!p) return p.error();
  if (p->status == status) return p;  // nothing changes, nothing to record
  json::object d{{"previous", p->status}};
  if (status == kProviderTerminated) {
    // No ledger yet: what the provider served is recorded as the unpaid
    // earnings it forfeits, for the ledger to value.
    auto totals = store.provider_totals(p->id);
    if (!totals) return totals.error();
    d["forfeited"] = json::object{{"jobs", totals->jobs},
                                  {"prompt_tokens", totals->prompt_tokens},
                                  {"completion_tokens", totals->completion_tokens},
                                  {"basis", "all jobs served (no payouts recorded yet)"}};
  }
  const std::string kind = status == kProviderActive       ? "provider.resumed"
                           : status == kProviderSuspended  ? "provider.suspended"
                                                           : "provider.terminated";
  d["by"] = actor;
  const AuditEvent e{now_ms, kind, "", p->id, json::serialize(d)};
  return store.set_provider_status(p->id, status, now_ms, std::span<const AuditEvent>(&e, 1));
}

std::string iso_utc(int64_t ms) {
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  if (!gmtime_r(&secs, &tm)) return std::to_string(ms);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string key_json(const ApiKeyRecord& k, int64_t now_ms) {
  std::string o;
  auto field = [&](std::string_view name) {
    o += o.empty() ? "{" : ",";
    append_json_string(o, name);
    o += ':';
  };
  auto str = [&](std::string_view name, std::string_view v) {
    field(name);
    append_json_string(o, v);
  };
  auto time = [&](std::string_view name, const std::optional<int64_t>& ms) {
    field(name);
    if (ms) append_json_string(o, iso_utc(*ms));
    else o += "null";
    field(std::string(name) + "_ms");
    if (ms) append_json_number(o, *ms);
    else o += "null";
  };
  auto limit = [&](const Limit& l) {
    if (!l) o += "\"default\"";
    else if (*l == 0) o += "null";
    else append_json_number(o, *l);
  };
  str("id", k.id);
  str("name", k.name);
  str("prefix", k.prefix);
  str("role", k.role);
  time("created", k.created_ms);
  str("status", k.revoked_ms ? "revoked" : k.active(now_ms) ? "active" : "expired");
  time("revoked", k.revoked_ms);
  time("expires", k.expires_ms);
  field("limits");
  o += "{\"rpm\":";
  limit(k.rpm);
  o += ",\"tpm\":";
  limit(k.tpm);
  o += ",\"max_concurrent\":";
  limit(k.max_concurrent);
  o += '}';
  field("models");
  o += '[';
  for (size_t i = 0; i < k.models.size(); ++i) {
    if (i) o += ',';
    append_json_string(o, k.models[i]);
  }
  o += ']';
  str("lineage_id", k.lineage_id);
  field("replaced_by");
  if (k.replaced_by) append_json_string(o, *k.replaced_by);
  else o += "null";
  str("hash_scheme", k.hash_scheme);
  o += '}';
  return o;
}

Result<int64_t> parse_duration_ms(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
  int64_t n = 0;
  const auto [p, ec] = std::from_chars(text.data(), text.data() + i, n);
  const std::string_view unit = text.substr(i);
  int64_t scale = 0;
  if (unit == "ms") scale = 1;
  else if (unit == "s") scale = 1000;
  else if (unit == "m") scale = 60'000;
  else if (unit == "h") scale = 3'600'000;
  else if (unit == "d") scale = 86'400'000;
  if (i == 0 || ec != std::errc{} || scale == 0 || n > INT64_MAX / scale / 2) {
    return make_error(Errc::invalid_argument, "'" + std::string(text) +
                                                  "' is not a duration (a number and a unit: ms, s, m, h or d, "
                                                  "e.g. 30d)");
  }
  return n * scale;
}

}  // namespace agora::store
