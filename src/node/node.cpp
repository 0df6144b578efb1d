#include "node/node.h"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <optional>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>
#include <unordered_map>

#include "attest/verifier.h"
#include "common/clock.h"
#include "common/log.h"
#include "crypto/random.h"
#include "crypto/ed25519.h"
#include "crypto/secret_file.h"
#include "crypto/sha256.h"
#include "crypto/encoding.h"
#include "net/spawn.h"
#include "net/url.h"
#include "node/attestation_command.h"
#include "node/job_frames.h"
#include "node/wire_convert.h"
#include "protocol/messages.h"
#include "protocol/schema_rules.h"
#include "protocol/sealed.h"

namespace agora::node {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using asio::awaitable;
constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);
using Ws = websocket::stream<beast::ssl_stream<beast::tcp_stream>>;

protocol::Hardware detect_hardware() {
  protocol::Hardware h;
  h.cores = static_cast<int32_t>(std::thread::hardware_concurrency());
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page = ::sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && page > 0) h.memory_bytes = static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) h.cpu = line.substr(line.find_first_not_of(' ', colon + 1));
      break;
    }
  }
  return h;
}

struct RunningJob {
  size_t model = 0;
  engine::RequestId request = 0;
  uint64_t session = 0;
};

class NodeImpl final : public Node, public std::enable_shared_from_this<NodeImpl> {
 public:
  NodeImpl(asio::io_context& io, NodeConfig config, std::vector<ServedModel> models, NodeEvents events,
           const Clock& clock)
      : io_(io), clock_(clock), config_(std::move(config)), models_(std::move(models)), events_(std::move(events)),
        wake_(io), backoff_timer_(io) {
    if (config_.node_id.empty()) config_.node_id = "node_" + crypto::random_base62(12);
    hardware_ = detect_hardware();
  }

