#include "gateway/store_worker.h"

#include <boost/asio/post.hpp>

#include <algorithm>
#include <cstring>
#include <span>

#include <pthread.h>
#include <sched.h>

#include "common/clock.h"
#include "common/log.h"
#include "store/audit.h"

namespace agora::gateway {

StoreWorker::StoreWorker(std::unique_ptr<store::Store> writer, std::unique_ptr<store::Store> control,
                         boost::asio::any_io_executor loop, Callbacks callbacks, Options options)
    : writer_store_(std::move(writer)),
      control_store_(std::move(control)),
      loop_(std::move(loop)),
      callbacks_(std::move(callbacks)),
      options_(options) {
  options_.txn_records = std::max<size_t>(options_.txn_records, 1);
  options_.batch = std::max<size_t>(options_.batch, 1);
  options_.max_backlog = std::max(options_.max_backlog, options_.batch);
}

StoreWorker::~StoreWorker() { stop(); }

Result<StoreWorker::Credentials> StoreWorker::load_credentials() {
  Credentials c;
  auto keys = control_store_->list_api_keys();
  if (!keys) return keys.error();
  auto providers = control_store_->list_providers();
  if (!providers) return providers.error();
  auto agreement = control_store_->current_agreement();
  if (!agreement) return agreement.error();
  c.keys = std::move(*keys);
  c.providers = std::move(*providers);
  c.agreement = std::move(*agreement);
  return c;
}

Status StoreWorker::start() {
  auto v = control_store_->credentials_version();
  if (!v) return v.error();
  credentials_version_ = *v;
  auto c = load_credentials();
  if (!c) return c.error();
  if (callbacks_.on_credentials) callbacks_.on_credentials(std::move(*c));
  writer_ = std::thread([this] { run_writer(); });
  control_ = std::thread([this] { run_control(); });
  return ok_status();
}

void StoreWorker::stop() {
  {
    std::lock_guard lock(write_mu_);
    write_stopping_ = true;
  }
  write_cv_.notify_all();
  drained_.notify_all();
  {
    std::lock_guard lock(control_mu_);
    control_stopping_ = true;
  }
  control_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  if (control_.joinable()) control_.join();
}

// Backpressure (see the header): with `queue` at the cap, the caller waits
// for the writer instead of growing memory or dropping anything.
template <class Queue>
void StoreWorker::wait_for_room(std::unique_lock<std::mutex>& lock, const Queue& queue) {
  if (queue.size() < options_.max_backlog || write_stopping_) return;
  ++backpressure_waits_;
  if (backpressure_waits_ == 1 || backpressure_waits_ % 1024 == 0) {
    spdlog::warn("store_backpressure pending={} waits={} note=\"the database writer is behind; requests wait for it\"",
                 queue.size(), backpressure_waits_);
  }
  write_cv_.notify_one();
  drained_.wait(lock, [&] { return queue.size() < options_.max_backlog || write_stopping_; });
}

void StoreWorker::record(store::GenerationRecord r) {
  std::unique_lock lock(write_mu_);
  wait_for_room(lock, pending_);
  pending_.push_back(std::move(r));
  if (pending_.size() == options_.batch) write_cv_.notify_one();
}

void StoreWorker::audit(store::AuditEvent e) { queue_event(PendingEvent{std::move(e), std::nullopt}); }

void StoreWorker::accept_agreement(store::AcceptanceRecord a, store::AuditEvent e) {
  queue_event(PendingEvent{std::move(e), std::move(a)});
}

void StoreWorker::queue_event(PendingEvent p) {
  std::unique_lock lock(write_mu_);
  // Bounded like the records (a node reconnecting in a loop adds two per
  // session).
  wait_for_room(lock, pending_audit_);
  pending_audit_.push_back(std::move(p));
}

uint64_t StoreWorker::backpressure_waits() const {
  std::lock_guard lock(write_mu_);
  return backpressure_waits_;
}

void StoreWorker::set_nodes(std::vector<store::NodeRecord> nodes) {
  std::lock_guard lock(control_mu_);
  nodes_ = std::move(nodes);
}

void StoreWorker::lookup_generation(std::string id, std::function<void(Result<store::GenerationRecord>)> done) {
  {
    std::lock_guard lock(control_mu_);
    tasks_.push_back([this, id = std::move(id), done = std::move(done)](store::Store& s) mutable {
      auto r = s.get_generation(id);
      boost::asio::post(loop_, [done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
    });
  }
  control_cv_.notify_one();
}

bool StoreWorker::control(std::function<void(store::Store&)> task) {
  {
    std::lock_guard lock(control_mu_);
    if (control_stopping_) return false;
    tasks_.push_back(std::move(task));
  }
  control_cv_.notify_one();
  return true;
}

void StoreWorker::run_writer() {
  if (options_.idle_priority) {
    sched_param param{};
    if (int rc = pthread_setschedparam(pthread_self(), SCHED_IDLE, &param); rc != 0) {
      spdlog::debug("store_writer_priority error={}", logfmt_value(std::strerror(rc)));
    }
  }
  auto last_checkpoint = options_.clock->now();
  std::vector<store::AuditEvent> job_audit;
  for (;;) {
    std::vector<store::GenerationRecord> batch;
    std::vector<PendingEvent> pending_events;
    bool stopping;
    {
      std::unique_lock lock(write_mu_);
      write_cv_.wait_for(lock, options_.poll_interval,
                         [&] { return write_stopping_ || pending_.size() >= options_.batch; });
      batch.swap(pending_);
      pending_.reserve(std::min(batch.size(), options_.max_backlog));  // no regrowth on the loop
      pending_events.swap(pending_audit_);
      stopping = write_stopping_;
    }
    drained_.notify_all();
    const size_t done = write_events(pending_events);
    if (done < pending_events.size() && !stopping) {
      std::lock_guard lock(write_mu_);
      pending_audit_.insert(pending_audit_.begin(), std::make_move_iterator(pending_events.begin() + done),
                            std::make_move_iterator(pending_events.end()));
    }
    write_generations(batch, job_audit);
    const auto now = options_.clock->now();
    if (stopping || now - last_checkpoint >= options_.checkpoint_interval) {
      last_checkpoint = now;
      checkpoint();
    }
    if (stopping) {
      std::lock_guard lock(write_mu_);
      // Else: records that raced stop(); one more round.
      if (pending_.empty() && pending_audit_.empty()) return;
    }
  }
}

// Events in the order the loop saw them, before the jobs of the same
// round (a node connects and accepts before it serves). An acceptance and
// its entry are one transaction; other events go in runs. Returns how many
// were written: what failed (the database busy for longer than its
// timeout) is put back, in order, for the next round; nothing is dropped.
size_t StoreWorker::write_events(std::vector<PendingEvent>& events) {
  std::vector<store::AuditEvent> run;
  auto flush = [&]() {
    if (run.empty()) return true;
    if (Status st = writer_store_->append_audit(run); !st) {
      spdlog::error("audit_write_failed entries={} error={}", run.size(), logfmt_value(st.error().to_string()));
      return false;
    }
    run.clear();
    return true;
  };
  size_t done = 0;
  for (; done < events.size(); ++done) {
    auto& p = events[done];
    if (!p.acceptance) {
      run.push_back(p.event);
      continue;
    }
    if (!flush()) return done - run.size();
    auto fresh = writer_store_->record_acceptance(*p.acceptance, std::span<const store::AuditEvent>(&p.event, 1));
    if (!fresh) {
      spdlog::error("agreement_acceptance_write_failed node={} error={}", p.acceptance->node_id,
                    logfmt_value(fresh.error().to_string()));
      return done;
    }
  }
  if (!flush()) return done - run.size();  // the run's events are still to write
  return done;
}

void StoreWorker::write_generations(const std::vector<store::GenerationRecord>& batch,
                                    std::vector<store::AuditEvent>& job_audit) {
  for (size_t i = 0; i < batch.size(); i += options_.txn_records) {
    std::span<const store::GenerationRecord> part(batch.data() + i, std::min(options_.txn_records, batch.size() - i));
    job_audit.clear();
    for (const auto& g : part) job_audit.push_back(store::audit_event_for(g));
    if (Status st = writer_store_->insert_generations(part, job_audit); !st) {
      spdlog::error("generation_write_failed records={} error={}", part.size(), logfmt_value(st.error().to_string()));
    }
  }
}

void StoreWorker::checkpoint() {
  if (!options_.audit_signer) return;
  const auto& signer = *options_.audit_signer;
  const int64_t now_ms = options_.clock->unix_millis();
  auto c = store::checkpoint_audit(*writer_store_, signer, now_ms);
  if (!c) {
    spdlog::error("audit_checkpoint_failed error={}", logfmt_value(c.error().to_string()));
  } else if (*c) {
    // In the log too: a copy outside the database to compare it with.
    spdlog::info("audit_checkpoint seq={} hash={}", (*c)->seq, (*c)->hash);
  }
}

void StoreWorker::admin(AdminTask task) {
  {
    std::lock_guard lock(control_mu_);
    admin_tasks_.push_back(std::move(task));
  }
  control_cv_.notify_one();
}

void StoreWorker::reload_credentials() {
  auto v = control_store_->credentials_version();
  if (!v) {
    spdlog::warn("store_poll_failed error={}", logfmt_value(v.error().to_string()));
    return;
  }
  if (*v == credentials_version_) return;
  auto c = load_credentials();
  if (!c) {
    spdlog::warn("credentials_reload_failed error={}", logfmt_value(c.error().to_string()));
    return;
  }
  credentials_version_ = *v;
  boost::asio::post(loop_, [cb = callbacks_.on_credentials, c = std::move(*c)]() mutable {
    if (cb) cb(std::move(c));
  });
}

void StoreWorker::run_control() {
  for (;;) {
    std::optional<std::vector<store::NodeRecord>> nodes;
    std::deque<std::function<void(store::Store&)>> tasks;
    std::deque<AdminTask> admin_tasks;
    bool stopping;
    {
      std::unique_lock lock(control_mu_);
      control_cv_.wait_for(lock, options_.poll_interval,
                           [&] { return control_stopping_ || !tasks_.empty() || !admin_tasks_.empty(); });
      nodes.swap(nodes_);
      tasks.swap(tasks_);
      admin_tasks.swap(admin_tasks_);
      stopping = control_stopping_;
    }
    if (!admin_tasks.empty()) {
      std::vector<std::function<void()>> replies;
      for (auto& t : admin_tasks) replies.push_back(t(*control_store_));
      reload_credentials();  // posted before the replies: in force when they are sent
      for (auto& r : replies) {
        if (r) boost::asio::post(loop_, std::move(r));
      }
    }
    if (nodes) {
      if (Status st = control_store_->replace_nodes(*nodes); !st) {
        spdlog::warn("node_snapshot_failed error={}", logfmt_value(st.error().to_string()));
      }
    }
    for (auto& t : tasks) t(*control_store_);
    if (stopping) return;
    reload_credentials();
  }
}

}  // namespace agora::gateway
