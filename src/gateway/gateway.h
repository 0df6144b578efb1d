// The gateway: an HTTPS front (OpenAI-compatible API, metrics, health) and
// the endpoint provider nodes connect out to over WSS, on one listener.
//
// Threading: everything runs on the io_context passed in, which must be run
// by exactly one thread (the event loop); the gateway's state is owned by
// that loop and needs no locks. The Store lives on a worker thread of its
// own (store_worker.h), so nothing on the request path waits on the disk.
#pragma once

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "common/clock.h"
#include "common/result.h"
#include "gateway/openai_names.h"

namespace agora::gateway {

struct GatewayConfig {
  std::filesystem::path data_dir = "agora-data";
  std::string listen = "127.0.0.1:8443";
  // A real certificate chain and key; when unset a local CA and a server
  // certificate are created in DATA_DIR/tls on first start.
  std::optional<std::filesystem::path> tls_cert;
  std::optional<std::filesystem::path> tls_key;
  std::vector<std::string> tls_names;  // extra names/IPs for the generated certificate
  // The master secret (key hashing, conversation keys, audit signing); when
  // unset, DATA_DIR/master.key (created on first start, mode 0600). Keep it
  // out of the database's backups.
  std::optional<std::filesystem::path> master_key;

  // Per-key limits for keys that set none (0 = no limit).
  int64_t default_rpm = 600;
  int64_t default_tpm = 1'000'000;
  int64_t default_max_concurrent = 256;
  // Tokens reserved for the completion of a request without max_tokens
  // (capped at the key's tokens-per-minute); the real usage settles it.
  int64_t default_completion_reservation = 1024;

  // Bounds on every client input.
  size_t max_body_bytes = 4u << 20;
  size_t max_header_bytes = 16u << 10;
  RequestLimits limits;
  std::chrono::milliseconds handshake_timeout{10'000};
  std::chrono::milliseconds read_timeout{30'000};   // first byte -> whole request read
  std::chrono::milliseconds idle_timeout{60'000};   // keep-alive connection with no request
  std::chrono::milliseconds write_timeout{30'000};  // one response write to a slow client
  size_t max_connections = 20'000;

  // Scheduling.
  std::chrono::milliseconds queue_timeout{30'000};  // wait for a free slot, then 503
  size_t max_queue = 4096;                          // waiting requests, all models together
  int max_attempts = 3;                             // nodes tried before output reaches the client
  std::chrono::milliseconds job_idle_timeout{300'000};  // node silent on a running job

  // Nodes: pinged at half this interval; one silent this long is evicted.
  std::chrono::milliseconds node_timeout{15'000};

  // Opt-in conversation memory: a conversation not written for this long is
  // deleted (a request's conversation_ttl overrides it); 0 = kept until
  // DELETE /v1/conversations/{id}.
  std::chrono::milliseconds conversation_ttl{7LL * 24 * 3600 * 1000};

  // Audit trail: new entries are signed this often (and at shutdown).
  std::chrono::milliseconds audit_checkpoint_interval{60'000};

  // Attestation (docs/SECURITY.md, "Attestation levels"). A verifier is on
  // when its root or keys are configured; a node offering evidence of a kind
  // without one stays at "standard".
  std::chrono::milliseconds attestation_lifetime{24LL * 3600 * 1000};  // a verdict lasts this long
  std::chrono::milliseconds attestation_refresh{3600LL * 1000};  // re-challenge this long before expiry
  std::chrono::milliseconds attestation_timeout{60'000};  // evidence is due within this of a challenge
  std::chrono::milliseconds attestation_retry{60'000};    // after a failure (doubling, at most an hour)
  // NVIDIA GPU confidential computing (NRAS results).
  std::optional<std::filesystem::path> nvidia_root_cert;  // the pinned NRAS signing root, PEM
  std::vector<std::string> nvidia_hw_models{"GH100 A01 GSP BROM"};
  std::string nvidia_min_driver = "550.54.15";
  // Android Play Integrity, locally decrypted mode (the keys from the Play Console).
  std::optional<std::filesystem::path> play_integrity_decryption_key;    // base64 AES-256 key
  std::optional<std::filesystem::path> play_integrity_verification_key;  // base64 DER or PEM EC P-256 key
  std::string play_integrity_package;
  std::string play_integrity_cert_sha256;
  bool play_integrity_strong = false;  // require MEETS_STRONG_INTEGRITY
};

class Gateway {
 public:
  virtual ~Gateway() = default;

  // Binds the listener and starts serving. Errors: io_error (cannot bind,
  // cannot write DATA_DIR), corrupt (unreadable certificate or database).
  virtual Status start() = 0;
  // Stops accepting, lets running requests finish (up to `grace`), closes
  // node sessions and flushes the store. Safe to call from any thread; the
  // loop ends once everything is closed.
  virtual void stop(std::chrono::milliseconds grace = std::chrono::milliseconds(10'000)) = 0;

  virtual uint16_t port() const = 0;
  virtual std::string base_url() const = 0;              // https://HOST:PORT
  virtual std::filesystem::path ca_cert() const = 0;     // empty with a configured certificate
  virtual std::string ca_fingerprint() const = 0;        // SHA-256 of ca_cert()
};

std::shared_ptr<Gateway> make_gateway(boost::asio::io_context& io, GatewayConfig config,
                                      Clock& clock = SystemClock::instance());

}  // namespace agora::gateway