  void start() override {
    asio::co_spawn(io_, run(), [self = shared_from_this()](std::exception_ptr e) {
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& x) {
          self->fatal_ = make_error(Errc::internal, std::string("node loop crashed: ") + x.what());
        }
      }
    });
  }

  void drain() override {
    asio::post(io_, [self = shared_from_this()] {
      if (self->draining_) {
        self->stop_now();
        return;
      }
      self->draining_ = true;
      spdlog::info("node_draining node={} jobs={}", self->config_.node_id, self->jobs_.size());
      self->send(protocol::encode(protocol::Drain{}));
      self->maybe_finish_drain();
      self->backoff_timer_.cancel();
    });
  }

  void stop() override {
    asio::post(io_, [self = shared_from_this()] { self->stop_now(); });
  }

  ~NodeImpl() override {
    attest_cancel_->store(true);
    if (attest_thread_.joinable()) attest_thread_.join();
  }

  std::optional<Error> fatal_error() const override { return fatal_; }
  const std::string& node_id() const override { return config_.node_id; }

 private:
  void stop_now() {
    stopping_ = true;
    attest_cancel_->store(true);
    cancel_all_jobs();
    backoff_timer_.cancel();
    if (ws_) beast::get_lowest_layer(*ws_).cancel();
    wake_.cancel();
  }

  void maybe_finish_drain() {
    if (draining_ && jobs_.empty()) {
      stopping_ = true;
      closing_ = true;
      wake_.cancel();
      backoff_timer_.cancel();
    }
  }

  void cancel_all_jobs() {
    for (auto& [id, j] : jobs_) models_[j.model].engine->cancel(j.request);
  }

  void send(std::string frame) {
    if (!ws_) return;
    outbox_.push_back(Outgoing{std::move(frame), std::nullopt});
    wake_.cancel();
  }

  // A job's text while its previous delta still waits in the outbox joins
  // that delta: under load one frame carries several tokens instead of one
  // frame each, and an idle writer still sends every token at once.
  void send_delta(protocol::Delta d) {
    if (!ws_) return;
    auto it = queued_delta_.find(d.job);
    // A queued delta grows until it holds the most fragments a frame may.
    if (it != queued_delta_.end() && it->second->tool_calls.size() + d.tool_calls.size() > protocol::kMaxToolCallDeltas) {
      queued_delta_.erase(it);
      it = queued_delta_.end();
    }
    if (it != queued_delta_.end()) {
      protocol::Delta& q = *it->second;
      q.text += d.text;
      for (auto& lp : d.logprobs) q.logprobs.push_back(std::move(lp));
      for (auto& c : d.tool_calls) protocol::append_tool_call_fragment(q.tool_calls, std::move(c));
      return;
    }
    const protocol::JobId job = d.job;
    outbox_.push_back(Outgoing{{}, std::move(d)});
    queued_delta_[job] = &*outbox_.back().delta;  // deque elements stay put on push_back/pop_front
    wake_.cancel();
  }

  awaitable<void> run() {
    auto self = shared_from_this();
    auto backoff = config_.backoff_min;
    std::mt19937_64 rng(std::random_device{}());
    while (!stopping_) {
      const auto began = clock_.now();
      std::string why = co_await session();
      if (fatal_ || stopping_) break;
      if (clock_.now() - began > std::chrono::seconds(10)) backoff = config_.backoff_min;
      // Full jitter: a gateway restart must not see every node at once.
      std::uniform_int_distribution<int64_t> jitter(backoff.count() / 2, backoff.count());
      const auto wait = std::chrono::milliseconds(jitter(rng));
      spdlog::info("node_reconnect_scheduled node={} in_ms={} reason={}", config_.node_id, wait.count(),
                   logfmt_value(why));
      if (events_.on_disconnected) events_.on_disconnected(why, wait);
      backoff_timer_.expires_after(wait);
      co_await backoff_timer_.async_wait(as_tuple_awaitable);
      backoff = std::min(backoff * 2, config_.backoff_max);
    }
    spdlog::info("node_stopped node={}", config_.node_id);
    if (events_.on_stopped) events_.on_stopped();
  }

  // One connection, from dial to disconnect. Returns why it ended.
  awaitable<std::string> session() {
    auto url = net::parse_url(config_.gateway_url);
    if (!url) {
      fatal_ = url.error();
      co_return url.error().message;
    }
    if (url->scheme != "wss" && url->scheme != "https") {
      fatal_ = make_error(Errc::invalid_argument, "--gateway must be a wss:// (or https://) URL");
      co_return fatal_->message;
    }
    auto ctx = net::make_client_tls_context(config_.tls);
    if (!ctx) {
      fatal_ = ctx.error();
      co_return ctx.error().message;
    }
    auto ws = std::make_shared<Ws>(io_, **ctx);
    if (auto failed = co_await dial(*ws, *url)) co_return *failed;
    ws->text(true);
    beast::flat_buffer buf;
    auto welcome = co_await greet(*ws, buf);
    if (auto* failed = std::get_if<std::string>(&welcome)) co_return *failed;
    const auto& w = std::get<protocol::Welcome>(welcome);

    first_refusal_.reset();
    ++session_;
    ws_ = ws;
    outbox_.clear();
    queued_delta_.clear();
    closing_ = false;
    spdlog::info("node_connected node={} provider={} gateway={} agreement_version={} agreement_accepted={}",
                 config_.node_id, w.provider_id, config_.gateway_url, w.agreement_version, w.agreement_accepted);
    if (events_.on_connected) events_.on_connected(w.provider_id);
    if (draining_) send(protocol::encode(protocol::Drain{}));
    net::spawn(io_, writer(ws, session_), "node_writer");

    std::string why = "closed";
    for (;;) {
      auto [ec, n] = co_await ws->async_read(buf, as_tuple_awaitable);
      if (ec) {
        why = ec == websocket::error::closed ? "closed by the gateway" : ec.message();
        break;
      }
      auto msg = protocol::decode(std::string_view(static_cast<const char*>(buf.data().data()), buf.size()));
      buf.consume(buf.size());
      if (!msg) {
        why = msg.error().message;
        break;
      }
      on_frame(std::move(*msg));
    }
    // The gateway has given up on (or re-routed) whatever was running.
    cancel_all_jobs();
    ws_.reset();
    wake_.cancel();
    co_return why;
  }

  // Resolve, TCP, TLS and the WebSocket upgrade with the provider token;
  // why it failed, or nullopt (fatal_ is set when retrying cannot help).
  awaitable<std::optional<std::string>> dial(Ws& ws, const net::Url& url) {
    using Why = std::optional<std::string>;
    tcp::resolver resolver(io_);
    auto [rec, endpoints] = co_await resolver.async_resolve(url.host, std::to_string(url.port), as_tuple_awaitable);
    if (rec) co_return Why("cannot resolve " + url.host + ": " + rec.message());
    auto& tcp_layer = beast::get_lowest_layer(ws);
    tcp_layer.expires_after(config_.connect_timeout);
    auto [cec, ep] = co_await tcp_layer.async_connect(endpoints, as_tuple_awaitable);
    if (cec) co_return Why("cannot connect to " + url.host + ":" + std::to_string(url.port) + ": " + cec.message());
    tcp_layer.socket().set_option(tcp::no_delay(true));
    if (Status st = net::prepare_client_stream(ws.next_layer().native_handle(), url.host, config_.tls); !st) {
      fatal_ = st.error();
      co_return Why(st.error().message);
    }
    auto [hec] = co_await ws.next_layer().async_handshake(asio::ssl::stream_base::client, as_tuple_awaitable);
    if (hec) co_return Why("TLS handshake failed: " + net::describe_tls_error(hec, ws.next_layer().native_handle()));
    tcp_layer.expires_never();

    websocket::stream_base::timeout to{};
    to.handshake_timeout = config_.connect_timeout;
    to.idle_timeout = config_.heartbeat_timeout;
    to.keep_alive_pings = true;
    ws.set_option(to);
    ws.read_message_max(protocol::kMaxFrameBytes);
    const std::string token = config_.token;
    ws.set_option(websocket::stream_base::decorator([token](websocket::request_type& req) {
      req.set(http::field::authorization, "Bearer " + token);
      req.set(http::field::user_agent, "agora-node/0.1.0");
    }));
    websocket::response_type res;
    const std::string host = net::format_host_port(url.host, url.port);
    const std::string target = url.target == "/" ? std::string(protocol::kNodePath) : url.target;
    auto [wec] = co_await ws.async_handshake(res, host, target, as_tuple_awaitable);
    if (!wec) co_return std::nullopt;
    if (res.result() != http::status::unauthorized) {
      co_return Why(fmt::format("WebSocket handshake failed ({}): {}", res.result_int(), wec.message()));
    }
    const auto now = clock_.now();
    if (!first_refusal_) first_refusal_ = now;
    if (now - *first_refusal_ >= config_.auth_grace) {
      fatal_ = make_error(Errc::invalid_argument,
                          "the gateway refused the provider token (unknown or revoked): register with "
                          "`agora providers register` and pass the token it prints");
      co_return Why(fatal_->message);
    }
    co_return Why("the gateway refused the provider token (retrying in case it was just registered)");
  }

  protocol::Hello make_hello() const {
    protocol::Hello hello;
    hello.node_id = config_.node_id;
    hello.agent = "agora/0.1.0";
    hello.region = config_.region;
    hello.hardware = hardware_;
    hello.agreements = config_.agreements;
    if (!config_.identity.public_key.empty()) hello.identity_key = crypto::to_hex(config_.identity.public_key);
    if (!config_.attestation_cmd.empty()) hello.attestation = config_.attestation_kind;
    for (const auto& m : models_) {
      const auto& info = m.engine->model_info();
      const auto stats = m.engine->stats();
      protocol::ModelAdvert a;
      a.name = m.name;
      a.sha256 = info.sha256;
      a.quantization = info.quantization;
      a.architecture = info.architecture;
      a.parameters = info.parameters;
      a.context_length = info.context_length;
      a.ctx_per_slot = stats.ctx_per_slot;
      a.slots = stats.slots_total;
      const auto caps = m.engine->chat_capabilities();
      a.capabilities = {caps.tools, caps.parallel_tool_calls, caps.grammar};
      hello.models.push_back(std::move(a));
    }
    return hello;
  }

  // Sends the hello and reads the gateway's answer: its welcome, or why
  // not (fatal_ set on a reject).
  awaitable<std::variant<protocol::Welcome, std::string>> greet(Ws& ws, beast::flat_buffer& buf) {
    auto [w1, n1] = co_await ws.async_write(asio::buffer(protocol::encode(make_hello())), as_tuple_awaitable);
    if (w1) co_return "sending hello failed: " + w1.message();
    auto [r1, n2] = co_await ws.async_read(buf, as_tuple_awaitable);
    if (r1) co_return "no welcome from the gateway: " + r1.message();
    auto first = protocol::decode(beast::buffers_to_string(buf.data()));
    buf.consume(buf.size());
    if (!first) co_return first.error().message;
    if (auto* rej = std::get_if<protocol::Reject>(&*first)) {
      fatal_ = make_error(Errc::invalid_argument, "the gateway refused this node: " + rej->message);
      co_return fatal_->message;
    }
    auto* welcome = std::get_if<protocol::Welcome>(&*first);
    if (!welcome) co_return std::string("the gateway's first frame was not a welcome");
    co_return std::move(*welcome);
  }

  awaitable<void> writer(std::shared_ptr<Ws> ws, uint64_t session) {
    auto self = shared_from_this();
    while (session == session_ && ws_ == ws) {
      if (outbox_.empty()) {
        if (closing_) break;
        wake_.expires_at(asio::steady_timer::time_point::max());
        co_await wake_.async_wait(as_tuple_awaitable);
        continue;
      }
      if (auto& front = outbox_.front(); front.delta) {
        // Only if it is the job's delta being grown (a full one was let go).
        auto q = queued_delta_.find(front.delta->job);
        if (q != queued_delta_.end() && q->second == &*front.delta) queued_delta_.erase(q);
      }
      Outgoing next = std::move(outbox_.front());
      outbox_.pop_front();
      std::string frame = std::move(next.frame);
      if (next.delta) {
        frame.reserve(64 + next.delta->text.size());
        protocol::encode_delta(frame, *next.delta);
      }
      auto [ec, n] = co_await ws->async_write(asio::buffer(frame), as_tuple_awaitable);
      if (ec) break;
    }
    if (closing_ && ws->is_open()) {
      beast::get_lowest_layer(*ws).expires_after(std::chrono::seconds(2));
      co_await ws->async_close(websocket::close_code::normal, as_tuple_awaitable);
    }
  }

  size_t model_index(const std::string& name) const {
    for (size_t i = 0; i < models_.size(); ++i) {
      if (models_[i].name == name) return i;
    }
    return models_.size();
  }

  void on_frame(protocol::Message m) {
    if (auto* job = std::get_if<protocol::Job>(&m)) {
      start_job(std::move(*job));
    } else if (auto* c = std::get_if<protocol::Cancel>(&m)) {
      auto it = jobs_.find(c->job);
      if (it != jobs_.end()) models_[it->second.model].engine->cancel(it->second.request);
    } else if (auto* a = std::get_if<protocol::AgreementOffer>(&m)) {
      on_agreement(*a);
    } else if (auto* ch = std::get_if<protocol::Challenge>(&m)) {
      on_challenge(*ch);
    } else {
      spdlog::warn("node_unexpected_frame type={}", protocol::message_type(m));
    }
  }

  // Accepts only what the operator accepted, and only a document whose text
  // matches its digest.
  void on_agreement(const protocol::AgreementOffer& a) {
    const bool intact = crypto::sha256_hex(a.text) == a.sha256;
    const bool accepted =
        intact && std::find(config_.agreements.begin(), config_.agreements.end(), a.sha256) != config_.agreements.end();
    if (accepted) {
      spdlog::info("node_agreement_accepted version={} sha256={}", a.version, a.sha256);
      send(protocol::encode(protocol::Accept{a.sha256}));
      return;
    }
    spdlog::warn("node_agreement_required version={} sha256={} intact={} note={}", a.version, a.sha256, intact,
                 logfmt_value("this node gets no jobs until its operator accepts this version of the provider "
                              "agreement: get the document from the gateway's operator (`agora providers agreement "
                              "show`), read it, and restart the node with --agreement FILE"));
    if (events_.on_agreement_required) events_.on_agreement_required(a.version, a.sha256);
  }

  // Runs the attestation command for the challenge on a thread of its own
  // (it may take seconds: a device or NVIDIA's service) and answers with
  // its output, or with why there is none.
  void on_challenge(const protocol::Challenge& ch) {
    protocol::Evidence ev;
    ev.nonce = ch.nonce;
    ev.kind = config_.attestation_kind;
    if (config_.attestation_cmd.empty()) {
      ev.kind = "nvidia_cc";  // any valid kind: the gateway asked a node that offered none
      ev.error = "this node has no attestation command";
      send(protocol::encode(ev));
      return;
    }
    if (attest_running_) {
      // Still running for an earlier challenge (perhaps of a session that
      // ended): this one runs as soon as it finishes.
      pending_challenge_ = ch;
      pending_session_ = session_;
      return;
    }
    if (attest_thread_.joinable()) attest_thread_.join();  // finished: its result was posted
    const std::string pub = crypto::to_hex(config_.identity.public_key);
    const std::string evidence_nonce =
        attest::evidence_nonce(crypto::from_hex(ch.nonce).value_or(""), config_.identity.public_key);
    AttestationCommand cmd;
    cmd.command = config_.attestation_cmd;
    cmd.nonce = evidence_nonce;
    cmd.timeout = config_.attestation_timeout;
    cmd.max_output = protocol::kMaxEvidenceBytes;
    cmd.env = {{"AGORA_EVIDENCE_NONCE", evidence_nonce},
               {"AGORA_GATEWAY_NONCE", ch.nonce},
               {"AGORA_IDENTITY_KEY", pub},
               {"AGORA_ATTESTATION_KIND", config_.attestation_kind}};
    spdlog::info("node_attestation_started node={} kind={}", config_.node_id, config_.attestation_kind);
    attest_running_ = true;
    const uint64_t session = session_;
    attest_thread_ = std::thread([weak = weak_from_this(), cancel = attest_cancel_, cmd = std::move(cmd),
                                  ev = std::move(ev), session, &io = io_, &clock = clock_]() mutable {
      auto r = run_attestation_command(cmd, *cancel, clock);
      if (cancel->load()) return;
      if (r) ev.evidence = std::move(*r);
      else ev.error = r.error().message.substr(0, protocol::kMaxEvidenceErrorBytes);
      asio::post(io, [weak, ev = std::move(ev), session]() mutable {
        auto self = weak.lock();
        if (!self) return;
        self->attest_running_ = false;
        if (ev.error.empty()) {
          spdlog::info("node_attestation_evidence node={} bytes={}", self->config_.node_id, ev.evidence.size());
        } else {
          spdlog::warn("node_attestation_failed node={} error={}", self->config_.node_id, logfmt_value(ev.error));
        }
        if (self->session_ == session) self->send(protocol::encode(ev));
        if (self->pending_challenge_) {
          auto next = std::move(*self->pending_challenge_);
          self->pending_challenge_.reset();
          if (self->pending_session_ == self->session_ && !self->stopping_) self->on_challenge(next);
        }
      });
    });
  }

  void fail_job(protocol::JobId id, const Error& e, bool retryable,
                const std::shared_ptr<protocol::sealed::ResponseSealer>& sealer = nullptr) {
    send(failed_frame(id, e, retryable, sealer.get()));
  }

  // A sealed job: refused when replayed or stale, opened with the node's
  // identity key; `sealer` then seals its output. Errors are the job's
  // failure (non-retryable: another node must not run a replay either).
  Result<protocol::GenerationRequest> open_sealed(const protocol::Job& job,
                                                std::shared_ptr<protocol::sealed::ResponseSealer>& sealer) {
    namespace sealed = protocol::sealed;
    const auto& sj = *job.sealed;
    if (config_.identity.private_key.empty()) {
      return make_error(Errc::invalid_argument, "this node has no identity key for sealed requests");
    }
    const int64_t now = clock_.unix_millis();
    if (Status st = replay_.accept(sj.enc, sj.issued_ms, now); !st) return st.error();
    sealed::Header h{job.model, job.request.max_tokens, sj.stream, sj.issued_ms, sj.recipients};
    auto opened = sealed::open_request(h, sealed::WrappedKey{config_.node_id, sj.enc, sj.key}, sj.ciphertext,
                                       config_.identity);
    if (!opened) return opened.error();
    // The header's max_tokens (what the gateway reserved and bills) bounds it.
    if (opened->request.max_tokens <= 0 || opened->request.max_tokens > h.max_tokens) {
      opened->request.max_tokens = h.max_tokens;
    }
    sealer = std::make_shared<sealed::ResponseSealer>(opened->context);
    return std::move(opened->request);
  }

  // The engine's callbacks for a job: each event is posted to the loop
  // (dropped when the session it ran for has ended).
  engine::GenerationCallbacks job_callbacks(protocol::JobId id, uint64_t session,
                                            std::shared_ptr<protocol::sealed::ResponseSealer> sealer) {
    std::weak_ptr<NodeImpl> weak = shared_from_this();
    engine::GenerationCallbacks cb;
    // Engine thread -> loop; the writer encodes (see send_delta). A sealed
    // job's chunks are sealed on the loop, in order, and never coalesced.
    cb.on_event = [weak, id, session, sealer, this](const engine::StreamEvent& ev) {
      if (auto self = weak.lock()) {
        protocol::Delta delta{id, ev.text, to_wire(ev.logprobs), std::nullopt, to_wire(ev.tool_calls)};
        asio::post(io_, [self, id, session, sealer, d = std::move(delta)]() mutable {
          if (self->session_ != session) return;
          if (!sealer) return self->send_delta(std::move(d));
          d.job = 0;
          const std::string plain = protocol::encode(protocol::Message{d});
          auto ct = sealer->seal(plain, /*final=*/false);
          if (!ct) return;  // only after the final chunk, which ends the job
          self->send(protocol::encode(protocol::Message{protocol::Delta{
              id, "", {}, protocol::SealedChunk{sealer->next_sequence() - 1, false, std::move(*ct)}}}));
        });
      }
    };
    cb.on_done = [weak, id, session, sealer, this](engine::Completion c) {
      if (auto self = weak.lock()) {
        asio::post(io_, [self, id, session, sealer, c = std::move(c)]() mutable {
          self->jobs_.erase(id);
          if (self->session_ == session) self->send(done_frame(id, c, sealer.get()));
          self->maybe_finish_drain();
        });
      }
    };
    return cb;
  }

  void start_job(protocol::Job job) {
    const size_t mi = model_index(job.model);
    if (mi == models_.size()) {
      fail_job(job.job, make_error(Errc::not_found, "this node does not serve '" + job.model + "'"), true);
      return;
    }
    if (draining_) {
      fail_job(job.job, make_error(Errc::unavailable, "node is draining"), true);
      return;
    }
    if (jobs_.contains(job.job)) {
      fail_job(job.job, make_error(Errc::invalid_argument, "duplicate job id"), false);
      return;
    }
    std::shared_ptr<protocol::sealed::ResponseSealer> sealer;
    if (job.sealed) {
      auto request = open_sealed(job, sealer);
      if (!request) {
        spdlog::warn("node_sealed_job_refused job={} error={}", job.job, logfmt_value(request.error().message));
        // A request this node cannot accept as sealed (replayed, stale,
        // altered, not for it) is refused like any bad request.
        Error e = request.error();
        if (e.code != Errc::unavailable) e.code = Errc::invalid_argument;
        fail_job(job.job, e, false);
        return;
      }
      job.request = std::move(*request);
    }
    // Schemas are checked where they are compiled: against the keywords the
    // grammar enforces (protocol/schema_rules.h), sealed or not.
    if (auto st = protocol::check_request_schemas(job.request); !st) {
      fail_job(job.job, st.error(), false, sealer);
      return;
    }
    const uint64_t session = session_;
    const protocol::JobId id = job.job;
    engine::GenerationCallbacks cb = job_callbacks(id, session, sealer);
    auto rid = models_[mi].engine->submit(to_engine(std::move(job.request)), std::move(cb));
    if (!rid) {
      const bool retry = rid.error().code == Errc::unavailable;
      fail_job(id, rid.error(), retry, sealer);
      return;
    }
    jobs_[id] = RunningJob{mi, *rid, session};
  }

  asio::io_context& io_;
  const Clock& clock_;
  NodeConfig config_;
  std::vector<ServedModel> models_;
  NodeEvents events_;
  protocol::Hardware hardware_;
  std::shared_ptr<Ws> ws_;
  struct Outgoing {
    std::string frame;                    // encoded, for everything but deltas
    std::optional<protocol::Delta> delta;  // encoded when written
  };
  std::deque<Outgoing> outbox_;
  std::unordered_map<protocol::JobId, protocol::Delta*> queued_delta_;  // a job's delta still in outbox_
  asio::steady_timer wake_;
  asio::steady_timer backoff_timer_;
  uint64_t session_ = 0;
  bool closing_ = false;
  bool draining_ = false;
  bool stopping_ = false;
  std::optional<Error> fatal_;
  std::optional<Clock::TimePoint> first_refusal_;
  std::unordered_map<protocol::JobId, RunningJob> jobs_;
  protocol::sealed::ReplayCache replay_;  // encapsulations of recent sealed jobs
  // The attestation command's thread (one at a time), and its stop flag.
  std::thread attest_thread_;
  bool attest_running_ = false;
  std::optional<protocol::Challenge> pending_challenge_;  // arrived while the command ran
  uint64_t pending_session_ = 0;
  std::shared_ptr<std::atomic<bool>> attest_cancel_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace

