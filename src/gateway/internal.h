// Private to the gateway library: GatewayImpl, the composition root that
// owns the parts (docs/ARCHITECTURE.md, "The gateway's parts"), and
// NodeConn, a node's WSS session (node_session.cpp), as the HTTP shell
// (http_session.cpp and the handler files) and the node side reach them.
// All of it lives on the event loop.
#pragma once

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>

#include <array>
#include <chrono>
#include <list>
#include <unordered_map>

#include "gateway/attestation.h"
#include "gateway/conversation_service.h"
#include "gateway/credential_table.h"
#include "gateway/generation_log.h"
#include "gateway/job.h"
#include "gateway/scheduler.h"
#include "gateway/server.h"
#include "gateway/provider_link.h"
#include "gateway/provider_trust.h"
#include "gateway/gateway.h"
#include "gateway/metrics.h"
#include "gateway/rate_limiter.h"
#include "gateway/router.h"
#include "gateway/store_worker.h"
#include "net/asio_timer.h"
#include "net/lean_tls_stream.h"
#include "net/ws_frame.h"
#include "crypto/master_secret.h"
#include "protocol/messages.h"

namespace agora::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
// Every accepted connection's TLS stream (HTTP clients and nodes): one
// that holds no buffers while idle (net/lean_tls_stream.h).
using TlsStream = net::LeanTlsStream;

// One connected node: a WebSocket (our framing, net/ws_frame.h, on the
// lean TLS stream), read by GatewayImpl::read_node, plus an outbox. A writer
// coroutine runs while the outbox has frames (or a close is due) and ends
// when it is empty, so an idle node holds nothing but its pending read into
// `head`. Heartbeats come from one gateway-wide sweep (heartbeat_loop), not
// a timer per node.
struct NodeConn final : ProviderLink, std::enable_shared_from_this<NodeConn> {
  NodeConn(TlsStream s, size_t max_message) : stream(std::move(s)), reader(max_message) {}

  ConnId id = 0;
  TlsStream stream;
  net::ws::Reader reader;
  // An idle node's pending read fills `head`; a frame still incomplete
  // continues in `read_buffer` (empty again once the reader is idle).
  std::array<char, 32> head{};
  std::string read_buffer;
  bool reading_head = true;
  // One frame: its header and payload, written as two buffers.
  struct Out {
    Out(net::ws::Opcode opcode, std::string p) : payload(std::move(p)) {
      header_size = static_cast<uint8_t>(net::ws::frame_header(header, opcode, payload.size()));
    }
    std::array<uint8_t, 10> header{};
    uint8_t header_size = 0;
    std::string payload;
  };
  std::list<Out> outbox;  // not a deque: an empty one allocates nothing
  bool writing = false;   // the writer coroutine is running
  bool closing = false;   // set by close()
  uint16_t close_code = net::ws::kCloseGoingAway;
  std::string close_reason;  // set when the gateway ends the session itself
  Clock::TimePoint last_heard{};  // set when the session starts, then on every read
  bool ping_sent = false;  // since last_heard
  std::string node_id, provider_id;

  // Queues a text message (the writer sends the queue in order).
  void send(std::string text) { queue(net::ws::Opcode::text, std::move(text)); }
  // ProviderLink: what the scheduler sends (its jobs on this node are the
  // scheduler's; their frames come back through on_node_frame).
  void send_job(const protocol::Job& job) override { send(protocol::encode(job)); }
  void send_cancel(protocol::JobId job) override { send(protocol::encode(protocol::Cancel{job})); }
  void send_challenge(const std::string& nonce) override { send(protocol::encode(protocol::Challenge{nonce})); }
  bool open() const override { return !closing; }
  void queue(net::ws::Opcode opcode, std::string payload);
  // Closes the session once what is queued is written: a close frame with
  // `code`, then the socket; the reader then ends.
  void close(uint16_t code = net::ws::kCloseGoingAway);

 private:
  void start_writer();
};

class GatewayImpl final : public Gateway, public std::enable_shared_from_this<GatewayImpl> {
 public:
  GatewayImpl(asio::io_context& io, GatewayConfig config, Clock& clock);
  ~GatewayImpl() override;

  Status start() override;
  void stop(std::chrono::milliseconds grace) override;
  uint16_t port() const override { return server_ ? server_->port() : 0; }
  std::string base_url() const override { return server_ ? server_->base_url() : std::string(); }
  std::filesystem::path ca_cert() const override { return server_ ? server_->tls_files().ca_cert : std::filesystem::path(); }
  std::string ca_fingerprint() const override { return server_ ? server_->tls_files().ca_fingerprint : std::string(); }

  // ---- used by the HTTP shell (http_session.cpp)
  asio::io_context& io() { return io_; }
  const GatewayConfig& config() const { return config_; }
  Clock& clock() { return clock_; }
  Metrics& metrics() { return metrics_; }
  Gauges gauges() const;
  const Router& router() const { return router_; }
  bool ready() const { return !router_.nodes().empty(); }

