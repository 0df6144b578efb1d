// `agora keys create | list | revoke | rotate` and `agora providers register
// | list | revoke`: the operator's commands on the gateway's database
// (DATA_DIR/agora.db). They work while a gateway runs on the same file: it
// notices the changes through Store::credentials_version() within a second.
//
// Secrets are printed once, alone on stdout, and never stored: the database
// keeps their HMAC-SHA-256 under the master secret (DATA_DIR/master.key or
// --master-key, never in the database) and a 7-character display prefix.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/store_access.h"
#include "common/clock.h"
#include "common/text.h"
#include "crypto/master_secret.h"
#include "crypto/random.h"
#include "common/file.h"
#include "protocol/agreement.h"
#include "store/audit.h"
#include "store/credentials.h"
#include "store/sqlite_store.h"

namespace agora::cli {
namespace {

namespace json = boost::json;

// A node snapshot the gateway has not refreshed for this long is stale (the
// gateway is gone, or the node stopped reporting).
constexpr int64_t kStaleAfterMs = 10'000;

struct CreateArgs {
  std::string data_dir;
  std::string master_key;
  std::string name;
};
struct KeyCreateArgs : CreateArgs {
  std::string rpm, tpm, max_concurrent;  // "" (gateway default), "none", or N
  std::string expires;                   // "" or a duration
  std::string models;                    // "" or a,b,c
  bool admin = false;
};
struct ListArgs {
  std::string data_dir;
  bool json = false;
};
struct RevokeArgs {
  std::string data_dir;
  std::string master_key;
  std::string target;
};
struct RotateArgs : RevokeArgs {
  std::string grace = "24h";
};

// ---- helpers



// "" → gateway default, "none" → no limit (0), else a positive integer.
store::Limit parse_limit(const std::string& flag, const std::string& text) {
  if (text.empty()) return std::nullopt;
  if (text == "none") return 0;
  int64_t v = 0;
  const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || p != text.data() + text.size() || v < 1) {
    fail("invalid_argument: " + flag + " must be a positive integer or \"none\" (got '" + text + "')");
  }
  return v;
}

// The comma-separated items, each without surrounding spaces; empty ones dropped.
std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> out;
  for (auto& item : split_list(text)) {
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (!item.empty()) out.push_back(std::move(item));
  }
  return out;
}


using store::iso_utc;  // "2025-01-31T12:00:00Z"

// "4 s ago", "3 min ago", "2 h ago", "5 d ago"
std::string age(int64_t ms) {
  const int64_t s = ms < 0 ? 0 : ms / 1000;
  if (s < 120) return fmt::format("{} s ago", s);
  if (s < 7200) return fmt::format("{} min ago", s / 60);
  if (s < 172800) return fmt::format("{} h ago", s / 3600);
  return fmt::format("{} d ago", s / 86400);
}

std::string status_text(const std::optional<int64_t>& revoked_ms) {
  return revoked_ms ? "revoked at " + iso_utc(*revoked_ms) : "active";
}

std::string key_status(const store::ApiKeyRecord& k, int64_t now) {
  if (k.revoked_ms) return "revoked at " + iso_utc(*k.revoked_ms);
  if (k.expires_ms && now >= *k.expires_ms) {
    return (k.replaced_by ? "rotated to " + *k.replaced_by + ", stopped " : "expired ") + iso_utc(*k.expires_ms);
  }
  if (k.replaced_by) return "rotated to " + *k.replaced_by + ", works until " + iso_utc(k.expires_ms.value_or(0));
  if (k.expires_ms) return "active until " + iso_utc(*k.expires_ms);
  return "active";
}

std::string limit_text(const store::Limit& l) {
  if (!l) return "default";
  if (*l == 0) return "none";
  return std::to_string(*l);
}

