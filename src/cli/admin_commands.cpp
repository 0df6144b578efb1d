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
#include "common/clock.h"
#include "crypto/master_secret.h"
#include "crypto/random.h"
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

int64_t now_ms() {
  return SystemClock::instance().unix_millis();
}

// The master secret: --master-key, else $AGORA_MASTER_KEY, else
// DATA_DIR/master.key. `create` when the command may be the first to need
// it (creating a key or a provider).
std::shared_ptr<const crypto::MasterSecret> load_master(const std::string& data_dir, const std::string& flag,
                                                        bool create) {
  std::filesystem::path path = flag;
  if (path.empty()) {
    const char* env = std::getenv("AGORA_MASTER_KEY");
    path = env && *env ? std::filesystem::path(env) : crypto::default_master_secret_path(data_dir);
  }
  auto m = crypto::MasterSecret::load(path, create);
  if (!m) {
    if (m.error().code == Errc::not_found) {
      fail("not_found: no master secret at " + path.string() +
           " (the file next to the database that keys are hashed with; pass --master-key if it lives elsewhere)");
    }
    fail(m.error().to_string());
  }
  return *m;
}

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

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    std::string item = text.substr(start, end - start);
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (!item.empty()) out.push_back(std::move(item));
    start = end + 1;
  }
  return out;
}

// Opens DIR/agora.db. `create`: make it when missing (create/register);
// otherwise a missing database is an error, so that a mistyped --data-dir
// does not silently show an empty list or leave a stray directory behind.
std::unique_ptr<store::Store> open_store(const std::string& data_dir, bool create) {
  const auto path = store::database_path(data_dir);
  std::error_code ec;
  if (!create && !std::filesystem::exists(path, ec)) {
    fail(fmt::format("not_found: no Agora database at {} (check --data-dir or $AGORA_DATA_DIR)",
                     path.string()));
  }
  auto s = store::open_sqlite_store(path);
  if (!s) fail(s.error().to_string());
  return std::move(s).value();
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

template <class Record>
std::vector<std::string> credential_row(const Record& r) {
  return {r.id, r.name, r.prefix + "…", iso_utc(r.created_ms), status_text(r.revoked_ms)};
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

void print_provider_nodes(const std::vector<store::NodeRecord>& nodes, int64_t now) {
  if (nodes.empty()) {
    std::printf("    no connected nodes\n");
    return;
  }
  std::vector<std::vector<std::string>> rows{
      {"NODE", "REGION", "AGENT", "MODELS", "CONNECTED", "UPDATED"}};
  for (const auto& n : nodes) {
    const bool stale = now - n.updated_ms > kStaleAfterMs;
    rows.push_back({n.node_id, n.region.empty() ? "-" : n.region, n.agent,
                    models_text(parse_models(n.models_json)), iso_utc(n.connected_ms),
                    age(now - n.updated_ms) + (stale ? " (stale)" : "")});
  }
  print_table(rows, "    ");
}

json::object node_json(const store::NodeRecord& n, int64_t now) {
  json::object o;
  o["node_id"] = n.node_id;
  o["region"] = n.region;
  o["agent"] = n.agent;
  o["models"] = parse_models(n.models_json);
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
  std::map<std::string, std::vector<store::NodeRecord>> by_provider;
  for (auto& n : *nodes) by_provider[n.provider_id].push_back(std::move(n));
  const int64_t now = now_ms();

  if (a.json) {
    json::array out;
    for (const auto& p : *providers) {
      json::object o = credential_json(p);
      json::array ns;
      for (const auto& n : by_provider[p.id]) ns.push_back(node_json(n, now));
      o["nodes"] = std::move(ns);
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
  for (const auto& p : *providers) rows.push_back(credential_row(p));
  const auto lines = format_table(rows);
  std::printf("%s\n", lines[0].c_str());
  for (size_t i = 0; i < providers->size(); ++i) {
    std::printf("%s\n", lines[i + 1].c_str());
    print_provider_nodes(by_provider[(*providers)[i].id], now);
  }
}

void run_providers_revoke(const RevokeArgs& a) {
  auto db = open_store(a.data_dir, /*create=*/false);
  auto master = load_master(a.data_dir, a.master_key, /*create=*/false);
  const int64_t now = now_ms();
  auto p = store::revoke_provider(*db, *master, a.target, now);
  if (!p) fail_lookup(p.error());
  if (p->revoked_ms && *p->revoked_ms < now) {
    std::printf("provider %s (%s) was already revoked at %s\n", p->id.c_str(), p->name.c_str(),
                iso_utc(*p->revoked_ms).c_str());
  } else {
    std::printf("revoked provider %s (%s)\n", p->id.c_str(), p->name.c_str());
  }
}

// ---- registration

std::string default_data_dir() {
  const char* env = std::getenv("AGORA_DATA_DIR");
  return env && *env ? env : "./agora-data";
}

void add_data_dir(CLI::App* cmd, std::string& dir) {
  dir = default_data_dir();
  cmd->add_option("--data-dir", dir,
                  "Data directory holding the database (agora.db); default: $AGORA_DATA_DIR, else "
                  "./agora-data")
      ->capture_default_str();
}

void add_master_key(CLI::App* cmd, std::string& path) {
  cmd->add_option("--master-key", path,
                  "The gateway's master secret, which key hashes are keyed with (default: $AGORA_MASTER_KEY, "
                  "else DATA_DIR/master.key; created with mode 0600 when a first credential is made)");
}

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
      "providers", "Register, list and revoke providers (who run nodes), and see their nodes");
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
}

}  // namespace agora::cli
