// The generation log: one record per job that ran (GET /v1/generations/{id},
// `agora` usage reports, and later billing). The last 10,000 stay in memory
// so a lookup right after a reply never waits for the store's batch; older
// ones come from the store. Nothing of the prompt or answer is recorded.
#pragma once

#include <boost/asio/io_context.hpp>

#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>

#include "common/clock.h"
#include "gateway/job.h"
#include "gateway/metrics.h"
#include "gateway/store_worker.h"

namespace agora::gateway {

// The record of `job` ending now (pure).
store::GenerationRecord generation_record(const Job& job, const protocol::Usage& usage, const protocol::Timings& node_timings,
                                          protocol::FinishReason finish, Clock::TimePoint now);

class GenerationLog {
 public:
  static constexpr size_t kRecent = 10'000;
  GenerationLog(boost::asio::io_context& io, Metrics& metrics, const Clock& clock)
      : io_(io), metrics_(metrics), clock_(clock) {}
  // Where records go once they are written (none: memory only).
  void attach(StoreWorker* store) { store_ = store; }

  // The job ended: its usage settles its admission, and it is recorded.
  void record(Job& job, const protocol::Usage& usage, const protocol::Timings& node_timings, protocol::FinishReason finish);
  const store::GenerationRecord* find_recent(const std::string& id) const;
  // From memory when recent, else the store; `done` runs on the loop.
  void lookup(const std::string& id, std::function<void(std::optional<store::GenerationRecord>)> done);

 private:
  boost::asio::io_context& io_;
  Metrics& metrics_;
  const Clock& clock_;
  StoreWorker* store_ = nullptr;
  std::unordered_map<std::string, store::GenerationRecord> recent_;
  std::deque<std::string> recent_order_;
};

}  // namespace agora::gateway