// Columns as the terminal shows them: UTF-8 code points ("…" is one).
size_t display_width(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// Left-aligned columns, two spaces apart, one string per row (rows[0]: the header).
std::vector<std::string> format_table(const std::vector<std::vector<std::string>>& rows,
                                      const std::string& indent = "") {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], display_width(row[i]));
  }
  std::vector<std::string> lines;
  for (const auto& row : rows) {
    std::string line = indent;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(width[i] - display_width(row[i]) + 2, ' ');
    }
    lines.push_back(std::move(line));
  }
  return lines;
}

void print_table(const std::vector<std::vector<std::string>>& rows,
                 const std::string& indent = "") {
  for (const auto& line : format_table(rows, indent)) std::printf("%s\n", line.c_str());
}

// Fields common to keys and providers, for --json.
template <class Record>
json::object credential_json(const Record& r) {
  json::object o;
  o["id"] = r.id;
  o["name"] = r.name;
  o["prefix"] = r.prefix;
  o["created"] = iso_utc(r.created_ms);
  o["created_ms"] = r.created_ms;
  o["status"] = r.revoked_ms ? "revoked" : "active";
  if (r.revoked_ms) {
    o["revoked"] = iso_utc(*r.revoked_ms);
    o["revoked_ms"] = *r.revoked_ms;
  } else {
    o["revoked"] = nullptr;
    o["revoked_ms"] = nullptr;
  }
  return o;
}

std::string provider_status_text(const store::ProviderRecord& p) {
  if (p.status == store::kProviderTerminated) return "terminated " + iso_utc(p.status_ms.value_or(0));
  if (p.revoked_ms) return status_text(p.revoked_ms);
  if (p.status == store::kProviderSuspended) return "suspended since " + iso_utc(p.status_ms.value_or(0));
  return "active";
}

std::vector<std::string> provider_row(const store::ProviderRecord& r) {
  return {r.id, r.name, r.prefix + "…", iso_utc(r.created_ms), provider_status_text(r)};
}

// A key is named in messages by id, never by its secret.
[[noreturn]] void fail_lookup(const Error& e) { fail(e.to_string()); }

// ---- keys

void run_keys_create(const KeyCreateArgs& a) {
  store::KeySpec spec;
  spec.name = a.name;
  spec.role = a.admin ? "admin" : "client";
  spec.rpm = parse_limit("--rpm", a.rpm);
  spec.tpm = parse_limit("--tpm", a.tpm);
  spec.max_concurrent = parse_limit("--max-concurrent", a.max_concurrent);
  const int64_t now = now_ms();
  if (!a.expires.empty()) {
    auto d = store::parse_duration_ms(a.expires);
    if (!d) fail("invalid_argument: --expires: " + d.error().message);
    if (*d <= 0) fail("invalid_argument: --expires must be a positive duration");
    spec.expires_ms = now + *d;
  }
  spec.models = split_commas(a.models);
  if (Status st = store::validate_key_spec(spec, now); !st) fail("invalid_argument: --" + st.error().message);
  auto db = open_store(a.data_dir, /*create=*/true);
  auto master = load_master(a.data_dir, a.master_key, /*create=*/true);
  auto key = store::issue_api_key(*db, *master, spec, now);
  if (!key) fail(key.error().to_string());
  sign_audit(*db, *master);
  std::printf("%s\n", key->secret.c_str());
  std::fflush(stdout);
  std::fprintf(stderr, "created %s %s (%s); it is shown only once\n", a.admin ? "admin token" : "API key",
               key->record.id.c_str(), key->record.name.c_str());
}

