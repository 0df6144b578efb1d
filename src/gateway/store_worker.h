// StoreWorker: the gateway's only user of its database, on two threads of
// its own with a connection each, so nothing on the request path waits on
// the disk.
//
//  - The writer thread writes generation records in batches (small
//    transactions). It runs under SCHED_IDLE: it only gets a core the event
//    loop is not using, so a batch never preempts request serving. With the
//    gateway pinned to one core at 5,000 req/s, the writer at normal
//    priority put ~1.5 ms into the p99 of the gateway's added latency
//    (docs/BENCHMARKS.md, optimisation log). So that a starved writer can
//    neither grow memory without bound nor lose records, record() blocks
//    once `max_backlog` records wait: the loop then sleeps, which is exactly
//    when an idle-class thread runs. Transactions stay short (`txn_records`)
//    so that the writer, descheduled mid-transaction, holds SQLite's write
//    lock only briefly (the CLI writes to the same file).
//    The writer also appends the audit trail: a "job" entry for every
//    generation record (in the same transaction), the events the loop hands
//    it (node connected, disconnected, agreement accepted) and, every
//    `checkpoint_interval` and at stop, a signed checkpoint.
//  - The control thread, at normal priority, does what must stay prompt
//    even when every core is busy (a node decoding on all of them): polls
//    the credentials version and hands changed key and provider sets to the
//    event loop, writes the connected-node snapshot (for `agora providers
//    list`), and runs lookups (GET /v1/generations/{id}) whose answers it
//    posts back to the loop.
#pragma once

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "crypto/ed25519.h"
#include "store/store.h"

namespace agora::gateway {

class StoreWorker {
 public:
  // Everything an operator changes through the CLI or the admin API.
  struct Credentials {
    std::vector<store::ApiKeyRecord> keys;
    std::vector<store::ProviderRecord> providers;
    std::optional<store::AgreementRecord> agreement;  // the current version
  };
  struct Callbacks {
    // Run on `loop` with the full current sets, at start and after changes.
    std::function<void(Credentials)> on_credentials;
  };

  struct Options {
    std::chrono::milliseconds poll_interval{200};  // credentials version, node snapshot
    size_t batch = 512;          // pending records that wake the writer before its next poll
    size_t txn_records = 64;     // records per transaction
    size_t max_backlog = 65536;  // record() waits while this many are pending
    bool idle_priority = true;   // SCHED_IDLE for the writer (best effort)
    // Signs audit checkpoints; none: no checkpoints.
    std::shared_ptr<const crypto::Ed25519Signer> audit_signer;
    std::chrono::milliseconds checkpoint_interval{60'000};
    const Clock* clock = &SystemClock::instance();  // when checkpoints are due
  };

  // `writer` and `control`: two connections to the same database.
  StoreWorker(std::unique_ptr<store::Store> writer, std::unique_ptr<store::Store> control,
              boost::asio::any_io_executor loop, Callbacks callbacks, Options options);
  StoreWorker(std::unique_ptr<store::Store> writer, std::unique_ptr<store::Store> control,
              boost::asio::any_io_executor loop, Callbacks callbacks)
      : StoreWorker(std::move(writer), std::move(control), std::move(loop), std::move(callbacks), Options{}) {}
  ~StoreWorker();  // stops, flushing what is queued

  // Loads the credentials once on the calling thread (before serving), then
  // starts the threads.
  Status start();
  void stop();

  // Thread-safe; cheap (appends to a vector) unless `max_backlog` records
  // are already waiting, then it waits for the writer (backpressure).
  void record(store::GenerationRecord r);
  // An audit event (not a job: record() makes those). Thread-safe, cheap.
  void audit(store::AuditEvent e);
  // A node accepted the agreement: the acceptance row, and `e` in the audit
  // trail when the row is new.
  void accept_agreement(store::AcceptanceRecord a, store::AuditEvent e);
  // Times record() had to wait for the writer.
  uint64_t backpressure_waits() const;
  void set_nodes(std::vector<store::NodeRecord> nodes);
  // Runs `task` on the control thread with its store; the task posts its
  // own answer to the loop (conversations). false (and `task` dropped) once
  // stopping: the caller answers for it.
  bool control(std::function<void(store::Store&)> task);
  // `done` runs on the loop.
  void lookup_generation(std::string id, std::function<void(Result<store::GenerationRecord>)> done);
  // An operator's change (the admin API): `task` runs on the control thread
  // with its store; the credentials are then reloaded and handed to the
  // loop, and only after them the closure `task` returned runs on the loop,
  // so the response is sent once the change is in force.
  using AdminTask = std::function<std::function<void()>(store::Store&)>;
  void admin(AdminTask task);

 private:
  // Audit events in the loop's order; one with an acceptance is appended
  // only when the acceptance is new.
  struct PendingEvent {
    store::AuditEvent event;
    std::optional<store::AcceptanceRecord> acceptance;
  };
  void queue_event(PendingEvent p);
  template <class Queue>
  void wait_for_room(std::unique_lock<std::mutex>& lock, const Queue& queue);
  void run_writer();
  // One round's audit events, in order; returns how many were written.
  size_t write_events(std::vector<PendingEvent>& events);
  // One round's generation records, txn_records per transaction.
  void write_generations(const std::vector<store::GenerationRecord>& batch, std::vector<store::AuditEvent>& job_audit);
  void run_control();
  void reload_credentials();
  Result<Credentials> load_credentials();
  void checkpoint();

  std::unique_ptr<store::Store> writer_store_;
  std::unique_ptr<store::Store> control_store_;
  boost::asio::any_io_executor loop_;
  Callbacks callbacks_;
  Options options_;

  // Writer state.
  mutable std::mutex write_mu_;
  std::condition_variable write_cv_;
  std::condition_variable drained_;
  bool write_stopping_ = false;
  std::vector<store::GenerationRecord> pending_;
  std::vector<PendingEvent> pending_audit_;
  uint64_t backpressure_waits_ = 0;

  // Control state.
  std::mutex control_mu_;
  std::condition_variable control_cv_;
  bool control_stopping_ = false;
  std::optional<std::vector<store::NodeRecord>> nodes_;
  std::deque<std::function<void(store::Store&)>> tasks_;
  std::deque<AdminTask> admin_tasks_;
  uint64_t credentials_version_ = 0;

  std::thread writer_;
  std::thread control_;
};

}  // namespace agora::gateway
