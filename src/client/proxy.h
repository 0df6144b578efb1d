// `agora proxy`: a local OpenAI-compatible endpoint (plain HTTP on
// loopback) that makes any OpenAI SDK end-to-end encrypted with no code
// change. For each chat request it asks the gateway which nodes can serve
// it (GET /v1/providers), seals the messages and sampling parameters to
// them (protocol/sealed.h), sends only model, max_tokens, stream and the
// routing preferences in plaintext, and opens the node's sealed answer —
// unary or streamed, chunk by chunk, in order, up to its final chunk — into
// the OpenAI response the SDK expects.
//
// Confidential requests (--confidential, or confidential: true in a
// request) go only to nodes whose GPU TEE evidence the proxy verified
// itself against its own pinned NRAS root: the evidence the gateway lists
// must chain to that root, meet the GPU policy and carry SHA-256(the
// gateway's nonce ‖ the node's identity key), so the key the proxy seals to
// is the one inside the attested machine, whatever the gateway says.
//
// Fails closed: when it cannot seal (no candidate with an identity key, a
// feature the sealed path does not carry, no candidate whose evidence
// verifies) it answers with an error and sends nothing; a sealed
// answer that does not open, arrives out of order or ends without its
// final chunk is an error, never partial plaintext passed off as complete.
//
// Threading: one io_context thread runs the listener and every exchange.
#pragma once

#include <boost/asio/io_context.hpp>

#include <memory>
#include <string>

#include "attest/verifier.h"
#include "common/result.h"
#include "net/tls.h"

namespace agora::client {

struct ProxyConfig {
  std::string gateway_url;  // https://HOST:PORT
  std::string api_key;      // gk_…
  std::string listen = "127.0.0.1:8787";
  net::ClientTlsOptions tls;
  bool confidential = false;  // every request confidential (GPU TEE only, evidence verified here)
  // Verifies GPU TEE evidence (attest::make_nvidia_verifier with the pinned
  // NRAS root); confidential requests are refused without one.
  std::shared_ptr<const attest::AttestationVerifier> nvidia;
  // Evidence older than this (by the gateway's verification time) is not
  // trusted, whatever the gateway says about its verdict.
  int64_t max_evidence_age_ms = 24LL * 3600 * 1000;
  size_t candidates = 3;      // nodes each request is sealed to (failover within them)
  size_t max_body_bytes = 4u << 20;
};

class Proxy {
 public:
  virtual ~Proxy() = default;
  // Binds and starts serving. Errors: invalid_argument (config), io_error.
  virtual Status start() = 0;
  virtual void stop() = 0;
  virtual uint16_t port() const = 0;
};

std::shared_ptr<Proxy> make_proxy(boost::asio::io_context& io, ProxyConfig config);

}  // namespace agora::client