void run_keys_list(const ListArgs& a) {
  auto db = open_store(a.data_dir, /*create=*/false);
  auto keys = db->list_api_keys();
  if (!keys) fail(keys.error().to_string());
  const int64_t now = now_ms();
  if (a.json) {
    std::string out = "[";
    for (size_t i = 0; i < keys->size(); ++i) out += (i ? "," : "") + store::key_json((*keys)[i], now);
    std::printf("%s]\n", out.c_str());
    return;
  }
  if (keys->empty()) {
    std::fprintf(stderr, "no API keys yet (create one with `agora keys create --name NAME`)\n");
    return;
  }
  std::vector<std::vector<std::string>> rows{
      {"ID", "NAME", "KEY", "ROLE", "RPM", "TPM", "CONCURRENT", "MODELS", "CREATED", "STATUS"}};
  for (const auto& k : *keys) {
    std::string models;
    for (const auto& m : k.models) models += (models.empty() ? "" : ",") + m;
    rows.push_back({k.id, k.name, k.prefix + "…", k.role, limit_text(k.rpm), limit_text(k.tpm),
                    limit_text(k.max_concurrent), models.empty() ? "all" : models, iso_utc(k.created_ms),
                    key_status(k, now)});
  }
  print_table(rows);
}

void run_keys_revoke(const RevokeArgs& a) {
  auto db = open_store(a.data_dir, /*create=*/false);
  auto master = load_master(a.data_dir, a.master_key, /*create=*/false);
  const int64_t now = now_ms();
  auto key = store::revoke_api_key(*db, *master, a.target, now);
  if (!key) fail_lookup(key.error());
  sign_audit(*db, *master);
  if (key->revoked_ms && *key->revoked_ms < now) {
    std::printf("API key %s (%s) was already revoked at %s\n", key->id.c_str(), key->name.c_str(),
                iso_utc(*key->revoked_ms).c_str());
  } else {
    std::printf("revoked API key %s (%s)\n", key->id.c_str(), key->name.c_str());
  }
}

void run_keys_rotate(const RotateArgs& a) {
  auto grace = store::parse_duration_ms(a.grace);
  if (!grace) fail("invalid_argument: --grace: " + grace.error().message);
  auto db = open_store(a.data_dir, /*create=*/false);
  auto master = load_master(a.data_dir, a.master_key, /*create=*/false);
  const int64_t now = now_ms();
  auto r = store::rotate_api_key(*db, *master, a.target, *grace, now);
  if (!r) fail_lookup(r.error());
  sign_audit(*db, *master);
  const auto& [old_key, fresh] = *r;
  std::printf("%s\n", fresh.secret.c_str());
  std::fflush(stdout);
  const std::string old_until =
      *grace == 0 ? std::string("stopped working now") : "works until " + iso_utc(old_key.expires_ms.value_or(now));
  std::fprintf(stderr, "rotated %s to %s (%s); the new key is shown only once; the old key %s\n",
               old_key.id.c_str(), fresh.record.id.c_str(), fresh.record.name.c_str(), old_until.c_str());
}

// ---- providers

// models_json as stored by the gateway; an unreadable one becomes [].
json::array parse_models(const std::string& models_json) {
  boost::system::error_code ec;
  json::value v = json::parse(models_json, ec);
  if (ec || !v.is_array()) return {};
  return v.as_array();
}

std::string models_text(const json::array& models) {
  if (models.empty()) return "no models";
  std::string out;
  for (const auto& m : models) {
    if (!m.is_object()) continue;
    const auto& o = m.as_object();
    auto str = [&](const char* k) -> std::string {
      const auto* p = o.if_contains(k);
      return p && p->is_string() ? std::string(p->as_string()) : std::string();
    };
    auto num = [&](const char* k) -> int64_t {
      const auto* p = o.if_contains(k);
      return p && p->is_int64() ? p->as_int64() : 0;
    };
    if (!out.empty()) out += ", ";
    out += str("name").empty() ? "?" : str("name");
    if (!str("quantization").empty()) out += " " + str("quantization");
    out += fmt::format(" ({}/{} busy)", num("busy"), num("slots"));
  }
  return out;
}

// The node's attestation as the gateway last snapshotted it (an object;
// empty from a gateway before schema 5).
json::object parse_attestation(const std::string& text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) return json::object{{"level", "standard"}, {"status", "none"}};
  return std::move(v.get_object());
}