std::shared_ptr<Node> make_node(boost::asio::io_context& io, NodeConfig config, std::vector<ServedModel> models,
                                NodeEvents events, const Clock& clock) {
  return std::make_shared<NodeImpl>(io, std::move(config), std::move(models), std::move(events), clock);
}

Result<crypto::hpke::KeyPair> load_node_identity(const std::filesystem::path& data_dir) {
  std::error_code ec;
  if (!std::filesystem::exists(data_dir, ec)) {
    std::filesystem::create_directories(data_dir, ec);
    if (ec) return make_error(Errc::io_error, "cannot create " + data_dir.string() + ": " + ec.message());
    std::filesystem::permissions(data_dir, std::filesystem::perms::owner_all, std::filesystem::perm_options::replace,
                                 ec);
  }
  auto secret = crypto::load_secret_file(data_dir / "identity.key", "node identity key", /*create=*/true);
  if (!secret) return secret.error();
  crypto::hpke::KeyPair kp;
  kp.private_key = std::move(*secret);
  auto pub = crypto::hpke::public_key_of(kp.private_key);
  if (!pub) return pub.error();
  kp.public_key = std::move(*pub);
  return kp;
}

std::string model_name_for(const std::string& path) { return std::filesystem::path(path).stem().string(); }

}  // namespace agora::node