  // A client key (gk_…) or, with `admin`, an admin token (at_…) that is
  // active now; nullptr otherwise.
  const KeyEntry* authenticate(std::string_view authorization, bool admin = false) const;
  RateLimiter& limiter() { return *limiter_; }
  std::shared_ptr<const crypto::MasterSecret> master_secret() const { return master_; }
  // Runs an operator's change on the store's control thread (admin API).
  void admin_task(StoreWorker::AdminTask task) { store_->admin(std::move(task)); }
  // Admits a chat request for `key` (reserving tokens) or says why not.
  RateLimiter::Decision admit(const KeyEntry& key, Job& job);
  RateLimiter::Snapshot rate_snapshot(const KeyEntry& key) { return limiter_->peek(key.lineage, key.limits, clock_.now()); }
  const ProviderEntry* authenticate_provider(std::string_view authorization) const;

  std::shared_ptr<Job> new_job(ChatRequest request, const KeyEntry& key);
  // Jobs: submit, abandon (scheduler.h).
  Scheduler& scheduler() { return scheduler_; }
  // The generation log (generation_log.h): record, find_recent, lookup.
  GenerationLog& generations() { return generations_; }
  // Conversation memory (conversation_service.h); after start().
  ConversationService& conversations() { return *conversations_; }
  // The smallest context of the nodes serving `model` (0 when none).
  int32_t context_for(const std::string& model) const;

  // The WebSocket upgrade and the hello. Returns once the node is welcomed
  // (its session then goes on in read_node()'s callbacks and the writer) or
  // refused; the caller's frame can end.
  asio::awaitable<void> run_node_session(std::shared_ptr<TlsStream> stream,
                                         http::request<http::string_body> request, ProviderEntry provider);

  // Listening, accepting, and the open connections (server.h).
  Server& server() { return *server_; }
  bool stopping() const { return stopping_; }

 private:
  // After a valid hello: false when the provider was revoked meanwhile or
  // another provider's node has the id (the node is told); replaces an
  // older session of the same node.
  bool admit_node(NodeConn& conn, const protocol::Hello& hello);
  // Registers the node everywhere (router, scheduler, trust, attestation),
  // welcomes it and starts its reader.
  void welcome_node(std::shared_ptr<NodeConn> conn, protocol::Hello hello);
  void read_node(std::shared_ptr<NodeConn> n);
  Status open_store();  // part of start()
  void on_node_read(std::shared_ptr<NodeConn> n, beast::error_code ec, size_t bytes);
  void on_node_frame(NodeConn& n, protocol::Message m);
  void node_gone(const std::shared_ptr<NodeConn>& n, const std::string& why);
  void on_credentials(StoreWorker::Credentials c);
  // Provider trust's seams: offers and disconnects go to the node's
  // session, holds to the router (a released node drains its queues),
  // acceptances to the store.
  ProviderTrust::Hooks trust_hooks();
  void audit(std::string kind, std::string provider_id, boost::json::object data);
  // The connected nodes changed: snapshot_nodes() runs kSnapshotDelay later,
  // once for a whole burst of changes (it walks every node, so once per
  // change would cost O(nodes^2) while thousands connect); `agora providers
  // list` sees a node within about a second, as with snapshot_loop().
  void nodes_changed();
  // The attestation lifecycle's seams: verification on attest_pool_, level
  // changes drain the scheduler's queues, audit, close.
  AttestationLifecycle::Hooks attestation_hooks();
  void snapshot_nodes();
  asio::awaitable<void> snapshot_loop();
  // Pings nodes quiet for node_timeout/2 and drops those quiet for
  // node_timeout: one timer for all of them.
  asio::awaitable<void> heartbeat_loop();

  asio::io_context& io_;
  GatewayConfig config_;
  Clock& clock_;
  std::shared_ptr<Server> server_;  // after start()
  bool stopping_ = false;

  std::unique_ptr<StoreWorker> store_;
  std::shared_ptr<const crypto::MasterSecret> master_;
  std::shared_ptr<ConversationService> conversations_;
  std::unique_ptr<CredentialTable> credentials_;  // after start()
  std::unique_ptr<ProviderTrust> trust_;          // after start()
  std::shared_ptr<RateLimiter> limiter_ = std::make_shared<RateLimiter>();
  std::unique_ptr<AttestationLifecycle> attestation_;  // after start()
  // Verifies evidence off the loop (one thread: a few per node per day).
  std::unique_ptr<asio::thread_pool> attest_pool_;

  Router router_;
  std::unordered_map<ConnId, std::shared_ptr<NodeConn>> conns_;
  static constexpr std::chrono::milliseconds kSnapshotDelay{1000};
  asio::steady_timer snapshot_timer_;
  bool snapshot_due_ = false;
  ConnId next_conn_ = 1;

  Metrics metrics_;
  GenerationLog generations_{io_, metrics_, clock_};
  net::AsioTimerService timers_;
  Scheduler scheduler_;
  std::unique_ptr<Timer> scheduler_timer_;  // fires at the scheduler's next deadline
};

// The HTTP/1.1 session on one accepted TLS connection (http_session.cpp).
asio::awaitable<void> run_http_session(std::shared_ptr<GatewayImpl> gateway, tcp::socket socket,
                                       std::shared_ptr<asio::ssl::context> ssl);

}  // namespace agora::gateway
