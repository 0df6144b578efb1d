// `agora gateway`: serve the OpenAI-compatible API and accept provider nodes.
#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>

#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>

#include "cli/commands.h"
#include "cli/signals.h"
#include "common/file.h"
#include "gateway/config.h"
#include "gateway/gateway.h"
#include "store/sqlite_store.h"

namespace agora::cli {
namespace {

struct GatewayArgs {
  std::string config_file;
  std::vector<std::string> sets;
  std::map<std::string, std::string> flags;  // key -> value, only flags given
  bool print_config = false;
};

void write_state_file(const gateway::GatewayConfig& cfg, const gateway::Gateway& g) {
  boost::json::object o{{"base_url", g.base_url()},
                        {"ca_cert", g.ca_cert().empty() ? "" : std::filesystem::absolute(g.ca_cert()).string()},
                        {"ca_fingerprint", g.ca_fingerprint()},
                        {"node_url", "wss" + g.base_url().substr(5) + "/v1/node"},
                        {"pid", static_cast<int64_t>(::getpid())}};
  if (Status st = write_file_atomic(cfg.data_dir / "gateway.json", boost::json::serialize(o) + "\n", 0644); !st) {
    fail(st.error().message);
  }
}

// Each connection (client or node) is a file descriptor, and the usual soft
// limit (1024) is far below max_connections: raise the soft limit to the
// hard one, as servers do. Warns when max_connections still does not fit.
void raise_open_file_limit(size_t max_connections) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit want = rl;
    want.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &want) == 0) rl = want;
  }
  constexpr rlim_t kSpare = 64;  // listener, database, TLS files, logs
  if (rl.rlim_cur != RLIM_INFINITY && max_connections + kSpare > rl.rlim_cur) {
    std::fprintf(stderr,
                 "agora gateway: warning: max_connections is %zu but the open-file limit is %llu (hard limit "
                 "%llu): connections past about %llu will be refused; raise the hard limit (ulimit -Hn, "
                 "systemd LimitNOFILE=)\n",
                 max_connections, static_cast<unsigned long long>(rl.rlim_cur),
                 static_cast<unsigned long long>(rl.rlim_max),
                 static_cast<unsigned long long>(rl.rlim_cur > kSpare ? rl.rlim_cur - kSpare : 0));
  }
}

void run_gateway(const GatewayArgs& a) {
  gateway::GatewayConfig cfg;
  if (Status st = gateway::apply_environment(cfg, [](const char* n) { return std::getenv(n); }); !st) {
    fail(st.error().message);
  }
  if (!a.config_file.empty()) {
    if (Status st = gateway::apply_toml_file(cfg, a.config_file); !st) fail(st.error().message);
  }
  for (const auto& s : a.sets) {
    auto eq = s.find('=');
    if (eq == std::string::npos) fail("--set expects KEY=VALUE, got '" + s + "'");
    if (Status st = gateway::apply_setting(cfg, s.substr(0, eq), s.substr(eq + 1)); !st) fail(st.error().message);
  }
  for (const auto& [k, v] : a.flags) {
    if (Status st = gateway::apply_setting(cfg, k, v); !st) fail(st.error().message);
  }
  if (a.print_config) {
    std::fputs(gateway::to_toml(cfg).c_str(), stdout);
    return;
  }

  raise_open_file_limit(cfg.max_connections);
  boost::asio::io_context io(1);
  auto g = gateway::make_gateway(io, cfg);
  if (Status st = g->start(); !st) fail(st.error().message);
  write_state_file(cfg, *g);
  std::printf("agora gateway listening on %s\n", g->base_url().c_str());
  if (!g->ca_cert().empty()) {
    std::printf("  CA certificate: %s\n  CA SHA-256:     %s\n", std::filesystem::absolute(g->ca_cert()).c_str(),
                g->ca_fingerprint().c_str());
  }
  std::printf("  nodes connect to: wss%s/v1/node\n  database: %s\n", g->base_url().substr(5).c_str(),
              store::database_path(cfg.data_dir).c_str());
  std::fflush(stdout);
  on_stop_signals(
      io,
      [&] {
        std::fprintf(stderr, "agora gateway: stopping (finishing running requests; Ctrl-C again to force)\n");
        g->stop(std::chrono::seconds(10));
      });
  io.run();
  std::fprintf(stderr, "agora gateway: stopped\n");
}

}  // namespace

void add_gateway_command(CLI::App& app) {
  auto a = std::make_shared<GatewayArgs>();
  auto* cmd = app.add_subcommand(
      "gateway",
      "Run the gateway: the OpenAI-compatible HTTPS API for clients and the WSS endpoint provider nodes connect to. "
      "Settings come from flags, then --config (TOML), then AGORA_<KEY> environment variables, then defaults.");
  auto flag = [&](const char* name, const char* key, const char* help) {
    cmd->add_option_function<std::string>(
        name, [a, key](const std::string& v) { a->flags[key] = v; }, help);
  };
  flag("--data-dir", "data_dir", "Directory for the database (agora.db), TLS files and state [agora-data]");
  flag("--listen", "listen", "HOST:PORT for clients and nodes; port 0 picks a free one [127.0.0.1:8443]");
  flag("--tls-cert", "tls_cert", "PEM certificate chain; without it a local CA + certificate are made in DATA_DIR/tls");
  flag("--tls-key", "tls_key", "PEM private key for --tls-cert");
  flag("--tls-names", "tls_names", "Extra names/IPs (comma-separated) for the generated certificate");
  flag("--max-body-bytes", "max_body_bytes", "Largest request body (413 above) [4194304]");
  flag("--queue-timeout-ms", "queue_timeout_ms", "How long a request waits for a free slot before 503 [30000]");
  flag("--node-timeout-ms", "node_timeout_ms", "Evict a node silent this long [15000]");
  cmd->add_option("--config", a->config_file, "TOML file with settings (top level or under [gateway])");
  std::string keys;
  for (const auto& s : gateway::settings()) keys += "\n    " + s.key + ": " + s.help;
  cmd->add_option("--set", a->sets, "KEY=VALUE for any setting (repeatable). Keys:" + keys);
  cmd->add_flag("--print-config", a->print_config, "Print the effective settings as TOML and exit");
  cmd->callback([a] { run_gateway(*a); });
}

}  // namespace agora::cli