// "confidential (nvidia_cc, expires 2026-12-02T10:00:00Z)", "standard (failed: …)".
std::string attestation_text(const json::object& a) {
  auto str = [&](const char* k) {
    const auto* v = a.if_contains(k);
    return v && v->is_string() ? std::string(v->get_string()) : std::string();
  };
  const std::string level = str("level").empty() ? "standard" : str("level");
  const std::string status = str("status");
  if (status == "verified") {
    const auto* e = a.if_contains("expires_ms");
    const int64_t expires = e && e->is_int64() ? e->get_int64() : 0;
    return fmt::format("{} ({}, expires {})", level, str("kind"), iso_utc(expires));
  }
  if (status.empty() || status == "none") return level;
  std::string why = str("error");
  if (why.size() > 60) why = why.substr(0, 57) + "...";
  return fmt::format("{} ({} {}{}{})", level, str("kind"), status, why.empty() ? "" : ": ", why);
}

void print_provider_nodes(const std::vector<store::NodeRecord>& nodes,
                          const std::map<std::string, store::AcceptanceRecord>& accepted, int64_t now) {
  if (nodes.empty()) {
    std::printf("    no connected nodes\n");
    return;
  }
  std::vector<std::vector<std::string>> rows{
      {"NODE", "REGION", "AGENT", "IDENTITY KEY", "MODELS", "AGREEMENT", "ATTESTATION", "CONNECTED", "UPDATED"}};
  for (const auto& n : nodes) {
    const bool stale = now - n.updated_ms > kStaleAfterMs;
    auto a = accepted.find(n.node_id);
    rows.push_back({n.node_id, n.region.empty() ? "-" : n.region, n.agent,
                    n.identity_key.empty() ? "-" : n.identity_key.substr(0, 16) + "…",
                    models_text(parse_models(n.models_json)),
                    a == accepted.end() ? "none" : fmt::format("v{} {}", a->second.version, iso_utc(a->second.accepted_ms)),
                    attestation_text(parse_attestation(n.attestation_json)), iso_utc(n.connected_ms), age(now - n.updated_ms) + (stale ? " (stale)" : "")});
  }
  print_table(rows, "    ");
}

json::object node_json(const store::NodeRecord& n, int64_t now) {
  json::object o;
  o["node_id"] = n.node_id;
  o["region"] = n.region;
  o["agent"] = n.agent;
  o["identity_key"] = n.identity_key;
  o["models"] = parse_models(n.models_json);
  o["attestation"] = parse_attestation(n.attestation_json);
  o["slots"] = n.slots;
  o["slots_busy"] = n.slots_busy;
  o["connected"] = iso_utc(n.connected_ms);
  o["connected_ms"] = n.connected_ms;
  o["updated"] = iso_utc(n.updated_ms);
  o["updated_ms"] = n.updated_ms;
  o["stale"] = now - n.updated_ms > kStaleAfterMs;
  return o;
}

void run_providers_register(const CreateArgs& a) {
  auto db = open_store(a.data_dir, /*create=*/true);
  auto master = load_master(a.data_dir, a.master_key, /*create=*/true);
  auto p = store::issue_provider_token(*db, *master, a.name, now_ms());
  if (!p) fail(p.error().to_string());
  sign_audit(*db, *master);
  std::printf("%s\n", p->secret.c_str());
  std::fflush(stdout);
  std::fprintf(stderr,
               "registered provider %s (%s); its token is shown only once: give it to its nodes\n",
               p->record.id.c_str(), p->record.name.c_str());
}

