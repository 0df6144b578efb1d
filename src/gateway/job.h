// A job: one chat request on its way through the scheduler, from whatever
// source it came (a client's HTTP request, or the gateway itself), and the
// sink that hears what becomes of it. Plain data: no sockets, no timers.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "gateway/openai_names.h"
#include "gateway/level.h"
#include "gateway/rate_limiter.h"
#include "protocol/messages.h"

namespace agora::gateway {

using ConnId = uint64_t;

// A request admitted by the rate limiter: settles its reservation (with the
// usage recorded for it) when the job is destroyed, i.e. after the client's
// response ended and the node let go of it.
struct Admission {
  std::shared_ptr<RateLimiter> limiter;
  std::string lineage;
  int64_t reserved = 0;
  int64_t used = 0;
  Clock* clock = nullptr;

  Admission() = default;
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;
  ~Admission() {
    if (limiter) limiter->settle(lineage, reserved, used, clock->now());
  }
};

// What a job's sink hears about it, in order.
struct JobEvent {
  enum class Kind {
    delta,        // output from the node
    done,         // finished normally
    restarted,    // the node failed before anything was committed: the output so far is void, another node starts over
    failed,       // ended without an answer: `error` says why
    client_gone,  // the client closed its connection (raised by the HTTP sink itself)
  };
  Kind kind = Kind::delta;
  protocol::Delta delta;
  protocol::Done done;
  ApiError error;                // failed
  bool ran = false;              // failed: the job ran on a node (the generation log records the failure)
  // failed, a sealed job: the node's final chunk, holding the real error
  // (the plaintext one is generic); relayed to the client with the error.
  std::optional<protocol::SealedChunk> sealed_failure;
  Clock::TimePoint received{};  // when the node's frame arrived (delta)
};

// Where a job's events go. The scheduler calls it on its own thread, in
// the order things happen; a sink only queues or acts, never calls back
// into the scheduler from inside on_event.
class JobSink {
 public:
  virtual ~JobSink() = default;
  virtual void on_event(JobEvent e) = 0;
  // Output has reached the consumer (a streamed response began), so a
  // failing node can no longer be replaced by another one.
  virtual bool committed() const = 0;
};

struct Job {
  protocol::JobId id = 0;  // its number on the node running it (per connection)
  std::string generation_id;
  std::string key_id;
  ChatRequest request;
  int64_t created_unix = 0;
  Clock::TimePoint admitted{}, dispatched{}, first_token{};

  enum class State { idle, queued, running, finished } state = State::idle;
  ConnId conn = 0;                 // node running it (state running)
  std::string provider_id, node_id, model_sha256;
  Level attestation = Level::standard;  // the level of the node running it, when dispatched
  std::vector<ConnId> tried;       // nodes that failed it
  int attempts = 0;
  bool saw_output = false;         // a delta arrived from the current node
  Clock::TimePoint last_heard{};   // dispatch or the node's last delta (idle timeout)

  Admission admission;             // the source's admission (rate-limit reservation)
  // Events go here until the job is finished or abandoned (then nullptr).
  JobSink* sink = nullptr;

  // With conversation memory: where the exchange is appended once the
  // answer is complete (before the client sees its end, so a next turn
  // sent at once finds it).
  struct ConversationRef {
    std::string owner, id;
    std::vector<protocol::ChatMessage> own_messages;  // what this request added
    std::optional<int64_t> ttl_s;
    int turns_used = 0, turns_dropped = 0;
  };
  std::optional<ConversationRef> conversation;
  std::string answer;  // accumulated when `conversation` is set

  // The scheduler's: this job's entry among the deadlines (queue timeout
  // while queued, idle timeout while running).
  std::multimap<Clock::TimePoint, Job*>::iterator deadline_entry;
  bool has_deadline = false;
};

}  // namespace agora::gateway
