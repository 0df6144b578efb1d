// Gateway configuration: one key per setting, applied from the environment,
// a TOML file and flags, and printed back as TOML.
#include "gateway/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cctype>
#include <fstream>
#include <optional>
#include <map>
#include <set>
#include <string>

#include "support/test_models.h"

namespace agora::gateway {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::filesystem::path write_file(const std::string& name, const std::string& text) {
  const auto path = agora::testing::temp_dir() / name;
  std::ofstream out(path, std::ios::binary);
  out << text;
  out.close();
  EXPECT_TRUE(out.good()) << path;
  return path;
}

// Applies a setting that must be refused; returns the message.
std::string refused(GatewayConfig& c, std::string_view key, std::string_view value) {
  const Status st = apply_setting(c, key, value);
  EXPECT_FALSE(st.ok()) << key << "=" << value;
  if (st.ok()) return {};
  EXPECT_EQ(st.error().code, Errc::invalid_argument);
  return st.error().message;
}

// A getenv stand-in backed by a map; records what was asked for.
struct FakeEnv {
  std::map<std::string, std::string> vars;
  std::set<std::string> asked;
  std::function<const char*(const char*)> fn() {
    return [this](const char* name) -> const char* {
      asked.insert(name);
      auto it = vars.find(name);
      return it == vars.end() ? nullptr : it->second.c_str();
    };
  }
};

// Paths compared and printed as text.
std::string opt_path(const std::optional<std::filesystem::path>& p) { return p ? "'" + p->string() + "'" : "<unset>"; }

void expect_same_config(const GatewayConfig& a, const GatewayConfig& b) {
  EXPECT_EQ(a.data_dir.string(), b.data_dir.string());
  EXPECT_EQ(a.listen, b.listen);
  EXPECT_EQ(opt_path(a.tls_cert), opt_path(b.tls_cert));
  EXPECT_EQ(opt_path(a.tls_key), opt_path(b.tls_key));
  EXPECT_EQ(a.tls_names, b.tls_names);
  EXPECT_EQ(a.max_body_bytes, b.max_body_bytes);
  EXPECT_EQ(a.max_header_bytes, b.max_header_bytes);
  EXPECT_EQ(a.limits.max_messages, b.limits.max_messages);
  EXPECT_EQ(a.limits.max_json_depth, b.limits.max_json_depth);
  EXPECT_EQ(a.limits.max_stop, b.limits.max_stop);
  EXPECT_EQ(a.handshake_timeout, b.handshake_timeout);
  EXPECT_EQ(a.read_timeout, b.read_timeout);
  EXPECT_EQ(a.idle_timeout, b.idle_timeout);
  EXPECT_EQ(a.write_timeout, b.write_timeout);
  EXPECT_EQ(a.max_connections, b.max_connections);
  EXPECT_EQ(a.queue_timeout, b.queue_timeout);
  EXPECT_EQ(a.max_queue, b.max_queue);
  EXPECT_EQ(a.max_attempts, b.max_attempts);
  EXPECT_EQ(a.job_idle_timeout, b.job_idle_timeout);
  EXPECT_EQ(a.node_timeout, b.node_timeout);
  EXPECT_EQ(a.conversation_ttl, b.conversation_ttl);
  EXPECT_EQ(a.audit_checkpoint_interval, b.audit_checkpoint_interval);
}

// Every setting changed from its default.
GatewayConfig non_default_config() {
  GatewayConfig c;
  c.data_dir = "/var/lib/agora \"quoted\"";
  c.listen = "[::]:9443";
  c.tls_cert = "/etc/agora/cert.pem";
  c.tls_key = "/etc/agora/key.pem";
  c.tls_names = {"gw.example.com", "10.0.0.1"};
  c.max_body_bytes = 1 << 20;
  c.max_header_bytes = 8192;
  c.limits.max_messages = 100;
  c.limits.max_json_depth = 10;
  c.handshake_timeout = 1001ms;
  c.read_timeout = 1002ms;
  c.idle_timeout = 1003ms;
  c.write_timeout = 1004ms;
  c.max_connections = 77;
  c.queue_timeout = 1005ms;
  c.max_queue = 0;
  c.max_attempts = 16;
  c.job_idle_timeout = 1006ms;
  c.node_timeout = 100ms;
  c.conversation_ttl = 30LL * 24 * 3600 * 1000ms;
  c.audit_checkpoint_interval = 1007ms;
  return c;
}

// ---- apply_setting ----

TEST(ApplySetting, StringSettings) {
  GatewayConfig c;
  EXPECT_TRUE(apply_setting(c, "data_dir", "/tmp/agora").ok());
  EXPECT_EQ(c.data_dir.string(), "/tmp/agora");
  EXPECT_TRUE(apply_setting(c, "listen", "0.0.0.0:443").ok());
  EXPECT_EQ(c.listen, "0.0.0.0:443");
  EXPECT_THAT(refused(c, "data_dir", ""), HasSubstr("data_dir"));
  EXPECT_THAT(refused(c, "listen", ""), HasSubstr("listen"));
  EXPECT_EQ(c.listen, "0.0.0.0:443");  // a refused value changes nothing
}

TEST(ApplySetting, OptionalPathSettings) {
  GatewayConfig c;
  EXPECT_FALSE(c.tls_cert.has_value());
  EXPECT_FALSE(c.tls_key.has_value());
  EXPECT_TRUE(apply_setting(c, "tls_cert", "/etc/cert.pem").ok());
  EXPECT_TRUE(apply_setting(c, "tls_key", "/etc/key.pem").ok());
  EXPECT_EQ(opt_path(c.tls_cert), "'/etc/cert.pem'");
  EXPECT_EQ(opt_path(c.tls_key), "'/etc/key.pem'");
}

TEST(ApplySetting, ListSetting) {
  GatewayConfig c;
  EXPECT_TRUE(apply_setting(c, "tls_names", "a.example,10.0.0.2,,b").ok());
  EXPECT_THAT(c.tls_names, ElementsAre("a.example", "10.0.0.2", "b"));
  EXPECT_TRUE(apply_setting(c, "tls_names", "only").ok());  // replaces, not appends
  EXPECT_THAT(c.tls_names, ElementsAre("only"));
  EXPECT_TRUE(apply_setting(c, "tls_names", "").ok());
  EXPECT_TRUE(c.tls_names.empty());
}

TEST(ApplySetting, IntegerSettings) {
  GatewayConfig c;
  EXPECT_TRUE(apply_setting(c, "max_body_bytes", "2048").ok());
  EXPECT_EQ(c.max_body_bytes, 2048u);
  EXPECT_TRUE(apply_setting(c, "max_header_bytes", "4096").ok());
  EXPECT_EQ(c.max_header_bytes, 4096u);
  EXPECT_TRUE(apply_setting(c, "max_messages", "10").ok());
  EXPECT_EQ(c.limits.max_messages, 10u);
  EXPECT_TRUE(apply_setting(c, "max_json_depth", "4").ok());
  EXPECT_EQ(c.limits.max_json_depth, 4u);
  EXPECT_TRUE(apply_setting(c, "max_connections", "5").ok());
  EXPECT_EQ(c.max_connections, 5u);
  EXPECT_TRUE(apply_setting(c, "max_queue", "0").ok());
  EXPECT_EQ(c.max_queue, 0u);
  EXPECT_TRUE(apply_setting(c, "max_attempts", "16").ok());
  EXPECT_EQ(c.max_attempts, 16);
  EXPECT_TRUE(apply_setting(c, "max_body_bytes", "1073741824").ok());  // 1 GiB: the top of the range
  EXPECT_EQ(c.max_body_bytes, size_t{1} << 30);
}

TEST(ApplySetting, MillisecondSettings) {
  GatewayConfig c;
  const std::pair<const char*, std::chrono::milliseconds GatewayConfig::*> keys[] = {
      {"handshake_timeout_ms", &GatewayConfig::handshake_timeout},
      {"read_timeout_ms", &GatewayConfig::read_timeout},
      {"idle_timeout_ms", &GatewayConfig::idle_timeout},
      {"write_timeout_ms", &GatewayConfig::write_timeout},
      {"queue_timeout_ms", &GatewayConfig::queue_timeout},
      {"job_idle_timeout_ms", &GatewayConfig::job_idle_timeout},
      {"node_timeout_ms", &GatewayConfig::node_timeout},
  };
  int64_t v = 1234;
  for (const auto& [key, field] : keys) {
    ++v;
    EXPECT_TRUE(apply_setting(c, key, std::to_string(v)).ok()) << key;
    EXPECT_EQ((c.*field).count(), v) << key;
    EXPECT_THAT(refused(c, key, "0"), HasSubstr("out of range")) << key;
    EXPECT_THAT(refused(c, key, "86400001"), HasSubstr("out of range")) << key;
    EXPECT_THAT(refused(c, key, "5s"), HasSubstr("not an integer")) << key;
    EXPECT_EQ((c.*field).count(), v) << key;
  }
  EXPECT_TRUE(apply_setting(c, "queue_timeout_ms", "86400000").ok());
  EXPECT_EQ(c.queue_timeout, 86'400'000ms);
  EXPECT_THAT(refused(c, "node_timeout_ms", "99"), HasSubstr("node_timeout_ms"));
  EXPECT_TRUE(apply_setting(c, "node_timeout_ms", "100").ok());
}

TEST(ApplySetting, UnknownKeyIsNamed) {
  GatewayConfig c;
  const std::string msg = refused(c, "max_bodies", "1");
  EXPECT_THAT(msg, HasSubstr("unknown"));
  EXPECT_THAT(msg, HasSubstr("max_bodies"));
  EXPECT_THAT(refused(c, "MAX_QUEUE", "1"), HasSubstr("MAX_QUEUE"));  // keys are case-sensitive
  EXPECT_THAT(refused(c, "", "1"), HasSubstr("unknown"));
}

TEST(ApplySetting, OutOfRangeAndNonNumbersNameTheKey) {
  GatewayConfig c;
  struct Case {
    const char* key;
    const char* value;
    const char* why;
  };
  const Case cases[] = {
      {"max_body_bytes", "1023", "out of range"},
      {"max_body_bytes", "1073741825", "out of range"},
      {"max_header_bytes", "1048577", "out of range"},
      {"max_messages", "0", "out of range"},
      {"max_json_depth", "3", "out of range"},
      {"max_json_depth", "1025", "out of range"},
      {"max_connections", "0", "out of range"},
      {"max_queue", "-1", "out of range"},
      {"max_attempts", "0", "out of range"},
      {"max_attempts", "17", "out of range"},
      {"max_attempts", "99999999999999999999", "not an integer"},
      {"max_attempts", "", "not an integer"},
      {"max_attempts", "3 ", "not an integer"},
      {"max_attempts", " 3", "not an integer"},
      {"max_attempts", "0x3", "not an integer"},
      {"max_attempts", "2.5", "not an integer"},
      {"max_queue", "ten", "not an integer"},
  };
  for (const auto& k : cases) {
    const std::string msg = refused(c, k.key, k.value);
    EXPECT_THAT(msg, HasSubstr(k.key)) << k.value;
    EXPECT_THAT(msg, HasSubstr(k.why)) << k.key << "=" << k.value;
  }
  const GatewayConfig defaults;
  expect_same_config(c, defaults);  // nothing refused was applied
}

TEST(Settings, ListsEveryKeyWithHelp) {
  std::set<std::string> keys;
  for (const auto& s : settings()) {
    EXPECT_FALSE(s.help.empty()) << s.key;
    EXPECT_TRUE(keys.insert(s.key).second) << "duplicate key " << s.key;
  }
  for (const char* k :
       {"data_dir", "listen", "tls_cert", "tls_key", "tls_names", "max_body_bytes", "max_header_bytes", "max_messages",
        "max_json_depth", "max_connections", "max_queue", "max_attempts", "handshake_timeout_ms", "read_timeout_ms",
        "idle_timeout_ms", "write_timeout_ms", "queue_timeout_ms", "job_idle_timeout_ms", "node_timeout_ms"}) {
    EXPECT_TRUE(keys.contains(k)) << k;
  }
  const std::string toml = to_toml(GatewayConfig{});
  for (const auto& k : keys) EXPECT_THAT(toml, HasSubstr("\n" + k + " = ")) << k;
}

// ---- apply_environment ----

TEST(ApplyEnvironment, ReadsAgoraVariables) {
  FakeEnv env;
  env.vars = {{"AGORA_LISTEN", "0.0.0.0:7000"},
              {"AGORA_QUEUE_TIMEOUT_MS", "2500"},
              {"AGORA_TLS_NAMES", "x.example,y.example"},
              {"AGORA_MAX_JSON_DEPTH", "64"},
              {"AGORA_DATA_DIR", "/srv/agora"},
              {"LISTEN", "ignored"},
              {"agora_max_queue", "1"}};
  GatewayConfig c;
  ASSERT_TRUE(apply_environment(c, env.fn()).ok());
  EXPECT_EQ(c.listen, "0.0.0.0:7000");
  EXPECT_EQ(c.queue_timeout, 2500ms);
  EXPECT_THAT(c.tls_names, ElementsAre("x.example", "y.example"));
  EXPECT_EQ(c.limits.max_json_depth, 64u);
  EXPECT_EQ(c.data_dir.string(), "/srv/agora");
  EXPECT_EQ(c.max_queue, GatewayConfig{}.max_queue);
  // It asks for exactly AGORA_<KEY> for every key.
  std::set<std::string> want;
  for (const auto& s : settings()) {
    std::string name = "AGORA_";
    for (char ch : s.key) name += static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    want.insert(name);
  }
  EXPECT_EQ(env.asked, want);
}

TEST(ApplyEnvironment, EmptyEnvironmentChangesNothing) {
  FakeEnv env;
  GatewayConfig c;
  ASSERT_TRUE(apply_environment(c, env.fn()).ok());
  expect_same_config(c, GatewayConfig{});
}

TEST(ApplyEnvironment, BadValueNamesTheVariable) {
  FakeEnv env;
  env.vars = {{"AGORA_MAX_ATTEMPTS", "0"}};
  GatewayConfig c;
  const Status st = apply_environment(c, env.fn());
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::invalid_argument);
  EXPECT_THAT(st.error().message, HasSubstr("AGORA_MAX_ATTEMPTS"));
  EXPECT_THAT(st.error().message, HasSubstr("out of range"));
}