void run_providers_list(const ListArgs& a) {
  auto db = open_store(a.data_dir, /*create=*/false);
  auto providers = db->list_providers();
  if (!providers) fail(providers.error().to_string());
  auto nodes = db->list_nodes();
  if (!nodes) fail(nodes.error().to_string());
  auto acceptances = db->list_acceptances();
  if (!acceptances) fail(acceptances.error().to_string());
  // provider id -> node id -> the newest version it accepted, and when.
  std::map<std::string, std::map<std::string, store::AcceptanceRecord>> accepted;
  for (auto& x : *acceptances) {
    auto& slot = accepted[x.provider_id][x.node_id];
    if (x.version >= slot.version) slot = x;
  }
  std::map<std::string, std::vector<store::NodeRecord>> by_provider;
  for (auto& n : *nodes) by_provider[n.provider_id].push_back(std::move(n));
  const int64_t now = now_ms();

  if (a.json) {
    json::array out;
    for (const auto& p : *providers) {
      json::object o = credential_json(p);
      if (p.status != store::kProviderActive) o["status"] = p.status;
      o["status_ms"] = p.status_ms ? json::value(*p.status_ms) : json::value(nullptr);
      json::array ns;
      for (const auto& n : by_provider[p.id]) ns.push_back(node_json(n, now));
      o["nodes"] = std::move(ns);
      json::array agreements;
      for (const auto& [node, x] : accepted[p.id]) {
        agreements.push_back(json::object{{"node_id", node},
                                          {"version", x.version},
                                          {"sha256", x.sha256},
                                          {"accepted", iso_utc(x.accepted_ms)},
                                          {"accepted_ms", x.accepted_ms}});
      }
      o["agreements"] = std::move(agreements);
      out.push_back(std::move(o));
    }
    std::printf("%s\n", json::serialize(out).c_str());
    return;
  }
  if (providers->empty()) {
    std::fprintf(stderr,
                 "no providers yet (register one with `agora providers register --name NAME`)\n");
    return;
  }
  // One table of providers; under each, its nodes as a table of their own.
  std::vector<std::vector<std::string>> rows{{"ID", "NAME", "TOKEN", "CREATED", "STATUS"}};
  for (const auto& p : *providers) rows.push_back(provider_row(p));
  const auto lines = format_table(rows);
  std::printf("%s\n", lines[0].c_str());
  for (size_t i = 0; i < providers->size(); ++i) {
    std::printf("%s\n", lines[i + 1].c_str());
    print_provider_nodes(by_provider[(*providers)[i].id], accepted[(*providers)[i].id], now);
  }
}

void run_providers_revoke(const RevokeArgs& a) {
  auto db = open_store(a.data_dir, /*create=*/false);
  auto master = load_master(a.data_dir, a.master_key, /*create=*/false);
  const int64_t now = now_ms();
  auto p = store::revoke_provider(*db, *master, a.target, now);
  if (!p) fail_lookup(p.error());
  sign_audit(*db, *master);
  if (p->revoked_ms && *p->revoked_ms < now) {
    std::printf("provider %s (%s) was already revoked at %s\n", p->id.c_str(), p->name.c_str(),
                iso_utc(*p->revoked_ms).c_str());
  } else {
    std::printf("revoked provider %s (%s)\n", p->id.c_str(), p->name.c_str());
  }
}

struct StatusArgs : RevokeArgs {
  std::string status;  // the store::kProvider* it sets
};

void run_providers_status(const StatusArgs& a) {
  auto db = open_store(a.data_dir, /*create=*/false);
  auto master = load_master(a.data_dir, a.master_key, /*create=*/false);
  const int64_t now = now_ms();
  auto before = store::find_provider(*db, *master, a.target);
  if (!before) fail_lookup(before.error());
  auto p = store::set_provider_status(*db, *master, a.target, a.status, now);
  if (!p) fail(p.error().to_string());
  sign_audit(*db, *master);
  if (before->status == p->status) {
    std::printf("provider %s (%s) is already %s\n", p->id.c_str(), p->name.c_str(), p->status.c_str());
    return;
  }
  if (a.status == store::kProviderSuspended) {
    std::printf("suspended provider %s (%s): its nodes stay connected but get no new jobs (running ones finish); "
                "`agora providers resume %s` undoes it\n",
                p->id.c_str(), p->name.c_str(), p->id.c_str());
  } else if (a.status == store::kProviderActive) {
    std::printf("resumed provider %s (%s): its nodes take jobs again\n", p->id.c_str(), p->name.c_str());
  } else {
    auto totals = db->provider_totals(p->id);
    std::printf("terminated provider %s (%s): token revoked, nodes disconnected; forfeited earnings recorded in "
                "the audit trail (%lld jobs, %lld completion tokens)\n",
                p->id.c_str(), p->name.c_str(), totals ? static_cast<long long>(totals->jobs) : 0LL,
                totals ? static_cast<long long>(totals->completion_tokens) : 0LL);
  }
}

