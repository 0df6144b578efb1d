#include "gateway/generation_log.h"

#include <boost/asio/post.hpp>

#include <algorithm>

namespace agora::gateway {

store::GenerationRecord generation_record(const Job& job, const protocol::Usage& usage, const protocol::Timings& t,
                                          protocol::FinishReason finish, Clock::TimePoint now) {
  store::GenerationRecord r;
  r.id = job.generation_id;
  r.key_id = job.key_id;
  r.provider_id = job.provider_id;
  r.node_id = job.node_id;
  r.model = job.request.model;
  r.model_sha256 = job.model_sha256;
  r.attestation = std::string(level_name(job.attestation));
  r.finish_reason = protocol::finish_reason_name(finish);
  r.stream = job.request.stream;
  r.prompt_tokens = usage.prompt_tokens;
  r.completion_tokens = usage.completion_tokens;
  r.cached_prompt_tokens = usage.cached_prompt_tokens;
  r.queued_ms = job.dispatched == Clock::TimePoint{} ? 0 : to_millis(job.dispatched - job.admitted);
  r.prompt_ms = t.prompt_ms;
  r.decode_ms = t.decode_ms;
  r.total_ms = to_millis(now - job.admitted);
  r.created_ms = job.created_unix * 1000;
  return r;
}

void GenerationLog::record(Job& job, const protocol::Usage& usage, const protocol::Timings& t,
                           protocol::FinishReason finish) {
  job.admission.used = std::max<int64_t>(job.admission.used, int64_t{usage.prompt_tokens} + usage.completion_tokens);
  store::GenerationRecord r = generation_record(job, usage, t, finish, clock_.now());
  metrics_.tokens(usage.prompt_tokens, usage.completion_tokens);
  recent_order_.push_back(r.id);
  recent_[r.id] = r;
  while (recent_order_.size() > kRecent) {
    recent_.erase(recent_order_.front());
    recent_order_.pop_front();
  }
  if (store_) store_->record(std::move(r));
}

const store::GenerationRecord* GenerationLog::find_recent(const std::string& id) const {
  auto it = recent_.find(id);
  return it == recent_.end() ? nullptr : &it->second;
}

void GenerationLog::lookup(const std::string& id, std::function<void(std::optional<store::GenerationRecord>)> done) {
  if (auto* r = find_recent(id)) {
    boost::asio::post(io_, [done = std::move(done), r = *r]() mutable { done(std::move(r)); });
    return;
  }
  if (!store_) {
    boost::asio::post(io_, [done = std::move(done)] { done(std::nullopt); });
    return;
  }
  store_->lookup_generation(id, [done = std::move(done)](Result<store::GenerationRecord> r) {
    if (r) done(std::move(*r));
    else done(std::nullopt);
  });
}

}  // namespace agora::gateway
