#include "gateway/scheduler.h"

#include <spdlog/spdlog.h>

#include "common/log.h"
#include "gateway/errors.h"

namespace agora::gateway {

Scheduler::Scheduler(Router& router, const Clock& clock, Metrics& metrics, Config config, Hooks hooks)
    : router_(router), clock_(clock), metrics_(metrics), config_(config), hooks_(std::move(hooks)) {}

// ------------------------------------------------------------------- jobs

ApiError Scheduler::unmet_constraint(const ChatRequest& r) const {
  const auto& p = r.routing;
  const Level level = required_level(p);
  std::string what;
  if (!p.node_ids.empty()) {
    what = "agora_sealed: none of the nodes it is sealed to is connected, serves this model";
    if (level != Level::standard) what += std::string(" and has a live ") + std::string(level_name(level)) + " attestation";
    if (!p.regions.empty()) what += " in the regions asked for";
  } else if (const uint8_t needs = required_needs(p); needs != 0 && router_.eligible(r.model, Level::standard, {}, needs) == 0) {
    what = (needs & 1) != 0 && router_.eligible(r.model, Level::standard, {}, 1) == 0
               ? "tools: no provider serving this model supports tool calling (its chat template has no tools, or "
                 "its node runs protocol version 1)"
               : "response_format: no provider serving this model supports structured outputs (grammar-constrained "
                 "decoding; its node may run protocol version 1)";
  } else if (level != Level::standard && router_.eligible(r.model, level, {}, needs) == 0) {
    what = level == Level::confidential
               ? "confidential: true: no provider serving this model has a live GPU TEE (confidential computing) attestation"
               : "routing_preferences.privacyLevel \"verified\": no provider serving this model has a live device or GPU attestation";
  } else {
    std::string regions;
    for (const auto& reg : p.regions) regions += (regions.empty() ? "" : ", ") + reg;
    what = "routing_preferences.region: no provider serves this model in " + regions;
    if (level != Level::standard) what += std::string(" at the ") + std::string(level_name(level)) + " level";
  }
  return errors::no_eligible_provider(what);
}

std::optional<ApiError> Scheduler::submit(const std::shared_ptr<Job>& job) {
  if (stopping_) return errors::shutting_down();
  auto pick = router_.pick(job->request.model, job->request.routing, job->tried);
  if (auto* p = std::get_if<Pick>(&pick)) {
    dispatch(job, *p);
    return std::nullopt;
  }
  switch (std::get<NoPick>(pick)) {
    case NoPick::unknown_model:
      if (!job->tried.empty()) break;  // it was served a moment ago: capacity, not a typo
      return errors::model_not_found(job->request.model);
    case NoPick::constraint:
      return unmet_constraint(job->request);
    case NoPick::busy:
      if (queued_ >= config_.max_queue) return errors::queue_full();
      job->state = Job::State::queued;
      queues_[job->request.model][tier_of(required_needs(job->request.routing), required_level(job->request.routing))]
          .push_back(job);
      ++queued_;
      set_deadline(*job, clock_.now() + config_.queue_timeout);
      return std::nullopt;
    case NoPick::exhausted:
      break;
  }
  return errors::every_provider_failed();
}

void Scheduler::dispatch(const std::shared_ptr<Job>& job, const Pick& pick) {
  auto lit = links_.find(pick.conn);
  NodeInfo* node = router_.find(pick.conn);
  if (lit == links_.end() || !node) return;
  LinkState& link = lit->second;
  const auto& advert = node->models[pick.model_index].advert;
  router_.acquire(pick);
  job->state = Job::State::running;
  job->conn = pick.conn;
  job->provider_id = node->provider_id;
  job->node_id = node->node_id;
  job->model_sha256 = advert.sha256;
  job->attestation = node->level;
  job->saw_output = false;
  job->dispatched = job->last_heard = clock_.now();
  ++job->attempts;
  ++running_;
  // Numbered per connection: a node learns nothing of the gateway's other
  // traffic from the numbers it sees (a global counter would tell it).
  job->id = link.next_job++;
  protocol::Job frame;
  frame.job = job->id;
  frame.model = job->request.model;
  frame.request = job->request.generation;
  if (const auto& sr = job->request.sealed) {
    // Only this node's share of the content key travels to it.
    for (const auto& k : sr->keys) {
      if (k.node_id != node->node_id) continue;
      frame.sealed = protocol::SealedJob{sr->header.issued_ms, sr->header.stream, sr->header.recipients, k.enc,
                                         k.wrapped, sr->ciphertext};
    }
  }
  if (!job->request.max_tokens_given) frame.request.max_tokens = std::max(1, advert.ctx_per_slot);
  link.jobs[job->id] = job;
  set_deadline(*job, job->dispatched + config_.job_idle_timeout);
  link.link->send_job(frame);
}

// Each model has a queue per attestation level and set of needs (tools,
// grammar), so a request waiting for the one confidential node, or the one
// node whose template renders tools, does not hold up others behind it.
// Within a level the queue is FIFO (a request for a busy region still
// waits at the head).
void Scheduler::drain(const std::string& model) {
  auto qit = queues_.find(model);
  if (qit == queues_.end()) return;
  bool empty = true;
  for (auto& q : qit->second) {
    while (!q.empty()) {
      auto job = q.front();
      if (job->state != Job::State::queued) {
        q.pop_front();
        continue;
      }
      auto pick = router_.pick(model, job->request.routing, job->tried);
      if (std::get_if<NoPick>(&pick) && std::get<NoPick>(pick) == NoPick::busy) break;
      q.pop_front();
      --queued_;
      clear_deadline(*job);
      if (auto* p = std::get_if<Pick>(&pick)) {
        dispatch(job, *p);
        continue;
      }
      // Not recorded as a generation, like any job that never got a node
      // (after a retry too: the generation log has no waiting state).
      fail(*job, std::get<NoPick>(pick) == NoPick::constraint ? unmet_constraint(job->request) : errors::no_longer_eligible(),
           /*ran=*/false);
    }
    empty = empty && q.empty();
  }
  if (empty) queues_.erase(qit);
}

void Scheduler::drain_models_of(const NodeInfo& node) {
  for (const auto& m : node.models) drain(m.advert.name);
}

void Scheduler::abandon(const std::shared_ptr<Job>& job) {
  job->sink = nullptr;
  if (job->state == Job::State::queued) {
    --queued_;  // its queue entry is skipped when reached
  } else if (job->state == Job::State::running) {
    // The node answers with done(cancelled), which frees the slot.
    if (auto lit = links_.find(job->conn); lit != links_.end()) lit->second.link->send_cancel(job->id);
  } else {
    return;
  }
  clear_deadline(*job);
  job->state = Job::State::finished;
}

void Scheduler::fail(Job& job, ApiError error, bool ran, std::optional<protocol::SealedChunk> sealed) {
  clear_deadline(job);
  job.state = Job::State::finished;
  JobEvent e;
  e.kind = JobEvent::Kind::failed;
  e.error = std::move(error);
  e.ran = ran;
  // Only a sealed job's own final chunk is relayed (the node could send one
  // for any job; for a plain one it means nothing).
  if (job.request.sealed && sealed && sealed->final) e.sealed_failure = std::move(sealed);
  deliver(job, std::move(e));
  job.sink = nullptr;
}

void Scheduler::deliver(Job& job, JobEvent e) {
  if (job.sink) job.sink->on_event(std::move(e));
}

void Scheduler::lost(const std::shared_ptr<Job>& job, const protocol::Failed* f) {
  if (job->state != Job::State::running) return;
  clear_deadline(*job);
  const bool retryable = !f || f->retryable || f->code == "unavailable";
  if (!retryable) return fail(*job, errors::node_failure(*f), true, f->sealed);
  if (job->sink && job->sink->committed()) {
    if (f) return fail(*job, errors::node_failure(*f), true, f->sealed);
    return fail(*job, errors::provider_disconnected(), true);
  }
  // Nothing has reached the client yet, so any other node may start over.
  job->tried.push_back(job->conn);
  job->state = Job::State::idle;
  if (job->attempts >= config_.max_attempts) return fail(*job, errors::providers_failed(job->attempts), true);
  spdlog::info("job_retry generation={} failed_node={} reason={}", job->generation_id, job->node_id,
               f ? logfmt_value(f->code) : std::string("node_lost"));
  metrics_.job_retried();
  JobEvent restart;
  restart.kind = JobEvent::Kind::restarted;
  deliver(*job, std::move(restart));
  if (auto err = submit(job)) fail(*job, std::move(*err), true);
}

// ------------------------------------------------------------------ links

void Scheduler::link_up(ConnId conn, ProviderLink& link) { links_[conn].link = &link; }

size_t Scheduler::link_down(ConnId conn) {
  auto lit = links_.find(conn);
  if (lit == links_.end()) return 0;
  auto jobs = std::move(lit->second.jobs);
  links_.erase(lit);
  for (auto& [id, job] : jobs) {
    --running_;
    metrics_.node_failure();
    lost(job, nullptr);
  }
  return jobs.size();
}

std::shared_ptr<Job> Scheduler::release(ConnId conn, protocol::JobId id) {
  auto lit = links_.find(conn);
  if (lit == links_.end()) return nullptr;
  auto it = lit->second.jobs.find(id);
  if (it == lit->second.jobs.end()) return nullptr;
  auto job = std::move(it->second);
  lit->second.jobs.erase(it);
  --running_;
  router_.release(conn, job->request.model);
  drain(job->request.model);
  return job;
}

void Scheduler::on_delta(ConnId conn, protocol::Delta d, Clock::TimePoint received) {
  auto lit = links_.find(conn);
  if (lit == links_.end()) return;
  auto it = lit->second.jobs.find(d.job);
  if (it == lit->second.jobs.end()) return;
  Job& job = *it->second;
  // Calls only answer a request that offered tools (a sealed one's are sealed).
  if (!d.tool_calls.empty() && job.request.generation.tools.empty()) d.tool_calls.clear();
  if (!job.saw_output) {
    job.saw_output = true;
    job.first_token = received;
    router_.record_ttft(conn, to_millis(job.first_token - job.dispatched));
    metrics_.time_to_first_token(to_millis(job.first_token - job.admitted) / 1000.0);
  }
  if (job.state != Job::State::running) return;
  job.last_heard = received;
  JobEvent e;
  e.kind = JobEvent::Kind::delta;
  e.delta = std::move(d);
  e.received = received;
  deliver(job, std::move(e));
}

void Scheduler::on_done(ConnId conn, protocol::Done d) {
  auto job = release(conn, d.job);
  if (!job) return;
  if (job->state == Job::State::running) {
    clear_deadline(*job);
    job->state = Job::State::finished;
    JobEvent e;
    e.kind = JobEvent::Kind::done;
    e.done = std::move(d);
    deliver(*job, std::move(e));
    job->sink = nullptr;
  } else if (d.finish == protocol::FinishReason::cancelled && hooks_.late_done) {
    hooks_.late_done(*job, d);
  }
}

void Scheduler::on_failed(ConnId conn, protocol::Failed f) {
  auto job = release(conn, f.job);
  if (!job) return;
  metrics_.node_failure();
  lost(job, &f);
}

// ------------------------------------------------------------------- time

void Scheduler::set_deadline(Job& job, Clock::TimePoint at) {
  clear_deadline(job);
  job.deadline_entry = deadlines_.emplace(at, &job);
  job.has_deadline = true;
  if (!announced_ || at < *announced_) {
    announced_ = at;
    if (hooks_.wake_at) hooks_.wake_at(at);
  }
}

void Scheduler::clear_deadline(Job& job) {
  if (!job.has_deadline) return;
  deadlines_.erase(job.deadline_entry);
  job.has_deadline = false;
  if (deadlines_.empty() && announced_) {
    announced_.reset();
    if (hooks_.wake_at) hooks_.wake_at(std::nullopt);
  }
}

std::optional<Clock::TimePoint> Scheduler::next_deadline() const {
  if (deadlines_.empty()) return std::nullopt;
  return deadlines_.begin()->first;
}

void Scheduler::on_time(Clock::TimePoint now) {
  announced_.reset();
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    Job& job = *deadlines_.begin()->second;
    job.has_deadline = false;
    deadlines_.erase(deadlines_.begin());
    timed_out(job, now);
  }
  if (auto next = next_deadline()) {
    announced_ = *next;
    if (hooks_.wake_at) hooks_.wake_at(*next);
  }
}

void Scheduler::timed_out(Job& job, Clock::TimePoint now) {
  if (job.state == Job::State::queued) {
    --queued_;  // its queue entry is skipped when reached
    return fail(job, errors::no_capacity(), /*ran=*/false);
  }
  if (job.state != Job::State::running) return;
  // Lazily moved: a delta only updates last_heard.
  if (const auto due = job.last_heard + config_.job_idle_timeout; due > now) {
    job.deadline_entry = deadlines_.emplace(due, &job);
    job.has_deadline = true;
    return;
  }
  // The node answers the cancel with done(cancelled), which frees the slot.
  if (auto lit = links_.find(job.conn); lit != links_.end()) lit->second.link->send_cancel(job.id);
  fail(job, errors::provider_timeout(), true);
}

}  // namespace agora::gateway