struct AgreementArgs {
  std::string data_dir;
  std::string master_key;
  std::string file;
  int32_t version = 0;
  bool json = false;
};

void run_agreement_show(const AgreementArgs& a) {
  auto db = open_store(a.data_dir, /*create=*/false);
  Result<store::AgreementRecord> r = make_error(Errc::not_found, "");
  if (a.version > 0) {
    r = db->get_agreement(a.version);
  } else {
    auto c = db->current_agreement();
    if (!c) fail(c.error().to_string());
    if (!*c) fail("not_found: no agreement is published yet (a gateway publishes its built-in one when it starts)");
    r = std::move(**c);
  }
  if (!r) fail(r.error().to_string());
  std::fprintf(stderr, "agreement version %d, sha256 %s, published %s\n", r->version, r->sha256.c_str(),
               iso_utc(r->published_ms).c_str());
  std::fwrite(r->text.data(), 1, r->text.size(), stdout);
}

void run_agreement_publish(const AgreementArgs& a) {
  auto text = read_file(a.file, 1u << 20);
  if (!text) fail(text.error().to_string());
  auto parsed = protocol::parse_agreement(std::move(*text));
  if (!parsed) fail("invalid_argument: " + a.file + ": " + parsed.error().message);
  auto db = open_store(a.data_dir, /*create=*/false);
  auto master = load_master(a.data_dir, a.master_key, /*create=*/false);
  const int64_t now = now_ms();
  store::AgreementRecord r{parsed->version, parsed->sha256, parsed->text, now};
  if (Status st = store::publish_agreement(*db, r, "cli"); !st) fail(st.error().to_string());
  sign_audit(*db, *master);
  std::printf("published agreement version %d (sha256 %s): connected nodes get no further jobs until they accept "
              "it (a running gateway asks them within a second)\n",
              r.version, r.sha256.c_str());
}

void run_agreement_acceptances(const AgreementArgs& a) {
  auto db = open_store(a.data_dir, /*create=*/false);
  auto list = db->list_acceptances();
  if (!list) fail(list.error().to_string());
  if (a.json) {
    json::array out;
    for (const auto& x : *list) {
      out.push_back(json::object{{"provider_id", x.provider_id},
                                 {"node_id", x.node_id},
                                 {"version", x.version},
                                 {"sha256", x.sha256},
                                 {"accepted", iso_utc(x.accepted_ms)},
                                 {"accepted_ms", x.accepted_ms}});
    }
    std::printf("%s\n", json::serialize(out).c_str());
    return;
  }
  if (list->empty()) {
    std::fprintf(stderr, "no node has accepted an agreement yet\n");
    return;
  }
  std::vector<std::vector<std::string>> rows{{"PROVIDER", "NODE", "VERSION", "SHA256", "ACCEPTED"}};
  for (const auto& x : *list) {
    rows.push_back({x.provider_id, x.node_id, std::to_string(x.version), x.sha256.substr(0, 16) + "…",
                    iso_utc(x.accepted_ms)});
  }
  print_table(rows, "");
}

// ---- registration


}  // namespace

