// `agora node`: a provider node that connects out to a gateway and serves
// the models it was given.
#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>

#include <cstdio>
#include <cstdlib>

#include "cli/commands.h"
#include "cli/progress.h"
#include "cli/signals.h"
#include "engine/fake_engine.h"
#include "engine/llama_engine.h"
#include "common/file.h"
#include "crypto/ed25519.h"
#include "node/node.h"
#include "protocol/agreement.h"

namespace agora::cli {
namespace {

struct NodeArgs {
  std::string gateway;
  std::string token;
  std::vector<std::string> models;
  int32_t slots = 4;
  int32_t ctx = 0;
  int32_t threads = 0;
  std::string region;
  std::string ca_cert;
  std::string ca_fingerprint;
  std::string node_id;
  std::string engine = "llama";
  std::string fake_spec;
  int64_t backoff_max_ms = 30'000;
  int64_t heartbeat_timeout_ms = 15'000;
  int64_t auth_grace_ms = 10'000;
  std::vector<std::string> agreements;  // files
  std::string data_dir;
  std::string attestation_cmd;
  std::string attestation_kind = "nvidia_cc";
  int64_t attestation_timeout_ms = 60'000;
};

std::vector<node::ServedModel> load_models(const NodeArgs& a) {
  std::vector<node::ServedModel> out;
  if (a.engine == "fake") {
    auto opts = engine::parse_fake_engine_spec(a.fake_spec);
    if (!opts) fail(opts.error().message);
    if (a.slots > 0 && a.fake_spec.find("slots=") == std::string::npos) opts->slots = a.slots;
    std::string name = opts->name;
    out.push_back({name, std::shared_ptr<engine::Engine>(engine::make_fake_engine(*opts))});
    return out;
  }
  if (a.models.empty()) fail("give at least one --model FILE (or --engine fake)");
  for (const auto& spec : a.models) {
    // NAME=PATH names the model; otherwise the file's stem is its name.
    std::string name, path = spec;
    if (auto eq = spec.find('='); eq != std::string::npos && eq > 0) {
      name = spec.substr(0, eq);
      path = spec.substr(eq + 1);
    } else {
      name = node::model_name_for(path);
    }
    for (const auto& m : out) {
      if (m.name == name) fail("two models are named '" + name + "': name them with --model NAME=FILE");
    }
    engine::EngineOptions eo;
    eo.model_path = path;
    eo.slots = a.slots;
    eo.ctx_per_slot = a.ctx;
    eo.threads = a.threads;
    Progress progress("load " + name);
    eo.hash_progress = [&](uint64_t done, uint64_t total) { progress.update("sha256", done, total); };
    std::fprintf(stderr, "agora node: loading %s from %s\n", name.c_str(), path.c_str());
    auto eng = engine::open_llama_engine(eo);
    progress.finish();
    if (!eng) fail("cannot load " + path + ": " + eng.error().message);
    const auto& info = (*eng)->model_info();
    const auto st = (*eng)->stats();
    std::fprintf(stderr, "agora node: %s ready: %s, %s, %d slots x %d tokens, sha256 %.16s…\n", name.c_str(),
                 info.description.c_str(), info.quantization.c_str(), st.slots_total, st.ctx_per_slot,
                 info.sha256.c_str());
    out.push_back({name, std::shared_ptr<engine::Engine>(std::move(*eng))});
  }
  return out;
}

void run_node(NodeArgs a) {
  if (a.token.empty()) {
    if (const char* t = std::getenv("AGORA_PROVIDER_TOKEN")) a.token = t;
  }
  if (a.token.empty()) fail("give --token pt_… (or set AGORA_PROVIDER_TOKEN); `agora providers register` prints one");
  if (a.gateway.empty()) fail("give --gateway wss://HOST:PORT");
  node::NodeConfig cfg;
  cfg.gateway_url = a.gateway;
  cfg.token = a.token;
  cfg.node_id = a.node_id;
  cfg.region = a.region;
  if (!a.ca_cert.empty()) cfg.tls.ca_file = a.ca_cert;
  if (!a.ca_fingerprint.empty()) cfg.tls.pinned_fingerprint = a.ca_fingerprint;
  cfg.backoff_max = std::chrono::milliseconds(a.backoff_max_ms);
  cfg.heartbeat_timeout = std::chrono::milliseconds(a.heartbeat_timeout_ms);
  cfg.auth_grace = std::chrono::milliseconds(a.auth_grace_ms);
  cfg.attestation_cmd = a.attestation_cmd;
  if (!a.attestation_cmd.empty()) cfg.attestation_kind = a.attestation_kind;
  cfg.attestation_timeout = std::chrono::milliseconds(a.attestation_timeout_ms);
  if (auto ctx = net::make_client_tls_context(cfg.tls); !ctx) fail(ctx.error().message);
  if (a.data_dir.empty()) {
    const char* env = std::getenv("AGORA_NODE_DATA_DIR");
    a.data_dir = env && *env ? env : "./agora-node";
  }
  auto identity = node::load_node_identity(a.data_dir);
  if (!identity) fail("node identity: " + identity.error().to_string());
  cfg.identity = std::move(*identity);
  std::fprintf(stderr, "agora node: identity key %s (%s/identity.key)\n",
               crypto::to_hex(cfg.identity.public_key).c_str(), a.data_dir.c_str());
  if (a.agreements.empty()) {
    const auto& builtin = protocol::builtin_agreement();
    cfg.agreements.push_back(builtin.sha256);
    std::fprintf(stderr,
                 "agora node: accepting the provider data-handling agreement version %d (sha256 %.16s…, "
                 "docs/PROVIDER_AGREEMENT.md): no storing, logging or sharing of prompts or responses\n",
                 builtin.version, builtin.sha256.c_str());
  }
  for (const auto& file : a.agreements) {
    auto text = read_file(file);
    if (!text) fail("--agreement " + file + ": " + text.error().message);
    auto parsed = protocol::parse_agreement(std::move(*text));
    if (!parsed) fail("--agreement " + file + ": " + parsed.error().message);
    cfg.agreements.push_back(parsed->sha256);
    std::fprintf(stderr, "agora node: accepting the provider agreement version %d from %s (sha256 %.16s…)\n",
                 parsed->version, file.c_str(), parsed->sha256.c_str());
  }

  auto models = load_models(a);
  boost::asio::io_context io(1);
  node::NodeEvents ev;
  ev.on_connected = [&](const std::string& provider) {
    std::fprintf(stderr, "agora node: connected to %s as provider %s, serving %zu model(s)\n", a.gateway.c_str(),
                 provider.c_str(), models.size());
  };
  ev.on_disconnected = [](const std::string& why, std::chrono::milliseconds retry) {
    std::fprintf(stderr, "agora node: disconnected (%s); reconnecting in %.1f s\n", why.c_str(),
                 static_cast<double>(retry.count()) / 1000.0);
  };
  ev.on_agreement_required = [](int32_t version, const std::string& sha256) {
    std::fprintf(stderr,
                 "agora node: the gateway requires version %d of the provider agreement (sha256 %.16s…), which "
                 "this node has not accepted: it gets no jobs until then. Get the document from the gateway's "
                 "operator, read it, and restart with --agreement FILE\n",
                 version, sha256.c_str());
  };
  ev.on_stopped = [&io] { io.stop(); };
  auto n = node::make_node(io, cfg, models, ev);
  n->start();
  std::fprintf(stderr, "agora node: %s connecting to %s\n", n->node_id().c_str(), a.gateway.c_str());
  on_stop_signals(
      io,
      [&] {
        std::fprintf(stderr, "agora node: draining (finishing running jobs; signal again to stop now)\n");
        n->drain();
      });
  io.run();
  models.clear();
  if (auto e = n->fatal_error()) fail(e->message);
  std::fprintf(stderr, "agora node: stopped\n");
}

}  // namespace

void add_node_command(CLI::App& app) {
  auto a = std::make_shared<NodeArgs>();
  auto* cmd = app.add_subcommand("node",
                                 "Run a provider node: connect out to a gateway over WSS and serve GGUF models "
                                 "with llama.cpp. SIGTERM drains (running jobs finish); a second signal stops.");
  cmd->add_option("--gateway", a->gateway, "Gateway URL, wss://HOST:PORT")->required();
  cmd->add_option("--token", a->token, "Provider token pt_… (or AGORA_PROVIDER_TOKEN)");
  cmd->add_option("--model", a->models, "GGUF model to serve, FILE or NAME=FILE (repeatable)");
  cmd->add_option("--slots", a->slots, "Concurrent requests per model")->check(CLI::Range(1, 256))->capture_default_str();
  cmd->add_option("--ctx", a->ctx, "Context tokens per slot; 0 = min(trained, 4096)")->capture_default_str();
  cmd->add_option("--threads", a->threads, "CPU threads; 0 = all")->capture_default_str();
  cmd->add_option("--region", a->region, "Region this node is in (for data-residency routing)");
  cmd->add_option("--ca-cert", a->ca_cert, "Trust only this CA file for the gateway's certificate");
  cmd->add_option("--ca-fingerprint", a->ca_fingerprint,
                  "Pin the gateway's CA (or leaf) certificate by SHA-256 fingerprint instead of a CA file");
  cmd->add_option("--node-id", a->node_id, "Stable node id (default: random per start)");
  cmd->add_option("--engine", a->engine, "llama (real models) or fake (no model work; benchmarks and tests)")
      ->check(CLI::IsMember({"llama", "fake"}))
      ->capture_default_str();
  cmd->add_option("--fake", a->fake_spec,
                  "Fake engine spec, e.g. name=fake,tokens=16,slots=64,token-interval-us=0,first-token-us=0");
  cmd->add_option("--backoff-max-ms", a->backoff_max_ms, "Longest wait between reconnection attempts")
      ->capture_default_str();
  cmd->add_option("--heartbeat-timeout-ms", a->heartbeat_timeout_ms, "Reconnect when the gateway is silent this long")
      ->capture_default_str();
  cmd->add_option("--auth-grace-ms", a->auth_grace_ms,
                  "Keep retrying a refused token this long before giving up (a just-registered provider)")
      ->capture_default_str();
  cmd->add_option("--data-dir", a->data_dir,
                  "Where the node keeps its X25519 identity key (identity.key, mode 0600, made on first start; "
                  "clients encrypt to it). Default: $AGORA_NODE_DATA_DIR, else ./agora-node");
  cmd->add_option("--agreement", a->agreements,
                  "A version of the provider data-handling agreement you accept (a Markdown file with a "
                  "\"Version: N\" line; repeatable). Default: the one built into agora, docs/PROVIDER_AGREEMENT.md. "
                  "A node gets no jobs until it has accepted the version its gateway requires.");
  cmd->add_option("--attestation-cmd", a->attestation_cmd,
                  "Command that prints attestation evidence for a gateway challenge: run by /bin/sh with the "
                  "evidence nonce (SHA-256 of the gateway nonce and this node's identity key, hex) as its last "
                  "argument and in $AGORA_EVIDENCE_NONCE (also $AGORA_GATEWAY_NONCE, $AGORA_IDENTITY_KEY, "
                  "$AGORA_ATTESTATION_KIND); e.g. a wrapper around NVIDIA's attestation SDK that prints the NRAS "
                  "result. Without it the node serves at the standard level.");
  cmd->add_option("--attestation-kind", a->attestation_kind,
                  "What --attestation-cmd prints: nvidia_cc (GPU confidential computing, an NRAS EAT bundle) or "
                  "play_integrity (an Android Play Integrity token)")
      ->check(CLI::IsMember({"nvidia_cc", "play_integrity"}))
      ->capture_default_str();
  cmd->add_option("--attestation-timeout-ms", a->attestation_timeout_ms,
                  "Kill the attestation command if it runs longer than this")
      ->check(CLI::Range(int64_t{100}, int64_t{600'000}))
      ->capture_default_str();
  cmd->callback([a] { run_node(*a); });
}

}  // namespace agora::cli
