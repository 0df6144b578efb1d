#include "gateway/config.h"

#include "common/text.h"

#include <toml++/toml.h>

#include <charconv>
#include <fstream>
#include <functional>
#include <sstream>

namespace agora::gateway {
namespace {

using namespace std::chrono;

Error bad(std::string_view key, const std::string& why) {
  return make_error(Errc::invalid_argument, "setting '" + std::string(key) + "': " + why);
}

template <class Int>
Status parse_int(std::string_view key, std::string_view v, Int& out, int64_t min, int64_t max) {
  int64_t x = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (ec != std::errc{} || p != v.data() + v.size()) return bad(key, "'" + std::string(v) + "' is not an integer");
  if (x < min || x > max) {
    return bad(key, std::to_string(x) + " is out of range [" + std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  out = static_cast<Int>(x);
  return ok_status();
}

Status parse_ms(std::string_view key, std::string_view v, milliseconds& out, int64_t min = 1,
                int64_t max = 86'400'000) {
  int64_t x = 0;
  if (Status st = parse_int(key, v, x, min, max); !st) return st;
  out = milliseconds(x);
  return ok_status();
}

std::string join_list(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& n : v) s += (s.empty() ? "" : ",") + n;
  return s;
}

struct Setting {
  const char* key;
  const char* help;
  std::function<Status(GatewayConfig&, std::string_view)> set;
  std::function<std::string(const GatewayConfig&)> get;
};

std::string quote(const std::string& s) {
  std::ostringstream o;
  o << toml::value<std::string>(s);
  return o.str();
}

#define MS_SETTING(name, field, help, lo)                                                                \
  Setting {                                                                                              \
    #name, help, [](GatewayConfig& c, std::string_view v) { return parse_ms(#name, v, c.field, lo); },   \
        [](const GatewayConfig& c) { return std::to_string(c.field.count()); }                          \
  }
#define LONG_MS_SETTING(name, field, help, lo, hi)                                                      \
  Setting {                                                                                              \
    #name, help, [](GatewayConfig& c, std::string_view v) { return parse_ms(#name, v, c.field, lo, hi); }, \
        [](const GatewayConfig& c) { return std::to_string(c.field.count()); }                          \
  }
#define PATH_SETTING(name, field, help)                                                    \
  Setting {                                                                               \
    #name, help,                                                                          \
        [](GatewayConfig& c, std::string_view v) {                                        \
          if (v.empty()) c.field.reset(); /* "" means unset (as to_toml writes it) */     \
          else c.field = std::string(v);                                                  \
          return ok_status();                                                             \
        },                                                                                \
        [](const GatewayConfig& c) { return quote(c.field ? c.field->string() : ""); }    \
  }
#define LIST_SETTING(name, field, help)                                                                   \
  Setting {                                                                                              \
    #name, help, [](GatewayConfig& c, std::string_view v) { c.field = split_list(v); return ok_status(); }, \
        [](const GatewayConfig& c) { return quote(join_list(c.field)); }                                \
  }
#define STRING_SETTING(name, field, help)                                                             \
  Setting {                                                                                           \
    #name, help, [](GatewayConfig& c, std::string_view v) { c.field = std::string(v); return ok_status(); }, \
        [](const GatewayConfig& c) { return quote(c.field); }                                        \
  }
#define INT_SETTING(name, field, help, lo, hi)                                                             \
  Setting {                                                                                                \
    #name, help, [](GatewayConfig& c, std::string_view v) { return parse_int(#name, v, c.field, lo, hi); }, \
        [](const GatewayConfig& c) { return std::to_string(c.field); }                                     \
  }

// One entry per setting, in the order `agora gateway --help` and the
// config file's documentation list them: a table, longer than a screen
// because the settings are many, not because it does much.
const std::vector<Setting>& table() {
  static const std::vector<Setting> t = {
      {"data_dir", "Directory for the database, TLS files and state",
       [](GatewayConfig& c, std::string_view v) {
         if (v.empty()) return Status(bad("data_dir", "must not be empty"));
         c.data_dir = std::string(v);
         return ok_status();
       },
       [](const GatewayConfig& c) { return quote(c.data_dir.string()); }},
      {"listen", "HOST:PORT to listen on (clients and nodes)",
       [](GatewayConfig& c, std::string_view v) {
         if (v.empty()) return Status(bad("listen", "must not be empty"));
         c.listen = std::string(v);
         return ok_status();
       },
       [](const GatewayConfig& c) { return quote(c.listen); }},
      PATH_SETTING(tls_cert, tls_cert, "PEM certificate chain (else a local CA and certificate are created)"),
      PATH_SETTING(tls_key, tls_key, "PEM private key for tls_cert"),
      LIST_SETTING(tls_names, tls_names, "Extra host names/IPs (comma-separated) for the generated certificate"),
      PATH_SETTING(master_key, master_key, "Master secret file (key hashing, conversation keys, audit signing); default DATA_DIR/master.key"),
      INT_SETTING(default_rpm, default_rpm, "Requests per minute for keys without their own (0 = no limit)", 0,
                  1'000'000'000'000),
      INT_SETTING(default_tpm, default_tpm, "Tokens per minute for keys without their own (0 = no limit)", 0,
                  1'000'000'000'000),
      INT_SETTING(default_max_concurrent, default_max_concurrent,
                  "Requests in flight per key for keys without their own (0 = no limit)", 0, 1'000'000'000),
      INT_SETTING(default_completion_reservation, default_completion_reservation,
                  "Completion tokens reserved against tokens-per-minute when a request sets no max_tokens", 1,
                  1'000'000),
      INT_SETTING(max_body_bytes, max_body_bytes, "Largest request body accepted (413 above)", 1024, 1LL << 30),
      INT_SETTING(max_header_bytes, max_header_bytes, "Largest request header block (431 above)", 1024, 1 << 20),
      INT_SETTING(max_messages, limits.max_messages, "Most messages in one chat request", 1, 1 << 20),
      INT_SETTING(max_json_depth, limits.max_json_depth, "Deepest JSON nesting in a request body", 4, 1024),
      INT_SETTING(max_connections, max_connections, "Most open client connections", 1, 10'000'000),
      INT_SETTING(max_queue, max_queue, "Most requests waiting for a free slot", 0, 10'000'000),
      INT_SETTING(max_attempts, max_attempts, "Nodes tried for one request before output began", 1, 16),
      MS_SETTING(handshake_timeout_ms, handshake_timeout, "TLS and WebSocket handshake limit", 1),
      MS_SETTING(read_timeout_ms, read_timeout, "Time to read a whole request once it began", 1),
      MS_SETTING(idle_timeout_ms, idle_timeout, "Keep-alive connection closed after this long without a request", 1),
      MS_SETTING(write_timeout_ms, write_timeout, "Limit on one write to a slow client", 1),
      MS_SETTING(queue_timeout_ms, queue_timeout, "Wait for a free slot before 503", 1),
      MS_SETTING(job_idle_timeout_ms, job_idle_timeout, "A running job whose node sends nothing this long fails", 1),
      MS_SETTING(node_timeout_ms, node_timeout, "A node silent this long is evicted (pinged at half of it)", 100),
      LONG_MS_SETTING(conversation_ttl_ms, conversation_ttl,
                      "A stored conversation unused this long is deleted (0 = kept until deleted; at most a year)", 0,
                      365LL * 24 * 3600 * 1000),
      MS_SETTING(audit_checkpoint_interval_ms, audit_checkpoint_interval,
                 "How often new audit entries are signed (a checkpoint; also at shutdown)", 100),
      LONG_MS_SETTING(attestation_lifetime_ms, attestation_lifetime,
                      "How long an attestation verdict lasts (the node is re-challenged before it ends)", 1000,
                      30LL * 24 * 3600 * 1000),
      LONG_MS_SETTING(attestation_refresh_ms, attestation_refresh,
                      "Re-challenge a node this long before its verdict expires (at most half the lifetime)", 0,
                      30LL * 24 * 3600 * 1000),
      MS_SETTING(attestation_timeout_ms, attestation_timeout,
                 "A challenged node must answer with evidence within this, else it drops to standard", 100),
      MS_SETTING(attestation_retry_ms, attestation_retry,
                 "After a failed attestation, challenge again after this (doubling each time, at most an hour)", 100),
      PATH_SETTING(nvidia_root_cert, nvidia_root_cert,
                   "PEM root certificate NVIDIA attestation results (NRAS) must chain to; enables confidential"),
      LIST_SETTING(nvidia_hw_models, nvidia_hw_models,
                   "GPU models (hwmodel claims, comma-separated) accepted for confidential"),
      STRING_SETTING(nvidia_min_driver, nvidia_min_driver, "Oldest GPU driver version accepted for confidential"),
      PATH_SETTING(play_integrity_decryption_key, play_integrity_decryption_key,
                   "File with the Play Integrity decryption key (base64, from the Play Console); enables verified"),
      PATH_SETTING(play_integrity_verification_key, play_integrity_verification_key,
                   "File with the Play Integrity verification key (base64 DER or PEM, from the Play Console)"),
      STRING_SETTING(play_integrity_package, play_integrity_package,
                     "Android package name Play Integrity tokens must be for"),
      STRING_SETTING(play_integrity_cert_sha256, play_integrity_cert_sha256,
                     "The app signing certificate digest Play Integrity tokens must list (as Google reports it)"),
      INT_SETTING(play_integrity_strong, play_integrity_strong,
                  "1: require MEETS_STRONG_INTEGRITY (hardware-backed) instead of MEETS_DEVICE_INTEGRITY", 0, 1),
  };
  return t;
}

const Setting* find(std::string_view key) {
  for (const auto& s : table()) {
    if (key == s.key) return &s;
  }
  return nullptr;
}

}  // namespace

const std::vector<SettingInfo>& settings() {
  static const std::vector<SettingInfo> v = [] {
    std::vector<SettingInfo> out;
    for (const auto& s : table()) out.push_back({s.key, s.help});
    return out;
  }();
  return v;
}

Status apply_setting(GatewayConfig& config, std::string_view key, std::string_view value) {
  const Setting* s = find(key);
  if (!s) return make_error(Errc::invalid_argument, "unknown setting '" + std::string(key) + "'");
  return s->set(config, value);
}

Status apply_environment(GatewayConfig& config, const std::function<const char*(const char*)>& getenv_fn) {
  for (const auto& s : table()) {
    std::string name = "AGORA_";
    for (const char* p = s.key; *p; ++p) name += static_cast<char>(std::toupper(static_cast<unsigned char>(*p)));
    if (const char* v = getenv_fn(name.c_str())) {
      if (Status st = s.set(config, v); !st) {
        return make_error(Errc::invalid_argument, name + ": " + st.error().message);
      }
    }
  }
  return ok_status();
}

Status apply_toml_file(GatewayConfig& config, const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return make_error(Errc::not_found, "cannot read config file " + path.string());
  toml::table doc;
  try {
    doc = toml::parse(in, path.string());
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    msg << path.string() << ":" << e.source().begin.line << ": " << e.description();
    return make_error(Errc::invalid_argument, msg.str());
  }
  auto apply_table = [&](const toml::table& t) -> Status {
    for (const auto& [k, v] : t) {
      const std::string key(k.str());
      if (v.is_table()) {
        if (key == "gateway") continue;
        return make_error(Errc::invalid_argument, path.string() + ": unknown section [" + key + "]");
      }
      std::string text;
      if (auto s = v.value<std::string>(); s && v.is_string()) text = *s;
      else if (auto i = v.value<int64_t>(); i && v.is_integer()) text = std::to_string(*i);
      else if (v.is_array()) {
        for (const auto& e : *v.as_array()) {
          if (auto s2 = e.value<std::string>()) text += (text.empty() ? "" : ",") + *s2;
        }
      } else {
        return make_error(Errc::invalid_argument, path.string() + ": '" + key + "' must be a string or an integer");
      }
      if (Status st = apply_setting(config, key, text); !st) {
        return make_error(Errc::invalid_argument, path.string() + ": " + st.error().message);
      }
    }
    return ok_status();
  };
  if (Status st = apply_table(doc); !st) return st;
  if (auto* g = doc["gateway"].as_table()) return apply_table(*g);
  return ok_status();
}

std::string to_toml(const GatewayConfig& config) {
  std::string out;
  for (const auto& s : table()) {
    out += "# ";
    out += s.help;
    out += "\n";
    out += s.key;
    out += " = ";
    out += s.get(config);
    out += "\n";
  }
  return out;
}

}  // namespace agora::gateway
