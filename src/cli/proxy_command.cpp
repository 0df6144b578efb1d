// `agora proxy`: a local OpenAI-compatible endpoint that seals every
// request end to end (client/proxy.h).
#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>

#include <cstdio>
#include <cstdlib>

#include "cli/commands.h"
#include "cli/signals.h"
#include "client/proxy.h"
#include "common/file.h"

namespace agora::cli {
namespace {

struct ProxyArgs {
  std::string gateway;
  std::string api_key;
  std::string listen = "127.0.0.1:8787";
  std::string ca_cert;
  std::string ca_fingerprint;
  bool confidential = false;
  size_t candidates = 3;
  std::string nvidia_root;
  std::vector<std::string> nvidia_hw_models{"GH100 A01 GSP BROM"};
  std::string nvidia_min_driver = "550.54.15";
  int64_t max_evidence_age_ms = 24LL * 3600 * 1000;
};

void run_proxy(ProxyArgs a) {
  if (a.api_key.empty()) {
    if (const char* k = std::getenv("AGORA_API_KEY")) a.api_key = k;
  }
  if (a.api_key.empty()) fail("give --api-key gk_… (or set AGORA_API_KEY)");
  client::ProxyConfig cfg;
  cfg.gateway_url = a.gateway;
  cfg.api_key = a.api_key;
  cfg.listen = a.listen;
  if (!a.ca_cert.empty()) cfg.tls.ca_file = a.ca_cert;
  if (!a.ca_fingerprint.empty()) cfg.tls.pinned_fingerprint = a.ca_fingerprint;
  cfg.confidential = a.confidential;
  cfg.candidates = a.candidates;
  cfg.max_evidence_age_ms = a.max_evidence_age_ms;
  if (!a.nvidia_root.empty()) {
    auto pem = read_file(a.nvidia_root, 1u << 20);
    if (!pem) fail("--nvidia-root: " + pem.error().message);
    attest::NvidiaPolicy policy;
    policy.root_pem = std::move(*pem);
    policy.hw_models = a.nvidia_hw_models;
    policy.min_driver_version = a.nvidia_min_driver;
    auto v = attest::make_nvidia_verifier(std::move(policy));
    if (!v) fail("--nvidia-root: " + v.error().message);
    cfg.nvidia = std::move(*v);
  }
  boost::asio::io_context io(1);
  auto proxy = client::make_proxy(io, cfg);
  if (Status st = proxy->start(); !st) fail(st.error().to_string());
  std::printf("agora proxy listening on http://127.0.0.1:%u/v1 (end-to-end sealed to the gateway's nodes)\n",
              static_cast<unsigned>(proxy->port()));
  std::fflush(stdout);
  if (a.confidential) {
    std::fprintf(stderr,
                 "agora proxy: --confidential: every request goes only to nodes whose GPU TEE evidence verifies "
                 "against %s\n",
                 a.nvidia_root.c_str());
  }
  on_stop_signals(io, [&] { io.stop(); });
  io.run();
}

}  // namespace

void add_proxy_command(CLI::App& app) {
  auto a = std::make_shared<ProxyArgs>();
  auto* cmd = app.add_subcommand(
      "proxy",
      "Run a local OpenAI-compatible endpoint (loopback, plain HTTP) that encrypts every chat request end to end: "
      "only the provider node that serves it can read the messages and the answer; the gateway sees the model, "
      "sizes and timing. Point any OpenAI SDK at it (baseURL http://127.0.0.1:PORT/v1).");
  cmd->add_option("--gateway", a->gateway, "Gateway URL, https://HOST:PORT")->required();
  cmd->add_option("--api-key", a->api_key, "API key gk_… (or AGORA_API_KEY); the proxy authenticates with it");
  cmd->add_option("--listen", a->listen, "Loopback address to serve on (port 0: any free port)")->capture_default_str();
  cmd->add_option("--ca-cert", a->ca_cert, "Trust only this CA file for the gateway's certificate");
  cmd->add_option("--ca-fingerprint", a->ca_fingerprint, "Pin the gateway's CA (or leaf) certificate by SHA-256");
  cmd->add_option("--candidates", a->candidates, "Nodes each request is sealed to (the gateway fails over among them)")
      ->check(CLI::Range(1, 16))
      ->capture_default_str();
  cmd->add_flag("--confidential", a->confidential,
                "Send every request only to GPU-TEE-attested nodes whose evidence the proxy verifies itself "
                "(needs --nvidia-root); without it, only requests with confidential: true are");
  cmd->add_option("--nvidia-root", a->nvidia_root,
                  "PEM root certificate that NVIDIA attestation results (NRAS) must chain to, pinned here and not "
                  "taken from the gateway");
  cmd->add_option("--nvidia-hw-model", a->nvidia_hw_models, "GPU model (hwmodel claim) to accept (repeatable)")
      ->capture_default_str();
  cmd->add_option("--nvidia-min-driver", a->nvidia_min_driver, "Oldest GPU driver version to accept")
      ->capture_default_str();
  cmd->add_option("--max-evidence-age-ms", a->max_evidence_age_ms,
                  "Refuse evidence the gateway verified longer ago than this")
      ->check(CLI::Range(int64_t{1000}, int64_t{30LL * 24 * 3600 * 1000}))
      ->capture_default_str();
  cmd->callback([a] { run_proxy(*a); });
}

}  // namespace agora::cli
