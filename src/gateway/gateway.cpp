// The gateway's core: listener, credentials, job scheduling and the node
// side of the protocol. See internal.h for the state and threading rules.
#include <boost/json.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <thread>

#include "common/log.h"
#include "crypto/random.h"
#include "crypto/sha256.h"
#include "gateway/internal.h"
#include "net/spawn.h"
#include "net/url.h"
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
                                    record(job, d.usage, d.timings, engine::FinishReason::cancelled);
                                  }}),
      scheduler_timer_(timers_.make_timer([this] { scheduler_.on_time(clock_.now()); })) {}

GatewayImpl::~GatewayImpl() {
  if (attest_pool_) {
    attest_pool_->stop();  // verifications not started are dropped; one in progress ends
    attest_pool_->join();
  }
  if (store_) store_->stop();
}

std::string GatewayImpl::base_url() const {
  std::string host = host_;
  if (host == "0.0.0.0" || host.empty()) host = "127.0.0.1";
  if (host == "::") host = "::1";
  return "https://" + net::format_host_port(host, port_);
}

Status GatewayImpl::start() {
  std::error_code fs_ec;
  std::filesystem::create_directories(config_.data_dir, fs_ec);
  if (fs_ec) {
    return make_error(Errc::io_error, "cannot create data directory " + config_.data_dir.string() + ": " +
                                          fs_ec.message());
  }
  // TLS: a configured certificate, or a local CA + server certificate.
  std::filesystem::path cert, key;
  if (config_.tls_cert || config_.tls_key) {
    if (!config_.tls_cert || !config_.tls_key) {
      return make_error(Errc::invalid_argument, "--tls-cert and --tls-key must be given together");
    }
    cert = *config_.tls_cert;
    key = *config_.tls_key;
  } else {
    auto files = net::ensure_self_signed_tls(config_.data_dir / "tls", config_.tls_names);
    if (!files) return files.error();
    tls_files_ = *files;
    cert = tls_files_.cert;
    key = tls_files_.key;
  }
  auto ctx = net::make_server_tls_context(cert, key);
  if (!ctx) return ctx.error();
  ssl_ = *ctx;

  auto verifiers = load_verifiers(config_);
  if (!verifiers) return verifiers.error();
  verifiers_ = std::move(*verifiers);
  if (!verifiers_.empty()) attest_pool_ = std::make_unique<asio::thread_pool>(1);
  // A nonce outlives the time a node has to answer it.
  nonces_ = attest::NonceRegistry(std::max<int64_t>(5 * 60 * 1000, config_.attestation_timeout.count() + 60'000));

  auto master = crypto::MasterSecret::load(
      config_.master_key ? *config_.master_key : crypto::default_master_secret_path(config_.data_dir), /*create=*/true);
  if (!master) return master.error();
  master_ = *master;
  vault_ = std::make_shared<ConversationVault>(master_);

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
  std::weak_ptr<GatewayImpl> weak = shared_from_this();
  store_ = std::make_unique<StoreWorker>(std::move(*writer_db), std::move(*control_db), io_.get_executor(),
                                         StoreWorker::Callbacks{[weak](StoreWorker::Credentials c) {
                                           if (auto self = weak.lock()) self->on_credentials(std::move(c));
                                         }},
                                         store_options);
  if (Status st = store_->start(); !st) return st;

  auto hp = net::parse_host_port(config_.listen, 8443);
  if (!hp) return hp.error();
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(hp->host.empty() ? "0.0.0.0" : hp->host, ec);
  if (ec) return make_error(Errc::invalid_argument, "--listen: '" + hp->host + "' is not an IP address");
  tcp::endpoint ep(addr, hp->port);
  acceptor_.emplace(io_);
  acceptor_->open(ep.protocol(), ec);
  if (!ec) acceptor_->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_->bind(ep, ec);
  if (!ec) acceptor_->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return make_error(Errc::io_error, "cannot listen on " + config_.listen + ": " + ec.message());
  }
  host_ = hp->host.empty() ? "0.0.0.0" : hp->host;
  port_ = acceptor_->local_endpoint().port();

  auto self = shared_from_this();
  net::spawn(io_, accept_loop(), "accept_loop");
  net::spawn(io_, snapshot_loop(), "snapshot_loop");
  net::spawn(io_, heartbeat_loop(), "heartbeat_loop");
  std::string kinds;
  for (const auto& [kind, v] : verifiers_) kinds += (kinds.empty() ? "" : ",") + kind;
  spdlog::info("gateway_listening url={} data_dir={} attestation={}", base_url(),
               logfmt_value(config_.data_dir.string()), kinds.empty() ? "none" : kinds);
  return ok_status();
}

void GatewayImpl::stop(std::chrono::milliseconds grace) {
  auto self = shared_from_this();
  asio::post(io_, [self, grace] {
    if (self->stopping_) return;
    self->stopping_ = true;
    self->scheduler_.stop();
    boost::system::error_code ec;
    if (self->acceptor_) self->acceptor_->close(ec);
    // Let running requests finish, then close the nodes.
    net::spawn(
        self->io_,
        [self, grace]() -> awaitable<void> {
          asio::steady_timer t(self->io_);
          const auto until = std::chrono::steady_clock::now() + grace;
          while ((self->scheduler_.running() > 0 || self->scheduler_.queued() > 0) && std::chrono::steady_clock::now() < until) {
            t.expires_after(std::chrono::milliseconds(20));
            co_await t.async_wait(as_tuple_awaitable);
          }
          for (auto& [id, n] : self->conns_) n->close();
          for (auto& [id, weak] : self->http_streams_) {
            if (auto s = weak.lock()) beast::get_lowest_layer(*s).cancel();
          }
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
  g.http_connections = http_connections_;
  for (size_t l = 0; l < kLevels; ++l) g.nodes_by_level[l] = router_.nodes_at(static_cast<Level>(l));
  return g;
}

// ------------------------------------------------------------------ accept

awaitable<void> GatewayImpl::accept_loop() {
  auto self = shared_from_this();
  while (!stopping_) {
    auto [ec, socket] = co_await acceptor_->async_accept(as_tuple_awaitable);
    if (ec) {
      if (stopping_ || ec == asio::error::operation_aborted) break;
      spdlog::warn("gateway_accept_failed error={}", logfmt_value(ec.message()));
      // Out of file descriptors and the like: back off briefly.
      asio::steady_timer t(io_, std::chrono::milliseconds(50));
      co_await t.async_wait(as_tuple_awaitable);
      continue;
    }
    if (static_cast<size_t>(http_connections_) >= config_.max_connections) {
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    net::spawn(io_, run_http_session(self, std::move(socket), ssl_), "http_session");
  }
}

// ------------------------------------------------------------- credentials

namespace {


std::string_view bearer(std::string_view authorization) {
  constexpr std::string_view kPrefix = "Bearer ";
  if (authorization.size() <= kPrefix.size()) return {};
  if (!std::equal(kPrefix.begin(), kPrefix.end(), authorization.begin(),
                  [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) ==
                                              std::tolower(static_cast<unsigned char>(b)); })) {
    return {};
  }
  auto token = authorization.substr(kPrefix.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
  return token;
}
}  // namespace

const KeyEntry* GatewayImpl::authenticate(std::string_view authorization, bool admin) const {
  auto key = bearer(authorization);
  if (key.size() < 8 || key.size() > 256 || !key.starts_with(admin ? "at_" : "gk_")) return nullptr;
  // Looked up by keyed hash: the table never holds a key, and a hash lookup
  // does not leak a key's bytes through timing.
  const KeyEntry* entry = nullptr;
  if (auto it = keys_.find(master_->hash_api_key(key)); it != keys_.end()) {
    entry = &it->second;
  } else if (!legacy_keys_.empty()) {
    if (auto lit = legacy_keys_.find(crypto::sha256_hex(key)); lit != legacy_keys_.end()) entry = &lit->second;
  }
  if (!entry || entry->admin != admin) return nullptr;
  if (entry->expires_ms && clock_.unix_millis() >= *entry->expires_ms) return nullptr;
  return entry;
}

const ProviderEntry* GatewayImpl::authenticate_provider(std::string_view authorization) const {
  auto token = bearer(authorization);
  if (token.size() < 8 || token.size() > 256 || !token.starts_with("pt_")) return nullptr;
  if (auto it = providers_.find(master_->hash_provider_token(token)); it != providers_.end()) return &it->second;
  if (legacy_providers_.empty()) return nullptr;
  auto it = legacy_providers_.find(crypto::sha256_hex(token));
  return it == legacy_providers_.end() ? nullptr : &it->second;
}

void GatewayImpl::on_credentials(StoreWorker::Credentials c) {
  auto& keys = c.keys;
  auto& providers = c.providers;
  const int64_t now = clock_.unix_millis();
  auto resolve = [](const store::Limit& own, int64_t fallback) { return own ? *own : fallback; };
  std::unordered_map<std::string, KeyEntry> k, legacy_k;
  for (auto& r : keys) {
    if (!r.active(now)) continue;
    KeyEntry e;
    e.id = r.id;
    e.name = r.name;
    e.lineage = r.lineage_id.empty() ? r.id : r.lineage_id;
    e.admin = r.role == "admin";
    e.expires_ms = r.expires_ms;
    e.limits = KeyLimits{resolve(r.rpm, config_.default_rpm), resolve(r.tpm, config_.default_tpm),
                         resolve(r.max_concurrent, config_.default_max_concurrent)};
    e.models = std::move(r.models);
    (r.hash_scheme == store::kHashLegacy ? legacy_k : k).emplace(r.hash, std::move(e));
  }
  std::unordered_map<std::string, ProviderEntry> p, legacy_p;
  std::unordered_set<std::string> active, suspended;
  for (auto& r : providers) {
    if (!r.revoked_ms && r.status != store::kProviderTerminated) {
      active.insert(r.id);
      if (r.status == store::kProviderSuspended) suspended.insert(r.id);
      (r.hash_scheme == store::kHashLegacy ? legacy_p : p).emplace(r.hash, ProviderEntry{r.id, r.name});
    }
  }
  keys_ = std::move(k);
  legacy_keys_ = std::move(legacy_k);
  providers_ = std::move(p);
  legacy_providers_ = std::move(legacy_p);
  suspended_providers_ = std::move(suspended);
  active_providers_ = std::move(active);
  const bool new_agreement = c.agreement && (!agreement_ || agreement_->sha256 != c.agreement->sha256);
  if (new_agreement) {
    agreement_ = std::move(c.agreement);
    spdlog::info("agreement_current version={} sha256={}", agreement_->version, agreement_->sha256);
  }
  spdlog::debug("credentials_loaded keys={} legacy_keys={} providers={}", keys_.size(), legacy_keys_.size(),
                providers_.size() + legacy_providers_.size());
  // A revoked or terminated provider's nodes are disconnected at once; a
  // suspended one's are held; a new agreement holds every node that has not
  // accepted it (its hello may already have).
  // Encoded once for every node it goes to.
  const std::string offer =
      new_agreement ? protocol::encode(protocol::AgreementOffer{agreement_->version, agreement_->sha256, agreement_->text})
                    : std::string();
  for (auto& [id, n] : conns_) {
    if (n->closing) continue;
    if (!n->provider_id.empty() && !active_providers_.contains(n->provider_id)) {
      spdlog::info("node_disconnected_revoked node={} provider={}", n->node_id, n->provider_id);
      n->close();
      continue;
    }
    n->suspended = suspended_providers_.contains(n->provider_id);
    if (new_agreement) {
      n->agreed = false;
      if (std::find(n->agreements.begin(), n->agreements.end(), agreement_->sha256) != n->agreements.end()) {
        agreement_accepted(*n, "hello");
      } else {
        n->send(offer);
        spdlog::info("node_agreement_required node={} provider={} version={}", n->node_id, n->provider_id,
                     agreement_->version);
      }
    }
    update_hold(*n);
  }
}

void GatewayImpl::update_hold(NodeConn& n) {
  NodeInfo* info = router_.find(n.id);
  if (!info) return;
  const bool hold = !n.agreed || n.suspended;
  if (info->held == hold) return;
  router_.set_held(n.id, hold);
  spdlog::info("node_{} node={} provider={} agreed={} suspended={}", hold ? "held" : "released", n.node_id,
               n.provider_id, n.agreed, n.suspended);
  if (!hold) scheduler_.drain_models_of(*info);
}

void GatewayImpl::agreement_accepted(NodeConn& n, const char* how) {
  n.agreed = true;
  if (!store_ || !agreement_) return;
  const int64_t now = clock_.unix_millis();
  store::AcceptanceRecord a{n.provider_id, n.node_id, agreement_->version, agreement_->sha256, now};
  store::AuditEvent e{now, "provider.agreement_accepted", "", n.provider_id,
                      boost::json::serialize(boost::json::object{{"node_id", n.node_id},
                                                                 {"version", agreement_->version},
                                                                 {"sha256", agreement_->sha256},
                                                                 {"via", how}})};
  store_->accept_agreement(std::move(a), std::move(e));
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
int64_t estimate_prompt_tokens(const engine::GenerationRequest& g) {
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

void GatewayImpl::record(Job& job, const engine::Usage& usage, const engine::Timings& t,
                         engine::FinishReason finish) {
  job.admission.used = std::max<int64_t>(job.admission.used, int64_t{usage.prompt_tokens} + usage.completion_tokens);
  store::GenerationRecord r;
  r.id = job.generation_id;
  r.key_id = job.key_id;
  r.provider_id = job.provider_id;
  r.node_id = job.node_id;
  r.model = job.request.model;
  r.model_sha256 = job.model_sha256;
  r.attestation = std::string(level_name(job.attestation));
  r.finish_reason = engine::finish_reason_name(finish);
  r.stream = job.request.stream;
  r.prompt_tokens = usage.prompt_tokens;
  r.completion_tokens = usage.completion_tokens;
  r.cached_prompt_tokens = usage.cached_prompt_tokens;
  r.queued_ms = job.dispatched == Clock::TimePoint{} ? 0 : to_millis(job.dispatched - job.admitted);
  r.prompt_ms = t.prompt_ms;
  r.decode_ms = t.decode_ms;
  r.total_ms = to_millis(clock_.now() - job.admitted);
  r.created_ms = job.created_unix * 1000;
  metrics_.tokens(usage.prompt_tokens, usage.completion_tokens);
  constexpr size_t kRecent = 10'000;
  recent_order_.push_back(r.id);
  recent_[r.id] = r;
  while (recent_order_.size() > kRecent) {
    recent_.erase(recent_order_.front());
    recent_order_.pop_front();
  }
  if (store_) store_->record(std::move(r));
}

void GatewayImpl::load_conversation(const std::string& owner, const std::string& id,
                                    std::function<void(Result<std::optional<Conversation>>)> done) {
  if (!store_) {
    asio::post(io_, [done = std::move(done)] { done(std::optional<Conversation>()); });
    return;
  }
  const int64_t now = clock_.unix_millis();
  auto shared_done = std::make_shared<std::function<void(Result<std::optional<Conversation>>)>>(std::move(done));
  // The control thread holds no reference to the gateway (were it the last
  // one, the gateway would be destroyed there, joining that very thread);
  // the io_context outlives both.
  const bool queued = store_->control([io = &io_, vault = vault_, owner, id, now, shared_done](store::Store& s) {
    Result<std::optional<Conversation>> out = std::optional<Conversation>();
    const std::string mac = vault->id_mac(owner, id);
    auto row = s.get_conversation(owner, mac);
    if (!row) {
      out = row.error();
    } else if (*row && (*row)->expires_ms && *(*row)->expires_ms <= now) {
      // Expired: gone now, even before the sweep (whose purge also covers
      // a busy moment here).
      if (auto d = s.delete_conversation(owner, mac); d && *d) (void)s.purge_deleted();
    } else if (*row) {
      auto c = vault->open(**row);
      if (!c) out = c.error();
      else out = std::optional<Conversation>(std::move(*c));
    }
    asio::post(*io, [shared_done, out = std::move(out)]() mutable { (*shared_done)(std::move(out)); });
  });
  if (!queued) {
    asio::post(io_, [shared_done] { (*shared_done)(make_error(Errc::unavailable, "the gateway is stopping")); });
  }
}

void GatewayImpl::save_conversation(const Job& job) {
  if (!store_ || !job.conversation) return;
  const auto& ref = *job.conversation;
  const int64_t now = clock_.unix_millis();
  std::optional<int64_t> expires;
  if (ref.ttl_s) expires = now + *ref.ttl_s * 1000;
  else if (config_.conversation_ttl.count() > 0) expires = now + config_.conversation_ttl.count();
  const bool ttl_given = ref.ttl_s.has_value();
  const bool queued = store_->control([vault = vault_, owner = ref.owner, id = ref.id, own = ref.own_messages,
                                       answer = job.answer, now, expires, ttl_given](store::Store& s) mutable {
    const std::string mac = vault->id_mac(owner, id);
    Conversation c;
    c.created_ms = now;
    auto row = s.get_conversation(owner, mac);
    if (!row) {
      // Never overwrite what could not be read: the history would be lost.
      spdlog::error("conversation_read_failed owner={} error={}", owner, logfmt_value(row.error().to_string()));
      return;
    }
    if (*row && !((*row)->expires_ms && *(*row)->expires_ms <= now)) {
      auto old = vault->open(**row);
      if (!old) {
        spdlog::error("conversation_unreadable owner={} error={}", owner, logfmt_value(old.error().to_string()));
        return;  // never overwrite what cannot be read (a wrong master secret)
      }
      c = std::move(*old);
      // A turn without conversation_ttl keeps the conversation's own TTL.
      if (!ttl_given && c.expires_ms) expires = now + (*c.expires_ms - c.updated_ms);
    }
    append_exchange(c, own, std::move(answer));
    c.updated_ms = now;
    c.expires_ms = expires;
    auto sealed = vault->seal(owner, id, c);
    if (!sealed) {
      spdlog::error("conversation_seal_failed owner={} error={}", owner, logfmt_value(sealed.error().to_string()));
      return;
    }
    if (Status st = s.put_conversation(*sealed); !st) {
      spdlog::error("conversation_write_failed owner={} error={}", owner, logfmt_value(st.error().to_string()));
    }
    for (auto& m : c.messages) crypto::secure_wipe(m.content);
  });
  if (!queued) spdlog::warn("conversation_not_saved owner={} reason=\"the gateway is stopping\"", ref.owner);
}

void GatewayImpl::delete_conversation(const std::string& owner, const std::string& id,
                                      std::function<void(Result<bool>)> done) {
  auto fail_stopped = [this](std::function<void(Result<bool>)>& d) {
    asio::post(io_, [d = std::move(d)] { d(make_error(Errc::unavailable, "the gateway is stopping")); });
  };
  if (!store_) return fail_stopped(done);
  auto shared_done = std::make_shared<std::function<void(Result<bool>)>>(std::move(done));
  const bool queued = store_->control([io = &io_, weak = weak_from_this(), vault = vault_, owner, id,
                                       shared_done](store::Store& s) {
    Result<bool> out = s.delete_conversation(owner, vault->id_mac(owner, id));
    const bool purge = out && *out;
    Status st = purge ? s.purge_deleted() : ok_status();
    asio::post(*io, [weak, shared_done, out = std::move(out), purge, st]() mutable {
      auto self = weak.lock();
      if (self && purge && !st && st.error().code == Errc::unavailable) {
        // A reader holds the WAL: retry from the loop (the control thread
        // never sleeps), then answer; the row itself is already gone.
        self->retry_purge(10, [shared_done, out = std::move(out)]() mutable { (*shared_done)(std::move(out)); });
        return;
      }
      if (purge && !st) spdlog::warn("conversation_purge_failed error={}", logfmt_value(st.error().to_string()));
      (*shared_done)(std::move(out));
    });
  });
  if (!queued) fail_stopped(*shared_done);
}

void GatewayImpl::retry_purge(int attempts, std::function<void()> then) {
  auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(50));
  timer->async_wait([self = shared_from_this(), timer, attempts, then = std::move(then)](boost::system::error_code) mutable {
    if (!self->store_) return then();
    auto shared_then = std::make_shared<std::function<void()>>(std::move(then));
    const bool queued = self->store_->control([io = &self->io_, weak = std::weak_ptr<GatewayImpl>(self), attempts,
                                               shared_then](store::Store& s) {
      Status st = s.purge_deleted();
      asio::post(*io, [weak, attempts, shared_then, st]() mutable {
        auto again = weak.lock();
        if (again && !st && st.error().code == Errc::unavailable && attempts > 1) {
          again->retry_purge(attempts - 1, std::move(*shared_then));
          return;
        }
        if (!st) spdlog::warn("conversation_purge_incomplete error={}", logfmt_value(st.error().to_string()));
        (*shared_then)();
      });
    });
    if (!queued) (*shared_then)();
  });
}

int32_t GatewayImpl::context_for(const std::string& model) const { return router_.context_for(model); }

const store::GenerationRecord* GatewayImpl::find_recent(const std::string& id) const {
  auto it = recent_.find(id);
  return it == recent_.end() ? nullptr : &it->second;
}

uint64_t GatewayImpl::http_opened(std::weak_ptr<TlsStream> stream) {
  ++http_connections_;
  const uint64_t id = next_http_++;
  http_streams_.emplace(id, std::move(stream));
  return id;
}

void GatewayImpl::http_closed(uint64_t id) {
  --http_connections_;
  http_streams_.erase(id);
}

void GatewayImpl::lookup_generation(const std::string& id,
                                    std::function<void(std::optional<store::GenerationRecord>)> done) {
  if (!store_) {
    asio::post(io_, [done = std::move(done)] { done(std::nullopt); });
    return;
  }
  store_->lookup_generation(id, [done = std::move(done)](Result<store::GenerationRecord> r) {
    if (r) done(std::move(*r));
    else done(std::nullopt);
  });
}

// ------------------------------------------------------------------- nodes

namespace {

std::optional<std::string> check_hello(const protocol::Hello& h) {
  if (h.protocol != protocol::kProtocolVersion) {
    return fmt::format("protocol version {} is not supported (this gateway speaks {})", h.protocol,
                       protocol::kProtocolVersion);
  }
  // Printable ASCII without spaces for what goes into log lines as is: a
  // node cannot forge a line (or an audit checkpoint) in the operator's logs.
  auto printable = [](std::string_view v, bool spaces) {
    for (unsigned char c : v) {
      if (c < (spaces ? 0x20 : 0x21) || c > 0x7e) return false;
    }
    return true;
  };
  if (h.node_id.empty() || h.node_id.size() > 128 || !printable(h.node_id, false)) {
    return std::string("node_id must be 1 to 128 printable ASCII characters without spaces");
  }
  if (!printable(h.region, false)) return std::string("region must be printable ASCII without spaces");
  if (h.models.empty() || h.models.size() > 64) return std::string("a node must serve 1 to 64 models");
  if (!h.attestation.empty() && h.identity_key.empty()) {
    return std::string("attestation binds the node's identity key: a node offering attestation must send identity_key");
  }
  if (h.region.size() > 64) return std::string("region must be at most 64 characters");
  std::unordered_set<std::string> names;
  for (const auto& m : h.models) {
    if (m.name.empty() || m.name.size() > 256 || !printable(m.name, false)) {
      return std::string("model names must be 1 to 256 printable ASCII characters without spaces");
    }
    if (!names.insert(m.name).second) return "model '" + m.name + "' is listed twice";
    if (m.slots < 1 || m.slots > 4096) return "model '" + m.name + "': slots must be 1 to 4096";
    if (m.ctx_per_slot < 1) return "model '" + m.name + "': ctx_per_slot must be positive";
    if (m.sha256.size() != 64) return "model '" + m.name + "': sha256 must be 64 hex characters";
  }
  return std::nullopt;
}

// Tells a node why it is refused, then closes (the writer does both).
void reject_node(NodeConn& conn, const protocol::Reject& reject) {
  conn.send(protocol::encode(reject));
  conn.close(net::ws::kClosePolicy);
}

// A plain HTTP refusal of a bad upgrade, then the connection closes.
awaitable<void> refuse_upgrade(TlsStream& stream, std::string_view status, std::string_view extra) {
  std::string res = "HTTP/1.1 ";
  res.append(status);
  res.append("\r\nContent-Length: 0\r\nConnection: close\r\nServer: agora-gateway\r\n");
  res.append(extra);
  res.append("\r\n");
  co_await asio::async_write(stream, asio::buffer(res), as_tuple_awaitable);
  beast::get_lowest_layer(stream).close();
}

// Reads until the reader yields an event (the hello phase only; afterwards
// read_node's callbacks take over).
awaitable<net::ws::Event> read_event(NodeConn& conn) {
  std::string buf(4096, '\0');
  for (;;) {
    auto e = conn.reader.next();
    if (e.kind != net::ws::Event::Kind::none) co_return e;
    auto [ec, n] = co_await conn.stream.async_read_some(asio::buffer(buf), as_tuple_awaitable);
    if (ec) {
      net::ws::Event failed;
      failed.kind = net::ws::Event::Kind::error;
      failed.payload = ec.message();
      failed.close_code = 0;  // nothing to send
      co_return failed;
    }
    conn.reader.feed(std::string_view(buf.data(), n));
  }
}

}  // namespace

awaitable<void> GatewayImpl::run_node_session(std::shared_ptr<TlsStream> stream,
                                              http::request<http::string_body> request, ProviderEntry provider) {
  auto self = shared_from_this();
  auto& lowest = beast::get_lowest_layer(*stream);
  lowest.expires_after(config_.handshake_timeout);
  if (request[http::field::sec_websocket_version] != "13") {
    spdlog::info("node_handshake_failed provider={} error={}", provider.id, "\"unsupported WebSocket version\"");
    co_await refuse_upgrade(*stream, "426 Upgrade Required", "Sec-WebSocket-Version: 13\r\n");
    co_return;
  }
  auto accept = net::ws::accept_response(request[http::field::sec_websocket_key], "agora-gateway");
  if (!accept) {
    spdlog::info("node_handshake_failed provider={} error={}", provider.id, logfmt_value(accept.error().message));
    co_await refuse_upgrade(*stream, "400 Bad Request", "");
    co_return;
  }
  auto [aec, an] = co_await asio::async_write(*stream, asio::buffer(*accept), as_tuple_awaitable);
  if (aec) {
    spdlog::info("node_handshake_failed provider={} error={}", provider.id, logfmt_value(aec.message()));
    co_return;
  }
  lowest.expires_never();
  auto conn = std::make_shared<NodeConn>(std::move(*stream), protocol::kMaxFrameBytes);
  conn->id = next_conn_++;
  conn->provider_id = provider.id;

  // The first frame must be a hello, within the handshake timeout.
  asio::steady_timer hello_deadline(io_, config_.handshake_timeout);
  hello_deadline.async_wait([conn](boost::system::error_code ec) {
    if (!ec) beast::get_lowest_layer(conn->stream).cancel();
  });
  net::ws::Event first = co_await read_event(*conn);
  hello_deadline.cancel();
  std::optional<std::string> problem;
  protocol::Hello hello;
  if (first.kind != net::ws::Event::Kind::message) {
    const std::string why = first.kind == net::ws::Event::Kind::close ? std::string("closed by node") : first.payload;
    spdlog::info("node_hello_missing provider={} error={}", provider.id, logfmt_value(why));
    if (first.kind == net::ws::Event::Kind::error && first.close_code != 0) conn->close(first.close_code);
    else if (first.kind != net::ws::Event::Kind::error) conn->close(net::ws::kClosePolicy);
    else beast::get_lowest_layer(conn->stream).close();
    co_return;
  }
  if (first.opcode != net::ws::Opcode::text) {
    problem = "the hello must be a text frame";
  } else {
    auto decoded = protocol::decode(first.payload);
    if (!decoded) problem = decoded.error().message;
    else if (auto* h = std::get_if<protocol::Hello>(&*decoded)) hello = std::move(*h);
    else problem = "the first frame must be a hello";
  }
  if (!problem) problem = check_hello(hello);
  if (problem) {
    spdlog::warn("node_rejected provider={} reason={}", provider.id, logfmt_value(*problem));
    reject_node(*conn, protocol::Reject{"bad_hello", *problem});
    co_return;
  }
  // The provider may have been revoked or terminated while the hello was
  // on its way (on_credentials only sees welcomed nodes).
  if (!active_providers_.contains(provider.id)) {
    spdlog::info("node_rejected provider={} reason=\"provider revoked during the handshake\"", provider.id);
    reject_node(*conn, protocol::Reject{"revoked", "the provider's token was revoked"});
    co_return;
  }
  // The same node reconnecting (its old session not yet noticed as dead)
  // replaces the old session; another provider's node id is refused.
  for (auto& [id, other] : conns_) {
    if (other->node_id != hello.node_id) continue;
    if (other->provider_id != provider.id) {
      reject_node(*conn, protocol::Reject{"duplicate_node", "node id is in use by another provider"});
      co_return;
    }
    router_.set_draining(other->id);  // no new jobs (attested ones included) to the session being replaced
    other->close();
  }
  conn->node_id = hello.node_id;
  conn->agreements = hello.agreements;
  conn->suspended = suspended_providers_.contains(provider.id);
  conn->agreed = !agreement_ || std::find(hello.agreements.begin(), hello.agreements.end(), agreement_->sha256) !=
                                    hello.agreements.end();

  NodeInfo info;
  info.conn = conn->id;
  info.node_id = hello.node_id;
  info.provider_id = provider.id;
  info.region = hello.region;
  info.agent = hello.agent;
  info.identity_key = hello.identity_key;
  info.hardware = hello.hardware;
  info.connected_ms = clock_.unix_millis();
  info.held = !conn->agreed || conn->suspended;
  boost::json::array audit_models;
  for (const auto& m : hello.models) audit_models.push_back(boost::json::object{{"name", m.name}, {"sha256", m.sha256}});
  for (auto& m : hello.models) info.models.push_back(NodeModel{std::move(m), 0});
  std::vector<std::string> models;
  for (const auto& m : info.models) models.push_back(m.advert.name);
  router_.add(std::move(info));
  conns_[conn->id] = conn;
  scheduler_.link_up(conn->id, *conn);
  metrics_.node_connected();
  spdlog::info("node_connected node={} provider={} region={} models={}", conn->node_id, provider.id,
               logfmt_value(hello.region), fmt::join(models, ","));

  protocol::Welcome welcome;
  welcome.provider_id = provider.id;
  welcome.heartbeat_ms = static_cast<int32_t>(config_.node_timeout.count() / 2);
  if (agreement_) {
    welcome.agreement_version = agreement_->version;
    welcome.agreement_sha256 = agreement_->sha256;
  }
  welcome.agreement_accepted = conn->agreed;
  conn->send(protocol::encode(welcome));
  audit("provider.connected", provider.id,
        boost::json::object{{"node_id", conn->node_id},
                            {"region", hello.region},
                            {"agent", hello.agent},
                            {"identity_key", hello.identity_key},
                            {"models", std::move(audit_models)},
                            {"agreement_accepted", conn->agreed},
                            {"suspended", conn->suspended}});
  attestation_start(conn, hello.attestation);
  if (agreement_ && conn->agreed) {
    agreement_accepted(*conn, "hello");
  } else if (agreement_) {
    conn->send(protocol::encode(protocol::AgreementOffer{agreement_->version, agreement_->sha256, agreement_->text}));
    spdlog::info("node_agreement_required node={} provider={} version={}", conn->node_id, provider.id,
                 agreement_->version);
  }
  // The session goes on in read_node()'s callbacks, so that this frame (the
  // upgrade request, the hello) and the HTTP session's (its 16 KiB read
  // buffer) are released: an idle node costs only what it keeps using
  // (docs/BENCHMARKS.md, memory per idle node connection). It still counts
  // as an open connection, as it did while the HTTP session waited for it.
  ++http_connections_;
  conn->last_heard = std::chrono::steady_clock::now();
  read_node(conn);
  for (const auto& m : models) scheduler_.drain(m);
  nodes_changed();
}

// Larger frames are read in steps of at most this much.
constexpr size_t kMessageReadBytes = 64 * 1024;

// Callbacks rather than a coroutine: an idle node is then just this pending
// read into NodeConn::head, without coroutine frames or a buffer.
void GatewayImpl::read_node(std::shared_ptr<NodeConn> conn) {
  auto self = shared_from_this();
  auto done = [self, conn](beast::error_code ec, std::size_t bytes) mutable {
    self->on_node_read(std::move(conn), ec, bytes);
  };
  auto& c = *conn;
  c.reading_head = c.reader.idle();
  if (c.reading_head) {
    c.stream.async_read_some(asio::buffer(c.head), std::move(done));
  } else {
    c.read_buffer.resize(std::clamp(c.reader.wanted(), c.head.size(), kMessageReadBytes));
    c.stream.async_read_some(asio::buffer(c.read_buffer), std::move(done));
  }
}

void GatewayImpl::on_node_read(std::shared_ptr<NodeConn> conn, beast::error_code ec, size_t bytes) {
  std::string why;
  if (ec) {
    if (!conn->close_reason.empty()) why = conn->close_reason;
    else if (ec == asio::error::eof) why = "closed by node";
    else why = ec.message();
  } else {
    conn->last_heard = std::chrono::steady_clock::now();
    conn->ping_sent = false;
    conn->reader.feed(std::string_view(conn->reading_head ? conn->head.data() : conn->read_buffer.data(), bytes));
    while (why.empty()) {
      net::ws::Event e = conn->reader.next();
      using Kind = net::ws::Event::Kind;
      if (e.kind == Kind::none) break;
      if (e.kind == Kind::ping) {
        conn->queue(net::ws::Opcode::pong, std::move(e.payload));
      } else if (e.kind == Kind::pong) {
        // last_heard is enough.
      } else if (e.kind == Kind::close) {
        why = "closed by node";
        conn->close(net::ws::kCloseNormal);
      } else if (e.kind == Kind::error) {
        why = "WebSocket protocol error: " + e.payload;
        conn->close(e.close_code);
      } else if (e.opcode != net::ws::Opcode::text) {
        why = "binary frame";
      } else {
        auto msg = protocol::decode(e.payload);
        if (!msg) {
          why = msg.error().message;
        } else {
          // What a coroutine's co_spawn handler would do: log, end the session.
          try {
            on_node_frame(*conn, std::move(*msg));
          } catch (const std::exception& x) {
            spdlog::error("node_frame_crashed node={} error={}", conn->node_id, logfmt_value(x.what()));
            why = "internal error";
          }
          if (why.empty() && conn->closing) why = "closed by gateway";
        }
      }
    }
    if (conn->reader.idle()) {  // an idle node keeps no buffer
      conn->reader.release();
      std::string().swap(conn->read_buffer);
    }
  }
  if (why.empty()) return read_node(std::move(conn));
  --http_connections_;
  node_gone(conn, why);
}

awaitable<void> GatewayImpl::heartbeat_loop() {
  auto self = shared_from_this();
  asio::steady_timer t(io_);
  const auto timeout = std::chrono::duration_cast<std::chrono::steady_clock::duration>(config_.node_timeout);
  const auto every = std::clamp<std::chrono::steady_clock::duration>(timeout / 8, std::chrono::milliseconds(10),
                                                                     std::chrono::seconds(1));
  while (!stopping_) {
    t.expires_after(every);
    co_await t.async_wait(as_tuple_awaitable);
    if (stopping_) break;
    const auto now = std::chrono::steady_clock::now();
    for (auto& [id, n] : conns_) {
      if (n->closing) continue;
      const auto quiet = now - n->last_heard;
      if (quiet >= timeout) {
        // The reader fails at once and ends the session with this reason.
        n->close_reason = "heartbeat timeout";
        n->closing = true;
        beast::get_lowest_layer(n->stream).close();
      } else if (quiet >= timeout / 2 && !n->ping_sent) {
        n->ping_sent = true;
        n->queue(net::ws::Opcode::ping, {});
      }
    }
  }
}

namespace {

// Sends the outbox in order and ends when it is empty; when the node is
// closing (or a write failed), then closes it: a close frame when possible,
// then the socket, which ends the reader.
awaitable<boost::system::error_code> write_frame(NodeConn& n, const NodeConn::Out& out) {
  const std::array<asio::const_buffer, 2> bufs{asio::buffer(out.header.data(), out.header_size),
                                               asio::buffer(out.payload)};
  auto [ec, bytes] = co_await asio::async_write(n.stream, bufs, as_tuple_awaitable);
  co_return ec;
}

awaitable<void> node_writer(std::shared_ptr<NodeConn> n) {
  bool failed = false;
  while (!n->outbox.empty()) {
    NodeConn::Out out = std::move(n->outbox.front());
    n->outbox.pop_front();
    if (auto ec = co_await write_frame(*n, out)) {
      n->closing = true;
      failed = true;
      break;
    }
  }
  if (!n->closing) {
    n->writing = false;  // nothing to do: the next send() starts a writer
    co_return;
  }
  // `writing` stays set: a closed session needs no writer again.
  auto& lowest = beast::get_lowest_layer(n->stream);
  if (!failed && lowest.socket().is_open()) {
    const NodeConn::Out bye(net::ws::Opcode::close, net::ws::close_payload(n->close_code));
    lowest.expires_after(std::chrono::seconds(2));
    co_await write_frame(*n, bye);
  }
  lowest.close();
}

}  // namespace

void NodeConn::queue(net::ws::Opcode opcode, std::string payload) {
  if (closing) return;
  outbox.emplace_back(opcode, std::move(payload));
  start_writer();
}

void NodeConn::close(uint16_t code) {
  if (closing) return;
  closing = true;
  close_code = code;
  start_writer();
}

void NodeConn::start_writer() {
  if (writing) return;
  writing = true;
  net::spawn(stream.get_executor(), node_writer(shared_from_this()), "node_writer");
}

void GatewayImpl::on_node_frame(NodeConn& n, protocol::Message m) {
  if (auto* d = std::get_if<protocol::Delta>(&m)) return scheduler_.on_delta(n.id, std::move(*d), clock_.now());
  if (auto* d = std::get_if<protocol::Done>(&m)) return scheduler_.on_done(n.id, std::move(*d));
  if (auto* f = std::get_if<protocol::Failed>(&m)) return scheduler_.on_failed(n.id, std::move(*f));
  if (std::holds_alternative<protocol::Drain>(m)) {
    spdlog::info("node_draining node={}", n.node_id);
    router_.set_draining(n.id);
    return;
  }
  if (auto* e = std::get_if<protocol::Evidence>(&m)) {
    on_evidence(n, std::move(*e));
    return;
  }
  if (auto* a = std::get_if<protocol::Accept>(&m)) {
    if (!agreement_ || a->sha256 != agreement_->sha256) {
      // An older version, or one this gateway never offered: not enough.
      spdlog::warn("node_accepted_other_agreement node={} sha256={}", logfmt_value(n.node_id), logfmt_value(a->sha256));
      return;
    }
    if (n.agreed) return;
    agreement_accepted(n, "accept");
    spdlog::info("node_agreement_accepted node={} provider={} version={}", n.node_id, n.provider_id,
                 agreement_->version);
    update_hold(n);
    return;
  }
  // Anything else from a node is a protocol error.
  spdlog::warn("node_protocol_error node={} frame={}", n.node_id, protocol::message_type(m));
  n.close();
}

void GatewayImpl::node_gone(const std::shared_ptr<NodeConn>& n, const std::string& why) {
  n->close();
  std::vector<std::string> models;
  if (const NodeInfo* info = router_.find(n->id)) {
    for (const auto& m : info->models) models.push_back(m.advert.name);
  }
  attestation_end(*n);
  router_.remove(n->id);
  conns_.erase(n->id);
  // Its jobs go to other nodes where nothing reached the client yet.
  const size_t lost = scheduler_.link_down(n->id);
  spdlog::info("node_disconnected node={} provider={} jobs_lost={} reason={}", n->node_id, n->provider_id, lost,
               logfmt_value(why));
  audit("provider.disconnected", n->provider_id,
        boost::json::object{{"node_id", n->node_id}, {"reason", why}, {"jobs_lost", lost}});
  // Queued jobs may now have nowhere to go.
  for (const auto& m : models) scheduler_.drain(m);
  nodes_changed();
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

namespace {

// A node's attestation as `agora providers list` reads it (nodes.attestation).
std::string attestation_json(const NodeInfo& n) {
  const NodeAttestation& a = n.attestation;
  return boost::json::serialize(boost::json::object{{"level", level_name(n.level)},
                                                    {"kind", a.kind},
                                                    {"status", a.status},
                                                    {"error", a.error},
                                                    {"verified_ms", a.verified_ms},
                                                    {"expires_ms", a.expires_ms},
                                                    {"summary", a.summary}});
}

}  // namespace

void GatewayImpl::snapshot_nodes() {
  if (!store_) return;
  std::vector<store::NodeRecord> out;
  out.reserve(router_.nodes().size());
  const int64_t now = clock_.unix_millis();
  for (const auto& [id, n] : router_.nodes()) {
    store::NodeRecord r;
    r.node_id = n.node_id;
    r.provider_id = n.provider_id;
    r.region = n.region;
    r.agent = n.agent;
    r.identity_key = n.identity_key;
    r.connected_ms = n.connected_ms;
    r.updated_ms = now;
    boost::json::array models;
    for (const auto& m : n.models) {
      r.slots += m.advert.slots;
      r.slots_busy += m.in_flight;
      models.push_back(boost::json::object{{"name", m.advert.name},
                                           {"sha256", m.advert.sha256},
                                           {"quantization", m.advert.quantization},
                                           {"slots", m.advert.slots},
                                           {"busy", m.in_flight}});
    }
    r.models_json = boost::json::serialize(models);
    // Every second, for every node: a node that offers no attestation (most
    // of them) shares one serialised default instead of building its own.
    static const std::string kNone = attestation_json(NodeInfo{});
    r.attestation_json = n.attestation.kind.empty() && n.level == Level::standard ? kNone : attestation_json(n);
    out.push_back(std::move(r));
  }
  store_->set_nodes(std::move(out));
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
