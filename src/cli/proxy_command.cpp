// `agora proxy`: a local OpenAI-compatible endpoint that seals every
// request end to end (client/proxy.h).
#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>

#include <cstdio>
#include <cstdlib>

#include "cli/commands.h"
#include "cli/signals.h"
#include "client/proxy.h"

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
  boost::asio::io_context io(1);
  auto proxy = client::make_proxy(io, cfg);
  if (Status st = proxy->start(); !st) fail(st.error().to_string());
  std::printf("agora proxy listening on http://127.0.0.1:%u/v1 (end-to-end sealed to the gateway's nodes)\n",
              static_cast<unsigned>(proxy->port()));
  std::fflush(stdout);
  if (a.confidential) {
    std::fprintf(stderr,
                 "agora proxy: --confidential: every request is refused until attestation evidence can be "
                 "verified (not yet supported)\n");
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
                "Only GPU-TEE-attested nodes, verified by the proxy itself (refuses every request until attestation "
                "support exists)");
  cmd->callback([a] { run_proxy(*a); });
}

}  // namespace agora::cli
