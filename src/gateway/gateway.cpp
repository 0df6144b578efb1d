// The gateway's composition root: builds the parts (server, store,
// credential table, provider trust, attestation, scheduler, conversations,
// generation log), wires their hooks, and runs start and stop; the node
// snapshot and heartbeat loops. See internal.h for the state and threading
// rules.
#include <boost/json.hpp>
#include <spdlog/spdlog.h>

#include "common/log.h"
#include "crypto/random.h"
#include "gateway/internal.h"
#include "gateway/node_snapshot.h"
#include "net/spawn.h"
#include "crypto/aead.h"
#include "protocol/agreement.h"
#include "store/audit.h"
#include "store/credentials.h"
#include "store/sqlite_store.h"

namespace agora::gateway {

using asio::awaitable;
using asio::use_awaitable;
constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);

namespace {

// The agreement built into this binary becomes the current one when the
// database has none or an older version (a gateway upgraded to a build with
// a new agreement publishes it; `agora providers agreement publish` does the
// same for a document of the operator's own).
Status publish_builtin_agreement(store::Store& db, int64_t now_ms) {
  const auto& builtin = protocol::builtin_agreement();
  if (builtin.version < 1) return make_error(Errc::internal, "the built-in provider agreement does not parse");
  auto current = db.current_agreement();
  if (!current) return current.error();
  if (*current && (*current)->version >= builtin.version) return ok_status();
  store::AgreementRecord a{builtin.version, builtin.sha256, builtin.text, now_ms};
  Status st = store::publish_agreement(db, a, "gateway (built-in)");
  // Another gateway on the same database just did it, or the operator
  // published this very text under another version: keep theirs.
  if (!st && st.error().code == Errc::invalid_argument) return ok_status();
  return st;
}

}  // namespace

namespace {
Scheduler::Config scheduler_config(const GatewayConfig& c) {
  return Scheduler::Config{c.max_queue, c.queue_timeout, c.job_idle_timeout, c.max_attempts};
}
}  // namespace

GatewayImpl::GatewayImpl(asio::io_context& io, GatewayConfig config, Clock& clock)
    : io_(io),
      config_(std::move(config)),
      clock_(clock),
      snapshot_timer_(io),
      timers_(io.get_executor(), clock),
      scheduler_(router_, clock_, metrics_, scheduler_config(config_),
                 Scheduler::Hooks{[this](std::optional<Clock::TimePoint> at) {
                                    if (at) scheduler_timer_->arm(*at);
                                    else scheduler_timer_->cancel();
                                  },
                                  [this](Job& job, const protocol::Done& d) {
                                    generations_.record(job, d.usage, d.timings, protocol::FinishReason::cancelled);
                                  }}),
      scheduler_timer_(timers_.make_timer([this] { scheduler_.on_time(clock_.now()); })) {}

GatewayImpl::~GatewayImpl() {
  if (attest_pool_) {
    attest_pool_->stop();  // verifications not started are dropped; one in progress ends
    attest_pool_->join();
  }
  if (store_) store_->stop();
}

