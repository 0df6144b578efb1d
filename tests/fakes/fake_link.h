// In-process fakes for the scheduler's seams: a ProviderLink that records
// what the scheduler sends a node, and a JobSink that records what a job's
// source hears.
#pragma once

#include <string>
#include <vector>

#include "gateway/job.h"
#include "gateway/provider_link.h"

namespace agora::fakes {

class FakeLink final : public gateway::ProviderLink {
 public:
  void send_job(const protocol::Job& job) override { jobs.push_back(job); }
  void send_cancel(protocol::JobId job) override { cancels.push_back(job); }
  void send_challenge(const std::string& nonce) override { challenges.push_back(nonce); }
  bool open() const override { return is_open; }

  bool is_open = true;

  std::vector<protocol::Job> jobs;
  std::vector<protocol::JobId> cancels;
  std::vector<std::string> challenges;
};

class FakeSink final : public gateway::JobSink {
 public:
  // commit_on_delta: like a streamed HTTP response, output is committed
  // with the first delta.
  explicit FakeSink(bool commit_on_delta = false) : commit_on_delta_(commit_on_delta) {}
  void on_event(gateway::JobEvent e) override {
    if (commit_on_delta_ && e.kind == gateway::JobEvent::Kind::delta) committed_ = true;
    events.push_back(std::move(e));
  }
  bool committed() const override { return committed_; }

  std::vector<gateway::JobEvent::Kind> kinds() const {
    std::vector<gateway::JobEvent::Kind> out;
    for (const auto& e : events) out.push_back(e.kind);
    return out;
  }
  std::vector<gateway::JobEvent> events;

 private:
  bool commit_on_delta_;
  bool committed_ = false;
};

}  // namespace agora::fakes