// ---- apply_toml_file ----

TEST(ApplyTomlFile, TopLevelKeys) {
  const auto path = write_file("top.toml",
                               "# comment\n"
                               "listen = \"0.0.0.0:9000\"\n"
                               "queue_timeout_ms = 5000\n"
                               "tls_names = [\"a.example\", \"b.example\"]\n"
                               "max_json_depth = 12\n");
  GatewayConfig c;
  const Status st = apply_toml_file(c, path);
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_EQ(c.listen, "0.0.0.0:9000");
  EXPECT_EQ(c.queue_timeout, 5000ms);
  EXPECT_THAT(c.tls_names, ElementsAre("a.example", "b.example"));
  EXPECT_EQ(c.limits.max_json_depth, 12u);
  EXPECT_EQ(c.max_queue, GatewayConfig{}.max_queue);
}

TEST(ApplyTomlFile, GatewaySection) {
  const auto path = write_file("section.toml",
                               "listen = \"top:1\"\n"
                               "[gateway]\n"
                               "listen = \"section:2\"\n"
                               "max_queue = 7\n"
                               "data_dir = \"/data\"\n");
  GatewayConfig c;
  const Status st = apply_toml_file(c, path);
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_EQ(c.listen, "section:2");  // the section is applied after the top level
  EXPECT_EQ(c.max_queue, 7u);
  EXPECT_EQ(c.data_dir.string(), "/data");
}