Status GatewayImpl::start() {
  std::error_code fs_ec;
  std::filesystem::create_directories(config_.data_dir, fs_ec);
  if (fs_ec) {
    return make_error(Errc::io_error, "cannot create data directory " + config_.data_dir.string() + ": " +
                                          fs_ec.message());
  }
  const Server::Settings server_settings{config_.listen,   config_.data_dir / "tls", config_.tls_cert,
                                         config_.tls_key,  config_.tls_names,        config_.max_connections};
  server_ = std::make_shared<Server>(io_);
  if (Status st = server_->load_tls(server_settings); !st) return st;

  auto verifiers = load_verifiers(config_);
  if (!verifiers) return verifiers.error();
  if (!verifiers->empty()) attest_pool_ = std::make_unique<asio::thread_pool>(1);
  attestation_ = std::make_unique<AttestationLifecycle>(
      router_, timers_, metrics_, std::move(*verifiers),
      AttestationLifecycle::Settings{config_.attestation_timeout, config_.attestation_refresh, config_.attestation_retry},
      attestation_hooks());

  if (Status st = open_store(); !st) return st;
  if (Status st = server_->listen(server_settings); !st) return st;

  std::weak_ptr<GatewayImpl> accepting = shared_from_this();
  server_->start([accepting](tcp::socket socket, std::shared_ptr<asio::ssl::context> ssl) {
    auto self = accepting.lock();
    if (!self) return;
    net::spawn(self->io_, run_http_session(self, std::move(socket), std::move(ssl)), "http_session");
  });
  net::spawn(io_, snapshot_loop(), "snapshot_loop");
  net::spawn(io_, heartbeat_loop(), "heartbeat_loop");
  std::string kinds;
  for (const auto& [kind, v] : attestation_->verifiers()) kinds += (kinds.empty() ? "" : ",") + kind;
  spdlog::info("gateway_listening url={} data_dir={} attestation={}", base_url(),
               logfmt_value(config_.data_dir.string()), kinds.empty() ? "none" : kinds);
  return ok_status();
}

// The master secret, the credential table and provider trust over it,
// the store (its writer and control connections, the audit signer) and
// the parts that write through it.
Status GatewayImpl::open_store() {
  auto master = crypto::MasterSecret::load(
      config_.master_key ? *config_.master_key : crypto::default_master_secret_path(config_.data_dir), /*create=*/true);
  if (!master) return master.error();
  master_ = *master;
  credentials_ = std::make_unique<CredentialTable>(master_);
  trust_ = std::make_unique<ProviderTrust>(*credentials_, clock_, trust_hooks());

  auto writer_db = store::open_sqlite_store(store::database_path(config_.data_dir));
  if (!writer_db) return writer_db.error();
  auto control_db = store::open_sqlite_store(store::database_path(config_.data_dir));
  if (!control_db) return control_db.error();
  if (Status st = publish_builtin_agreement(**control_db, clock_.unix_millis()); !st) return st;
  auto signer = store::audit_signer(*master_);
  if (!signer) return signer.error();
  StoreWorker::Options store_options;
  store_options.audit_signer = std::move(*signer);
  store_options.checkpoint_interval = config_.audit_checkpoint_interval;
  store_options.clock = &clock_;
  std::weak_ptr<GatewayImpl> weak = shared_from_this();
  store_ = std::make_unique<StoreWorker>(std::move(*writer_db), std::move(*control_db), io_.get_executor(),
                                         StoreWorker::Callbacks{[weak](StoreWorker::Credentials c) {
                                           if (auto self = weak.lock()) self->on_credentials(std::move(c));
                                         }},
                                         store_options);
  if (Status st = store_->start(); !st) return st;
  generations_.attach(store_.get());
  conversations_ = std::make_shared<ConversationService>(io_, store_.get(), std::make_shared<ConversationVault>(master_),
                                                         config_.conversation_ttl, clock_);
  return ok_status();
}

void GatewayImpl::stop(std::chrono::milliseconds grace) {
  auto self = shared_from_this();
  asio::post(io_, [self, grace] {
    if (self->stopping_) return;
    self->stopping_ = true;
    self->scheduler_.stop();
    if (self->server_) self->server_->close();
    // Let running requests finish, then close the nodes.
    net::spawn(
        self->io_,
        [self, grace]() -> awaitable<void> {
          asio::steady_timer t(self->io_);
          const auto until = self->clock_.now() + grace;
          while ((self->scheduler_.running() > 0 || self->scheduler_.queued() > 0) && self->clock_.now() < until) {
            t.expires_after(std::chrono::milliseconds(20));
            co_await t.async_wait(as_tuple_awaitable);
          }
          for (auto& [id, n] : self->conns_) n->close();
          if (self->server_) self->server_->cancel_connections();
          self->snapshot_nodes();
          if (self->store_) self->store_->stop();
          co_return;
        },
        "stop");
  });
}

