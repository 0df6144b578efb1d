// The scheduler: which node runs which job, sans-I/O. Jobs come in through
// submit() from any source (a client's request, the gateway's own work),
// each with its own admission and JobSink; nodes are ProviderLinks, and the
// router (router.h) picks among them. Events in: a job submitted or
// abandoned, a node's delta / done / failed, a node up or gone, capacity
// changed (drain), time passed (on_time). Commands out: a job or cancel to
// a link, an event to a job's sink, the Hooks below. Deadlines (queue and
// idle timeouts) come from the injected Clock; the shell arms one timer for
// next_deadline() (Hooks::wake_at) and calls on_time() when it fires.
//
// Rules (tests/gateway/scheduler_test.cpp proves each):
// - A job goes to the best untried node that may serve it; with none free
//   it waits in its model's queue for its attestation level (FIFO within a
//   level), at most max_queue jobs in all, at most queue_timeout.
// - A node that fails a job retryably, or goes away, before the sink has
//   committed output, is replaced by another (the sink hears `restarted`),
//   up to max_attempts nodes; after that, or once committed, the job fails.
// - A running job whose node sends nothing for job_idle_timeout is
//   cancelled on the node and fails with provider_timeout.
// - A freed slot, a new node, a node released or re-attested drains the
//   queues of its models; a queued job no node can serve any more fails.
#pragma once

#include <array>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>

#include "common/clock.h"
#include "gateway/job.h"
#include "gateway/metrics.h"
#include "gateway/provider_link.h"
#include "gateway/router.h"

namespace agora::gateway {

class Scheduler {
 public:
  struct Config {
    size_t max_queue = 4096;
    Clock::Duration queue_timeout = std::chrono::seconds(30);
    Clock::Duration job_idle_timeout = std::chrono::minutes(5);
    int max_attempts = 3;
  };
  struct Hooks {
    // Call on_time() at `at` (or soon after): the earliest deadline moved
    // earlier (later ones are announced when on_time() runs); nullopt:
    // nothing is due any more (the shell's timer may stop).
    std::function<void(std::optional<Clock::TimePoint> at)> wake_at;
    // A job's node answered done after the job was abandoned (its sink is
    // gone): the generation log still records it (finish: cancelled).
    std::function<void(Job& job, const protocol::Done& done)> late_done;
  };

  Scheduler(Router& router, const Clock& clock, Metrics& metrics, Config config, Hooks hooks);
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // ---- jobs
  // Places a job on a node or in the queue; an error (404, 503) when
  // neither is possible (the job is then untouched, its sink not called).
  std::optional<ApiError> submit(const std::shared_ptr<Job>& job);
  // The source is done with the job (answered, or its client went away):
  // its sink hears nothing more; a running job is cancelled on its node
  // (whose done frees the slot), a queued one leaves the queue. Idempotent.
  void abandon(const std::shared_ptr<Job>& job);
  // Why no node may serve `r` (the router said NoPick::constraint).
  ApiError unmet_constraint(const ChatRequest& r) const;

  // ---- links (register after Router::add, unregister after Router::remove)
  void link_up(ConnId conn, ProviderLink& link);
  // The node is gone: its running jobs are retried elsewhere or fail.
  // Returns how many jobs it had.
  size_t link_down(ConnId conn);
  void on_delta(ConnId conn, protocol::Delta d, Clock::TimePoint received);
  void on_done(ConnId conn, protocol::Done d);
  void on_failed(ConnId conn, protocol::Failed f);
  // Capacity for `model` may have appeared or gone (a node connected, was
  // released, changed level): dispatch or fail what waits for it.
  void drain(const std::string& model);
  void drain_models_of(const NodeInfo& node);

  // ---- time
  void on_time(Clock::TimePoint now);
  std::optional<Clock::TimePoint> next_deadline() const;

  // No new jobs from now on (submit answers shutting_down).
  void stop() { stopping_ = true; }
  size_t queued() const { return queued_; }
  size_t running() const { return running_; }

 private:
  struct LinkState {
    ProviderLink* link = nullptr;
    std::unordered_map<protocol::JobId, std::shared_ptr<Job>> jobs;
    protocol::JobId next_job = 1;  // job numbers are per connection
  };
  void dispatch(const std::shared_ptr<Job>& job, const Pick& pick);
  // Removes a job the node has let go of (done or failed): frees its slot,
  // then drains the model's queue. Null when the node has no such job.
  std::shared_ptr<Job> release(ConnId conn, protocol::JobId id);
  // The job's node failed it (`f`) or went away (nullptr): another node,
  // or the job fails.
  void lost(const std::shared_ptr<Job>& job, const protocol::Failed* f);
  void fail(Job& job, ApiError error, bool ran, std::optional<protocol::SealedChunk> sealed = std::nullopt);
  void deliver(Job& job, JobEvent e);
  void set_deadline(Job& job, Clock::TimePoint at);
  void clear_deadline(Job& job);
  void timed_out(Job& job, Clock::TimePoint now);

  Router& router_;
  const Clock& clock_;
  Metrics& metrics_;
  Config config_;
  Hooks hooks_;
  bool stopping_ = false;
  std::unordered_map<ConnId, LinkState> links_;
  // Waiting requests by model, then by the attestation level they need.
  std::unordered_map<std::string, std::array<std::deque<std::shared_ptr<Job>>, kTiers>> queues_;  // by tier_of(needs, level)
  size_t queued_ = 0;
  size_t running_ = 0;
  // Every queued or running job's deadline; a job's entry is removed as it
  // leaves those states (Job::deadline_entry), so this holds no stale ones.
  std::multimap<Clock::TimePoint, Job*> deadlines_;
  std::optional<Clock::TimePoint> announced_;  // the last wake_at, until on_time()
};

}  // namespace agora::gateway