TEST(ApplyTomlFile, SyntaxErrorReportsTheLine) {
  const auto path = write_file("syntax.toml",
                               "listen = \"a:1\"\n"
                               "max_queue = 3\n"
                               "queue_timeout_ms = = 5\n");
  GatewayConfig c;
  const Status st = apply_toml_file(c, path);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::invalid_argument);
  EXPECT_THAT(st.error().message, HasSubstr(path.string() + ":3:"));
}

TEST(ApplyTomlFile, BadKeysAndValues) {
  struct Case {
    const char* text;
    const char* want;
  };
  const Case cases[] = {
      {"bogus_key = 1\n", "bogus_key"},
      {"[gateway]\nbogus_key = \"x\"\n", "bogus_key"},
      {"[node]\nlisten = \"x\"\n", "[node]"},
      {"max_queue = true\n", "max_queue"},
      {"queue_timeout_ms = 1.5\n", "queue_timeout_ms"},
      {"max_attempts = 99\n", "out of range"},
      {"max_attempts = \"many\"\n", "not an integer"},
      {"listen = \"\"\n", "listen"},
  };
  int i = 0;
  for (const auto& k : cases) {
    const auto path = write_file("bad" + std::to_string(i++) + ".toml", k.text);
    GatewayConfig c;
    const Status st = apply_toml_file(c, path);
    ASSERT_FALSE(st.ok()) << k.text;
    EXPECT_EQ(st.error().code, Errc::invalid_argument) << k.text;
    EXPECT_THAT(st.error().message, HasSubstr(k.want)) << k.text;
    EXPECT_THAT(st.error().message, HasSubstr(path.string())) << k.text;
  }
}