Gauges GatewayImpl::gauges() const {
  Gauges g;
  g.nodes_connected = static_cast<int64_t>(router_.nodes().size());
  g.queue_depth = static_cast<int64_t>(scheduler_.queued());
  g.slots_total = router_.slots_total();
  g.slots_busy = router_.slots_busy();
  g.http_connections = server_ ? server_->connections() : 0;
  for (size_t l = 0; l < kLevels; ++l) g.nodes_by_level[l] = router_.nodes_at(static_cast<Level>(l));
  return g;
}

// ------------------------------------------------------------- credentials

const KeyEntry* GatewayImpl::authenticate(std::string_view authorization, bool admin) const {
  return credentials_ ? credentials_->authenticate(authorization, admin, clock_.unix_millis()) : nullptr;
}

const ProviderEntry* GatewayImpl::authenticate_provider(std::string_view authorization) const {
  return credentials_ ? credentials_->authenticate_provider(authorization) : nullptr;
}

void GatewayImpl::on_credentials(StoreWorker::Credentials c) {
  credentials_->load(std::move(c.keys), c.providers, clock_.unix_millis(),
                     KeyLimits{config_.default_rpm, config_.default_tpm, config_.default_max_concurrent});
  spdlog::debug("credentials_loaded keys={} legacy_keys={} providers={}", credentials_->key_count(),
                credentials_->legacy_key_count(), credentials_->provider_count());
  trust_->credentials_changed(std::move(c.agreement));
}

ProviderTrust::Hooks GatewayImpl::trust_hooks() {
  // A session already closing is left alone: it is going away.
  auto open_conn = [this](ConnId id) -> NodeConn* {
    auto it = conns_.find(id);
    return it == conns_.end() || it->second->closing ? nullptr : it->second.get();
  };
  return ProviderTrust::Hooks{
      [open_conn](ConnId id) { return open_conn(id) != nullptr; },
      [open_conn](ConnId id, const std::string& frame) {
        if (NodeConn* n = open_conn(id)) n->send(frame);
      },
      [open_conn](ConnId id) {
        if (NodeConn* n = open_conn(id)) n->close();
      },
      [this, open_conn](ConnId id, bool held) {
        if (!open_conn(id)) return;
        router_.set_held(id, held);
        if (const NodeInfo* info = router_.find(id); info && !held) scheduler_.drain_models_of(*info);
      },
      [this](store::AcceptanceRecord a, store::AuditEvent e) {
        if (store_) store_->accept_agreement(std::move(a), std::move(e));
      }};
}

void GatewayImpl::audit(std::string kind, std::string provider_id, boost::json::object data) {
  if (!store_) return;
  store_->audit(store::AuditEvent{clock_.unix_millis(), std::move(kind), "", std::move(provider_id),
                                  boost::json::serialize(data)});
}

namespace {
// Tokens a prompt may take, for the rate limiter's reservation: about 3
// bytes per token (real text averages ~4 for Llama-3's tokenizer), plus the
// chat template's few tokens per message. The real count settles it.
int64_t estimate_prompt_tokens(const protocol::GenerationRequest& g) {
  int64_t bytes = 0, tokens = 8;
  for (const auto& m : g.messages) {
    bytes += static_cast<int64_t>(m.content.size());
    tokens += 6;
  }
  if (g.prompt) bytes += static_cast<int64_t>(g.prompt->size());
  return tokens + (bytes + 2) / 3;
}
}  // namespace

RateLimiter::Decision GatewayImpl::admit(const KeyEntry& key, Job& job) {
  const auto& r = job.request;
  int64_t reserve = estimate_prompt_tokens(r.generation);
  // A sealed prompt is reserved by its ciphertext's size.
  if (r.sealed) reserve += (static_cast<int64_t>(r.sealed->ciphertext.size()) + 2) / 3;
  if (r.max_tokens_given) {
    reserve += r.generation.max_tokens;
  } else {
    reserve += config_.default_completion_reservation;
    // Without an explicit max_tokens, never refuse as "too large": the
    // reservation is capped at the limit and the real usage settles it.
    if (key.limits.tpm > 0) reserve = std::min(reserve, key.limits.tpm);
  }
  auto d = limiter_->admit(key.lineage, key.limits, reserve, clock_.now());
  if (d.refusal == RateLimiter::Refusal::none) {
    job.admission.limiter = limiter_;
    job.admission.lineage = key.lineage;
    job.admission.reserved = reserve;
    job.admission.clock = &clock_;
  }
  return d;
}

