// `agora up`: the main job. Starts a whole local marketplace in one process:
// a gateway (HTTPS on loopback, its own CA), N provider nodes serving a model
// (the embedded default is synthesised on first use), an API key, and prints
// everything needed to call it with curl or an OpenAI SDK. Ctrl-C stops it.
#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli/commands.h"
#include "cli/progress.h"
#include "cli/signals.h"
#include "common/file.h"
#include "crypto/master_secret.h"
#include "crypto/random.h"
#include "store/credentials.h"
#include "engine/llama_engine.h"
#include "engine/synth.h"
#include "gateway/gateway.h"
#include "node/node.h"
#include "protocol/agreement.h"
#include "store/sqlite_store.h"

namespace agora::cli {
namespace {

namespace fs = std::filesystem;

struct UpArgs {
  std::string data_dir = "agora-data";
  uint16_t port = 8443;
  std::string model;
  std::string models_dir = "models";
  int32_t nodes = 1;
  int32_t slots = 4;
  int32_t threads = 0;
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Secrets (the provider token, up.json with the API key): owner-only from
// the moment the file exists.
void write_private(const fs::path& p, const std::string& text) {
  if (Status st = write_file_atomic(p, text, 0600); !st) fail(st.error().message);
}

// The provider token and API key of the local marketplace are kept in the
// data dir (owner-only) and reused while they are still valid, so repeated
// `agora up` runs do not pile up credentials.
struct Credentials {
  std::string provider_token;
  std::string api_key;
};

Credentials ensure_credentials(const fs::path& data_dir) {
  auto db = store::open_sqlite_store(store::database_path(data_dir));
  if (!db) fail(db.error().to_string());
  auto& s = **db;
  auto master = crypto::MasterSecret::load(crypto::default_master_secret_path(data_dir), /*create=*/true);
  if (!master) fail(master.error().to_string());
  const auto& m = **master;
  const int64_t now = SystemClock::instance().unix_millis();
  Credentials c;

  const fs::path token_file = data_dir / "up-provider.token";
  auto providers = s.list_providers();
  if (!providers) fail(providers.error().to_string());
  if (fs::exists(token_file)) {
    std::string t = read_file(token_file);
    while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
    const std::string hmac = store::credential_hash(m, t, store::kHashHmac);
    const std::string legacy = store::credential_hash(m, t, store::kHashLegacy);
    for (const auto& p : *providers) {
      if (p.hash == (p.hash_scheme == store::kHashLegacy ? legacy : hmac) && !p.revoked_ms) c.provider_token = t;
    }
  }
  if (c.provider_token.empty()) {
    auto p = store::issue_provider_token(s, m, "local-" + crypto::random_base62(6), now);
    if (!p) fail(p.error().to_string());
    c.provider_token = p->secret;
    write_private(token_file, c.provider_token + "\n");
  }

  const fs::path up_json = data_dir / "up.json";
  if (fs::exists(up_json)) {
    boost::system::error_code ec;
    auto v = boost::json::parse(read_file(up_json), ec);
    if (!ec && v.is_object() && v.as_object().contains("api_key") && v.as_object().at("api_key").is_string()) {
      std::string k(v.as_object().at("api_key").as_string());
      auto found = store::find_api_key(s, m, k);  // by its HMAC (or a pre-schema-3 SHA-256)
      if (found && found->role == "client" && found->active(now)) c.api_key = k;
    }
  }
  if (c.api_key.empty()) {
    store::KeySpec spec;
    spec.name = "agora up";
    auto k = store::issue_api_key(s, m, spec, now);
    if (!k) fail(k.error().to_string());
    c.api_key = k->secret;
  }
  return c;
}

fs::path ensure_model(const UpArgs& a) {
  if (!a.model.empty()) {
    if (!fs::exists(a.model)) fail("model file not found: " + a.model);
    return a.model;
  }
  const fs::path model = fs::path(a.models_dir) / "tiny.gguf";
  if (!fs::exists(model)) {
    std::fprintf(stderr, "agora up: synthesising the default model %s (random weights, real Llama-3 tokenizer)\n",
                 model.c_str());
    engine::SynthOptions o;
    o.preset = "tiny";
    o.out = model;
    Progress progress("synth tiny");
    o.progress = [&](const engine::SynthProgress& p) { progress.update(p.stage, p.done, p.total); };
    auto r = engine::synthesize_model(o);
    progress.finish();
    if (!r) fail(r.error().to_string());
  }
  return model;
}

void print_welcome(const std::string& base_url, const std::string& key, const fs::path& ca, const std::string& model,
                   const std::string& fingerprint, int nodes) {
  std::printf(
      "\nAgora is up: a gateway and %d provider node(s) serving '%s'.\n\n"
      "  base URL  %s/v1\n"
      "  API key   %s\n"
      "  CA cert   %s\n"
      "            (SHA-256 %s)\n\n"
      "curl:\n"
      "  curl --cacert %s %s/v1/chat/completions \\\n"
      "    -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' \\\n"
      "    -d '{\"model\": \"%s\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello!\"}], \"max_tokens\": 32}'\n\n"
      "OpenAI SDK (Node.js):\n"
      "  NODE_EXTRA_CA_CERTS=%s node -e '\n"
      "    const OpenAI = require(\"openai\");\n"
      "    const c = new OpenAI({ baseURL: \"%s/v1\", apiKey: \"%s\" });\n"
      "    c.chat.completions.create({ model: \"%s\", messages: [{ role: \"user\", content: \"Hello!\" }], max_tokens: 32 })\n"
      "      .then(r => console.log(r.choices[0].message.content));'\n\n"
      "OpenAI SDK (Python):\n"
      "  SSL_CERT_FILE=%s python3 -c 'from openai import OpenAI; c = OpenAI(base_url=\"%s/v1\", api_key=\"%s\"); "
      "print(c.chat.completions.create(model=\"%s\", messages=[{\"role\": \"user\", \"content\": \"Hello!\"}], "
      "max_tokens=32).choices[0].message.content)'\n\n"
      "Random weights: expect gibberish, served for real. Press Ctrl-C to stop.\n",
      nodes, model.c_str(), base_url.c_str(), key.c_str(), ca.c_str(), fingerprint.c_str(), ca.c_str(),
      base_url.c_str(), key.c_str(), model.c_str(), ca.c_str(), base_url.c_str(), key.c_str(), model.c_str(),
      ca.c_str(), base_url.c_str(), key.c_str(), model.c_str());
  std::fflush(stdout);
}

void run_up(const UpArgs& a) {
  const fs::path data_dir = a.data_dir;
  std::error_code ec;
  fs::create_directories(data_dir, ec);
  if (ec) fail("cannot create " + data_dir.string() + ": " + ec.message());
  const fs::path model_path = ensure_model(a);
  const Credentials creds = ensure_credentials(data_dir);

  boost::asio::io_context io(1);
  gateway::GatewayConfig gc;
  gc.data_dir = data_dir;
  gc.listen = "127.0.0.1:" + std::to_string(a.port);
  auto g = gateway::make_gateway(io, gc);
  if (Status st = g->start(); !st) {
    std::string msg = st.error().message;
    if (msg.find("in use") != std::string::npos) msg += " (another `agora up`? choose another with --port)";
    fail(msg);
  }
  const fs::path ca = fs::absolute(g->ca_cert());
  const std::string node_url = "wss" + g->base_url().substr(5);

  // Nodes: each with its own engine on the same (memory-mapped) file.
  std::vector<std::shared_ptr<node::Node>> nodes;
  const std::string model_name = node::model_name_for(model_path.string());
  auto connected = std::make_shared<int>(0);
  bool announced = false;
  for (int i = 0; i < a.nodes; ++i) {
    engine::EngineOptions eo;
    eo.model_path = model_path;
    eo.slots = a.slots;
    eo.threads = a.threads;
    Progress progress("load " + model_name);
    eo.hash_progress = [&](uint64_t done, uint64_t total) { progress.update("sha256", done, total); };
    auto eng = engine::open_llama_engine(eo);
    progress.finish();
    if (!eng) fail("cannot load " + model_path.string() + ": " + eng.error().message);
    node::NodeConfig nc;
    nc.gateway_url = node_url;
    nc.token = creds.provider_token;
    nc.node_id = "local-" + std::to_string(i + 1);
    nc.region = "local";
    nc.tls.ca_file = ca;
    nc.backoff_max = std::chrono::seconds(2);
    // The local nodes accept the agreement this binary carries (the one its
    // gateway requires).
    nc.agreements = {protocol::builtin_agreement().sha256};
    auto identity = node::load_node_identity(data_dir / "nodes" / nc.node_id);
    if (!identity) fail("node identity: " + identity.error().to_string());
    nc.identity = std::move(*identity);
    node::NodeEvents ev;
    ev.on_connected = [&, connected](const std::string&) {
      if (++*connected == a.nodes && !announced) {
        announced = true;
        boost::json::object up{{"base_url", g->base_url() + "/v1"},
                               {"api_key", creds.api_key},
                               {"ca_cert", ca.string()},
                               {"ca_fingerprint", g->ca_fingerprint()},
                               {"model", model_name},
                               {"nodes", a.nodes}};
        write_private(data_dir / "up.json", boost::json::serialize(up) + "\n");
        print_welcome(g->base_url(), creds.api_key, ca, model_name, g->ca_fingerprint(), a.nodes);
      }
    };
    ev.on_disconnected = [](const std::string& why, std::chrono::milliseconds) {
      std::fprintf(stderr, "agora up: a node lost its gateway connection (%s); reconnecting\n", why.c_str());
    };
    auto n = node::make_node(io, nc, {{model_name, std::shared_ptr<engine::Engine>(std::move(*eng))}}, ev);
    n->start();
    nodes.push_back(n);
  }
  on_stop_signals(
      io,
      [&] {
        std::fprintf(stderr, "\nagora up: stopping (Ctrl-C again to force)\n");
        for (auto& n : nodes) n->stop();
        g->stop(std::chrono::seconds(5));
      });
  io.run();
  for (auto& n : nodes) {
    if (auto e = n->fatal_error()) std::fprintf(stderr, "agora up: node error: %s\n", e->message.c_str());
  }
  std::fprintf(stderr, "agora up: stopped\n");
}

}  // namespace

void add_up_command(CLI::App& app) {
  auto args = std::make_shared<UpArgs>();
  auto* up = app.add_subcommand(
      "up",
      "Start a local marketplace: a gateway on 127.0.0.1 (HTTPS with its own CA), provider nodes serving a model "
      "(the tiny default is synthesised on first use) and an API key; prints the base URL, key, CA path and "
      "curl/SDK snippets, and writes them to DATA_DIR/up.json. Ctrl-C stops everything.");
  up->add_option("--data-dir", args->data_dir, "Gateway data: database, TLS files, up.json")->capture_default_str();
  up->add_option("--port", args->port, "Gateway port on 127.0.0.1 (0 picks a free one)")->capture_default_str();
  up->add_option("--model", args->model, "GGUF model to serve (default: MODELS_DIR/tiny.gguf, synthesised)");
  up->add_option("--models-dir", args->models_dir, "Where the default model lives")->capture_default_str();
  up->add_option("--nodes", args->nodes, "Provider nodes to start")->check(CLI::Range(1, 16))->capture_default_str();
  up->add_option("--slots", args->slots, "Concurrent requests per node")->check(CLI::Range(1, 64))->capture_default_str();
  up->add_option("--threads", args->threads, "CPU threads per node (0 = all)")->capture_default_str();
  up->callback([args] { run_up(*args); });
}

}  // namespace agora::cli