TEST(ApplyTomlFile, MissingFileIsNotFound) {
  GatewayConfig c;
  const Status st = apply_toml_file(c, agora::testing::temp_dir() / "does-not-exist.toml");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::not_found);
}

// ---- precedence and round trip ----

TEST(Config, LaterSourcesWinWhenAppliedEnvThenTomlThenFlags) {
  FakeEnv env;
  env.vars = {{"AGORA_LISTEN", "env:1"}, {"AGORA_MAX_QUEUE", "11"}, {"AGORA_MAX_ATTEMPTS", "2"}};
  const auto path = write_file("precedence.toml",
                               "listen = \"toml:2\"\n"
                               "max_queue = 22\n"
                               "queue_timeout_ms = 2222\n");
  GatewayConfig c;
  ASSERT_TRUE(apply_environment(c, env.fn()).ok());
  ASSERT_TRUE(apply_toml_file(c, path).ok());
  ASSERT_TRUE(apply_setting(c, "listen", "flag:3").ok());
  EXPECT_EQ(c.listen, "flag:3");          // flag over toml over env
  EXPECT_EQ(c.max_queue, 22u);            // toml over env
  EXPECT_EQ(c.max_attempts, 2);           // env only
  EXPECT_EQ(c.queue_timeout, 2222ms);     // toml only
  EXPECT_EQ(c.node_timeout, GatewayConfig{}.node_timeout);  // default
}

TEST(Config, ToTomlRoundTripsEverySetting) {
  const GatewayConfig original = non_default_config();
  const std::string text = to_toml(original);
  const auto path = write_file("roundtrip.toml", text);
  GatewayConfig back;
  const Status st = apply_toml_file(back, path);
  ASSERT_TRUE(st.ok()) << st.error().message << "\n" << text;
  expect_same_config(back, original);
  EXPECT_EQ(to_toml(back), text);
}

// `agora gateway --print-config > f.toml` then `--config f.toml` must mean
// the same configuration: in particular, no TLS files appear from nowhere.
TEST(Config, DefaultConfigRoundTripsThroughToToml) {
  const GatewayConfig original;
  const std::string text = to_toml(original);
  const auto path = write_file("defaults.toml", text);
  GatewayConfig back;
  const Status st = apply_toml_file(back, path);
  ASSERT_TRUE(st.ok()) << st.error().message << "\n" << text;
  expect_same_config(back, original);
  EXPECT_FALSE(back.tls_cert.has_value()) << "tls_cert became " << opt_path(back.tls_cert);
  EXPECT_FALSE(back.tls_key.has_value()) << "tls_key became " << opt_path(back.tls_key);
}

}  // namespace
}  // namespace agora::gateway