void add_admin_commands(CLI::App& app) {
  // ---- keys
  auto* keys = app.add_subcommand(
      "keys", "Create, list, revoke and rotate client API keys (gk_…) and admin tokens (at_…)");
  keys->require_subcommand(1);

  auto kc = std::make_shared<KeyCreateArgs>();
  auto* kcreate = keys->add_subcommand("create",
                                       "Create an API key (gk_…) or, with --admin, an admin token (at_…). "
                                       "Prints it alone on stdout, once: only its keyed hash (HMAC-SHA-256) "
                                       "and first 7 characters are stored.");
  add_data_dir(kcreate, kc->data_dir);
  add_master_key(kcreate, kc->master_key);
  kcreate->add_option("--name", kc->name, "A label for the key (who or what uses it), 1-100 bytes")->required();
  kcreate->add_option("--rpm", kc->rpm,
                      "Requests per minute (a positive integer, or \"none\"; default: the gateway's default_rpm)");
  kcreate->add_option("--tpm", kc->tpm,
                      "Tokens per minute, prompt + completion (positive integer or \"none\"; default: the "
                      "gateway's default_tpm)");
  kcreate->add_option("--max-concurrent", kc->max_concurrent,
                      "Requests in flight at once (positive integer or \"none\"; default: the gateway's "
                      "default_max_concurrent)");
  kcreate->add_option("--expires", kc->expires, "Stop working after this long: 30d, 12h, 90m, 45s (default: never)");
  kcreate->add_option("--models", kc->models, "Comma-separated models the key may use (default: all)");
  kcreate->add_flag("--admin", kc->admin,
                    "Make an admin token (at_…) for the admin API (/admin/v1/…) instead of a client key");
  kcreate->callback([kc] { run_keys_create(*kc); });

  auto kl = std::make_shared<ListArgs>();
  auto* klist = keys->add_subcommand(
      "list", "List keys and admin tokens: id, name, prefix, role, limits, models, creation time (UTC), status");
  add_data_dir(klist, kl->data_dir);
  klist->add_flag("--json", kl->json, "Print a JSON array instead of a table");
  klist->callback([kl] { run_keys_list(*kl); });

  auto kr = std::make_shared<RevokeArgs>();
  auto* krevoke = keys->add_subcommand(
      "revoke",
      "Revoke a key at once (it stays listed, as revoked; a running gateway refuses it within a second). "
      "Revoking twice keeps the first time.");
  add_data_dir(krevoke, kr->data_dir);
  add_master_key(krevoke, kr->master_key);
  krevoke
      ->add_option("key", kr->target,
                   "The key's id (key_…) or the full key (gk_…/at_…; hashed before the lookup)")
      ->required();
  krevoke->callback([kr] { run_keys_revoke(*kr); });

  auto kt = std::make_shared<RotateArgs>();
  auto* krotate = keys->add_subcommand(
      "rotate",
      "Replace a key with a new one (same name, role, limits, models; printed alone on stdout, once). The old "
      "key keeps working for the grace period, then stops. Limits are shared by the old and new key.");
  add_data_dir(krotate, kt->data_dir);
  add_master_key(krotate, kt->master_key);
  krotate->add_option("key", kt->target, "The key's id (key_…) or the full key")->required();
  krotate->add_option("--grace", kt->grace, "How long the old key keeps working: 0s, 90m, 24h, 7d")
      ->capture_default_str();
  krotate->callback([kt] { run_keys_rotate(*kt); });

  // ---- providers
  auto* providers = app.add_subcommand(
      "providers",
      "Register, list, suspend, resume, terminate and revoke providers (who run nodes), see their nodes, and "
      "manage the agreement they accept");
  providers->require_subcommand(1);

  auto pc = std::make_shared<CreateArgs>();
  auto* preg = providers->add_subcommand("register",
                                         "Register a provider. Prints its token (pt_…) alone on "
                                         "stdout, once; its nodes connect with it. Only its "
                                         "keyed hash and first 7 characters are stored.");
  add_data_dir(preg, pc->data_dir);
  add_master_key(preg, pc->master_key);
  preg->add_option("--name", pc->name, "The provider's name, unique, 1-100 bytes")->required();
  preg->callback([pc] { run_providers_register(*pc); });

  auto pl = std::make_shared<ListArgs>();
  auto* plist = providers->add_subcommand(
      "list",
      "List providers and, under each, its connected nodes as the gateway last reported them "
      "(region, models "
      "with busy/slots, connection time, last update; a report older than 10 s is marked stale)");
  add_data_dir(plist, pl->data_dir);
  plist->add_flag("--json", pl->json, "Print a JSON array (each provider with a \"nodes\" array)");
  plist->callback([pl] { run_providers_list(*pl); });

  auto pr = std::make_shared<RevokeArgs>();
  auto* prevoke = providers->add_subcommand("revoke",
                                            "Revoke a provider and its token (it stays listed, as "
                                            "revoked). Revoking twice keeps the first time.");
  add_data_dir(prevoke, pr->data_dir);
  add_master_key(prevoke, pr->master_key);
  prevoke->add_option("provider", pr->target, "The provider's id (prov_…), name, or token (pt_…)")
      ->required();
  prevoke->callback([pr] { run_providers_revoke(*pr); });

  struct StatusCommand {
    const char* name;
    const char* status;
    const char* help;
  };
  for (const auto& c : {
           StatusCommand{"suspend", store::kProviderSuspended,
                         "Suspend a provider while you investigate: its nodes stay connected but get no new jobs "
                         "(running ones finish); reversible with `resume`. Recorded in the audit trail."},
           StatusCommand{"resume", store::kProviderActive,
                         "Lift a suspension: the provider's nodes take jobs again. Recorded in the audit trail."},
           StatusCommand{"terminate", store::kProviderTerminated,
                         "Terminate a provider for a breach of the agreement: its token is revoked, its nodes are "
                         "disconnected at once, and its unpaid earnings are recorded as forfeited in the audit "
                         "trail. Final."},
       }) {
    auto sa = std::make_shared<StatusArgs>();
    sa->status = c.status;
    auto* cmd = providers->add_subcommand(c.name, c.help);
    add_data_dir(cmd, sa->data_dir);
    add_master_key(cmd, sa->master_key);
    cmd->add_option("provider", sa->target, "The provider's id (prov_…), name, or token (pt_…)")->required();
    cmd->callback([sa] { run_providers_status(*sa); });
  }

  auto* agreement = providers->add_subcommand(
      "agreement",
      "The provider data-handling agreement (docs/PROVIDER_AGREEMENT.md) nodes must accept before they get jobs: "
      "show it, publish a new version, list who accepted which version when");
  agreement->require_subcommand(1);
  auto ga = std::make_shared<AgreementArgs>();
  auto* ashow = agreement->add_subcommand("show", "Print the current agreement (or --version N) on stdout");
  add_data_dir(ashow, ga->data_dir);
  ashow->add_option("--version", ga->version, "A published version instead of the current one");
  ashow->callback([ga] { run_agreement_show(*ga); });
  auto pa = std::make_shared<AgreementArgs>();
  auto* apub = agreement->add_subcommand(
      "publish",
      "Publish a new version (a Markdown file whose \"Version: N\" line is above the current version). Connected "
      "nodes get no further jobs until they accept it; nodes started with it (--agreement FILE) accept at once.");
  add_data_dir(apub, pa->data_dir);
  add_master_key(apub, pa->master_key);
  apub->add_option("--file", pa->file, "The agreement document")->required();
  apub->callback([pa] { run_agreement_publish(*pa); });
  auto la = std::make_shared<AgreementArgs>();
  auto* alist = agreement->add_subcommand("acceptances", "Which node of which provider accepted which version, when");
  add_data_dir(alist, la->data_dir);
  alist->add_flag("--json", la->json, "Print a JSON array instead of a table");
  alist->callback([la] { run_agreement_acceptances(*la); });
}

}  // namespace agora::cli
