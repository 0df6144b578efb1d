// The provider node's connector: dials out to a gateway over WSS (so it
// works behind NAT), authenticates with its provider token, announces its
// models, runs the jobs it is sent on its engines and streams tokens back.
// Reconnects with exponential backoff and jitter; drain() stops taking jobs
// and ends once in-flight ones have finished.
//
// Threading: run on one io_context thread. Engine callbacks arrive on engine
// threads and are posted to that loop.
#pragma once

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <filesystem>

#include "common/clock.h"
#include "common/result.h"
#include "crypto/hpke.h"
#include "engine/engine.h"
#include "net/tls.h"

namespace agora::node {

struct NodeConfig {
  std::string gateway_url;  // wss://HOST:PORT (the path defaults to /v1/node)
  std::string token;        // pt_…
  std::string node_id;      // stable id; random when empty
  std::string region;
  net::ClientTlsOptions tls;
  std::chrono::milliseconds backoff_min{250};
  std::chrono::milliseconds backoff_max{30'000};
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds heartbeat_timeout{15'000};  // gateway silent this long: reconnect
  // A refused token is retried this long before it is fatal: a provider
  // registered a moment ago reaches a running gateway within a second.
  std::chrono::milliseconds auth_grace{10'000};
  // SHA-256 of each version of the provider agreement the operator accepted
  // (sent in the hello; a gateway offering one of these is answered with
  // Accept at once). The CLI fills it from --agreement files, by default
  // the agreement built into this binary.
  std::vector<std::string> agreements;
  // The node's X25519 identity (crypto/hpke.h): its public key goes in the
  // hello; clients seal requests to it. Empty: none announced.
  crypto::hpke::KeyPair identity;
  // Attestation: the kind of evidence this node offers ("nvidia_cc",
  // "play_integrity"; empty: none) and the command that produces it for a
  // challenge (node/attestation_command.h). Needs an identity key: the
  // evidence binds it.
  std::string attestation_kind;
  std::string attestation_cmd;
  std::chrono::milliseconds attestation_timeout{60'000};
};

// The node's identity key in DATA_DIR/identity.key (0600; created on first
// start). Errors: those of crypto::load_secret_file.
Result<crypto::hpke::KeyPair> load_node_identity(const std::filesystem::path& data_dir);

struct ServedModel {
  std::string name;  // what clients ask for
  std::shared_ptr<engine::Engine> engine;
};

// What the node reports about itself, for logs and the CLI.
struct NodeEvents {
  std::function<void(const std::string& provider_id)> on_connected;
  std::function<void(const std::string& why, std::chrono::milliseconds retry_in)> on_disconnected;
  // The gateway requires an agreement version this node has not accepted:
  // it gets no jobs until its operator accepts it (restart with it).
  std::function<void(int32_t version, const std::string& sha256)> on_agreement_required;
  // The node's loop has ended (stop, drain finished, or a fatal error).
  std::function<void()> on_stopped;
};

class Node {
 public:
  virtual ~Node() = default;
  // Starts connecting. The loop runs until stop() or a fatal error (the
  // gateway refused the token or the protocol version).
  virtual void start() = 0;
  // SIGTERM: tell the gateway, take no new jobs, finish the running ones,
  // then disconnect. Thread-safe.
  virtual void drain() = 0;
  // Immediate stop: running jobs are cancelled. Thread-safe.
  virtual void stop() = 0;
  // Set once the loop has ended because of a fatal error.
  virtual std::optional<Error> fatal_error() const = 0;
  virtual const std::string& node_id() const = 0;
};

// `clock`: when reconnects back off and provider-token refusals become
// final (tests pass a manual one).
std::shared_ptr<Node> make_node(boost::asio::io_context& io, NodeConfig config, std::vector<ServedModel> models,
                                NodeEvents events = {}, const Clock& clock = SystemClock::instance());

// Model name for a file: its stem ("models/tiny.gguf" -> "tiny").
std::string model_name_for(const std::string& path);

}  // namespace agora::node