// -------------------------------------------------------------------- jobs

std::shared_ptr<Job> GatewayImpl::new_job(ChatRequest request, const KeyEntry& key) {
  auto job = std::make_shared<Job>();
  job->generation_id = "gen-" + crypto::random_base62(24);
  job->key_id = key.id;
  job->request = std::move(request);
  job->created_unix = clock_.unix_millis() / 1000;
  job->admitted = clock_.now();
  return job;
}

int32_t GatewayImpl::context_for(const std::string& model) const { return router_.context_for(model); }

AttestationLifecycle::Hooks GatewayImpl::attestation_hooks() {
  AttestationLifecycle::Hooks h;
  h.verify = [this](std::shared_ptr<const attest::AttestationVerifier> verifier, std::string evidence,
                    std::string expected, int64_t now_ms, std::function<void(Result<attest::Verdict>)> done) {
    asio::post(*attest_pool_, [weak = weak_from_this(), verifier = std::move(verifier), evidence = std::move(evidence),
                               expected = std::move(expected), now_ms, done = std::move(done), &io = io_]() mutable {
      auto verdict = verifier->verify(evidence, expected, now_ms);
      asio::post(io, [weak, done = std::move(done), verdict = std::move(verdict)]() mutable {
        if (weak.lock()) done(std::move(verdict));
      });
    });
  };
  h.level_changed = [this](const NodeInfo& node) {
    scheduler_.drain_models_of(node);
    nodes_changed();
  };
  h.audit = [this](std::string kind, std::string provider_id, boost::json::object data) {
    audit(std::move(kind), std::move(provider_id), std::move(data));
  };
  h.close = [this](ConnId conn, std::string reason) {
    auto it = conns_.find(conn);
    if (it == conns_.end()) return;
    it->second->close_reason = std::move(reason);
    it->second->close(net::ws::kClosePolicy);
  };
  return h;
}

void GatewayImpl::nodes_changed() {
  if (snapshot_due_ || stopping_) return;  // stop() takes the last snapshot
  snapshot_due_ = true;
  snapshot_timer_.expires_after(kSnapshotDelay);
  snapshot_timer_.async_wait([weak = weak_from_this()](boost::system::error_code) {
    auto self = weak.lock();
    if (!self) return;
    self->snapshot_due_ = false;
    self->snapshot_nodes();
  });
}

void GatewayImpl::snapshot_nodes() {
  if (store_) store_->set_nodes(node_records(router_.nodes(), clock_.unix_millis()));
}

awaitable<void> GatewayImpl::snapshot_loop() {
  auto self = shared_from_this();
  asio::steady_timer t(io_);
  for (uint64_t tick = 1; !stopping_; ++tick) {
    t.expires_after(std::chrono::seconds(1));
    co_await t.async_wait(as_tuple_awaitable);
    if (stopping_) break;
    snapshot_nodes();
    // Rate-limit state of keys that went quiet (full buckets) is dropped.
    if (tick % 10 == 0) limiter_->prune(clock_.now());
    // Expired conversations are deleted, and their bytes purged.
    if (tick % 60 == 0 && store_) {
      store_->control([now = clock_.unix_millis()](store::Store& s) {
        auto n = s.delete_expired_conversations(now);
        if (n && *n > 0) {
          (void)s.purge_deleted();
          spdlog::info("conversations_expired count={}", *n);
        }
      });
    }
  }
}

std::shared_ptr<Gateway> make_gateway(asio::io_context& io, GatewayConfig config, Clock& clock) {
  return std::make_shared<GatewayImpl>(io, std::move(config), clock);
}

}  // namespace agora::gateway
