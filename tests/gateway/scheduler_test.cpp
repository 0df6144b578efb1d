// The scheduler's rules, on a manual clock with fake links and sinks: every
// timeout, retry and drain rule deterministically (the process-level tests
// in tests/clients/faults.test.mjs check the same through real processes).
#include "gateway/scheduler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

#include "fakes/fake_link.h"
#include "fakes/manual_clock.h"

namespace agora::gateway {
namespace {

using fakes::FakeLink;
using fakes::FakeSink;
using fakes::ManualClock;
using Kind = JobEvent::Kind;
using std::chrono::milliseconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr auto kQueueTimeout = milliseconds(1000);
constexpr auto kIdleTimeout = milliseconds(5000);

struct Harness {
  explicit Harness(Scheduler::Config c = config())
      : scheduler(router, clock, metrics, c,
                  Scheduler::Hooks{[this](std::optional<Clock::TimePoint> at) {
                                     if (at) timer->arm(*at);
                                     else timer->cancel();
                                   },
                                   [this](Job& job, const protocol::Done& d) {
                                     late.emplace_back(job.generation_id, d.finish);
                                   }}),
        timer(clock.make_timer([this] { scheduler.on_time(clock.now()); })) {}

  static Scheduler::Config config() {
    Scheduler::Config c;
    c.max_queue = 8;
    c.queue_timeout = kQueueTimeout;
    c.job_idle_timeout = kIdleTimeout;
    c.max_attempts = 3;
    return c;
  }

  // A node serving `model` with `slots`, at `level` (and `caps`).
  FakeLink& node(ConnId conn, int slots = 1, Level level = Level::standard, std::string model = "m",
                 protocol::ModelCapabilities caps = {}) {
    NodeInfo n;
    n.conn = conn;
    n.node_id = "node-" + std::to_string(conn);
    n.provider_id = "prov-" + std::to_string(conn);
    protocol::ModelAdvert a;
    a.name = model;
    a.sha256 = std::string(64, 'a');
    a.slots = slots;
    a.ctx_per_slot = 512;
    a.capabilities = caps;
    n.models.push_back(NodeModel{a, 0});
    router.add(std::move(n));
    if (level != Level::standard) router.set_level(conn, level);
    auto& link = links[conn];
    scheduler.link_up(conn, link);
    return link;
  }
  void gone(ConnId conn) {
    std::vector<std::string> models;
    for (const auto& m : router.find(conn)->models) models.push_back(m.advert.name);
    router.remove(conn);
    scheduler.link_down(conn);
    for (const auto& m : models) scheduler.drain(m);
  }

  std::shared_ptr<Job> job(FakeSink& sink, std::string model = "m", Level level = Level::standard) {
    auto j = std::make_shared<Job>();
    j->generation_id = "gen-" + std::to_string(++jobs_made);
    j->request.model = std::move(model);
    if (level == Level::verified) j->request.routing.privacy_level = "verified";
    if (level == Level::confidential) j->request.routing.confidential = true;
    j->admitted = clock.now();
    j->sink = &sink;
    return j;
  }
  std::shared_ptr<Job> submitted(FakeSink& sink, std::string model = "m", Level level = Level::standard) {
    auto j = job(sink, std::move(model), level);
    auto err = scheduler.submit(j);
    EXPECT_FALSE(err.has_value()) << err->message;
    return j;
  }

  void delta(ConnId conn, protocol::JobId id, std::string text = "x") {
    protocol::Delta d;
    d.job = id;
    d.text = std::move(text);
    scheduler.on_delta(conn, std::move(d), clock.now());
  }
  void done(ConnId conn, protocol::JobId id, protocol::FinishReason f = protocol::FinishReason::stop) {
    protocol::Done d;
    d.job = id;
    d.finish = f;
    scheduler.on_done(conn, std::move(d));
  }
  void failed(ConnId conn, protocol::JobId id, std::string code, bool retryable) {
    protocol::Failed f;
    f.job = id;
    f.code = std::move(code);
    f.message = "it broke";
    f.retryable = retryable;
    scheduler.on_failed(conn, std::move(f));
  }
  std::string metric(const std::string& name) const {
    const std::string text = metrics.render(Gauges{});
    const auto at = text.find("\n" + name + " ");
    if (at == std::string::npos) return "missing";
    const auto start = at + name.size() + 2;
    return text.substr(start, text.find('\n', start) - start);
  }

  ManualClock clock;
  Router router;
  Metrics metrics;
  std::map<ConnId, FakeLink> links;
  std::vector<std::pair<std::string, protocol::FinishReason>> late;
  Scheduler scheduler;
  std::unique_ptr<Timer> timer;
  int jobs_made = 0;
};

TEST(Scheduler, DispatchesToAFreeNodeWithPerConnectionJobNumbers) {
  Harness h;
  auto& a = h.node(1, 2);
  auto& b = h.node(2, 2);
  FakeSink s1, s2, s3;
  auto j1 = h.submitted(s1);
  auto j2 = h.submitted(s2);
  auto j3 = h.submitted(s3);
  EXPECT_EQ(h.scheduler.running(), 3u);
  EXPECT_EQ(a.jobs.size() + b.jobs.size(), 3u);
  // Numbers start at 1 on each connection: a node cannot count the others' traffic.
  for (auto* link : {&a, &b}) {
    for (size_t i = 0; i < link->jobs.size(); ++i) EXPECT_EQ(link->jobs[i].job, i + 1);
  }
  // Without max_tokens the node's context per slot bounds the answer.
  EXPECT_EQ(a.jobs[0].request.max_tokens, 512);
  EXPECT_EQ(j1->state, Job::State::running);
  EXPECT_EQ(j1->attempts, 1);
  EXPECT_EQ(j1->model_sha256, std::string(64, 'a'));
}

TEST(Scheduler, UnknownModelIs404AndUntouched) {
  Harness h;
  h.node(1);
  FakeSink s;
  auto j = h.job(s, "nope");
  auto err = h.scheduler.submit(j);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->status, 404);
  EXPECT_EQ(err->code, "model_not_found");
  EXPECT_EQ(err->param, "model");
  EXPECT_EQ(j->state, Job::State::idle);
  EXPECT_TRUE(s.events.empty());
}

TEST(Scheduler, BusyJobsQueueAndRunWhenASlotFrees) {
  Harness h;
  auto& link = h.node(1, 1);
  FakeSink s1, s2;
  auto j1 = h.submitted(s1);
  auto j2 = h.submitted(s2);
  EXPECT_EQ(j2->state, Job::State::queued);
  EXPECT_EQ(h.scheduler.queued(), 1u);
  ASSERT_EQ(link.jobs.size(), 1u);
  h.delta(1, 1, "hel");
  h.done(1, 1);
  EXPECT_THAT(s1.kinds(), ElementsAre(Kind::delta, Kind::done));
  EXPECT_EQ(j1->state, Job::State::finished);
  ASSERT_EQ(link.jobs.size(), 2u);  // the freed slot took the queued job at once
  EXPECT_EQ(j2->state, Job::State::running);
  EXPECT_EQ(h.scheduler.queued(), 0u);
  EXPECT_EQ(h.scheduler.running(), 1u);
}

TEST(Scheduler, QueueTimeoutIs503NoCapacityExactlyAtTheDeadline) {
  Harness h;
  h.node(1, 1);
  FakeSink s1, s2;
  auto j1 = h.submitted(s1);
  auto j2 = h.submitted(s2);
  h.clock.advance(kQueueTimeout - std::chrono::nanoseconds(1));
  EXPECT_TRUE(s2.events.empty());
  h.clock.advance(std::chrono::nanoseconds(1));
  ASSERT_THAT(s2.kinds(), ElementsAre(Kind::failed));
  EXPECT_EQ(s2.events[0].error.status, 503);
  EXPECT_EQ(s2.events[0].error.code, "no_capacity");
  EXPECT_EQ(s2.events[0].error.retry_after_s, 5);
  EXPECT_FALSE(s2.events[0].ran);  // never reached a node: no generation record
  EXPECT_EQ(h.scheduler.queued(), 0u);
  // The slot freeing later does not resurrect it.
  h.done(1, 1);
  EXPECT_EQ(h.links[1].jobs.size(), 1u);
  EXPECT_EQ(s2.events.size(), 1u);
}

TEST(Scheduler, FullQueueIs503QueueFull) {
  auto c = Harness::config();
  c.max_queue = 1;
  Harness h(c);
  h.node(1, 1);
  FakeSink s1, s2, s3;
  h.submitted(s1);
  h.submitted(s2);
  auto j3 = h.job(s3);
  auto err = h.scheduler.submit(j3);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->code, "queue_full");
  EXPECT_EQ(err->retry_after_s, 1);
}

TEST(Scheduler, RetryableFailureBeforeOutputGoesToAnotherNode) {
  Harness h;
  h.node(1, 1);
  h.node(2, 1);
  FakeSink s;
  auto j = h.submitted(s);
  const ConnId first = j->conn;
  const ConnId other = first == 1 ? 2 : 1;
  h.delta(first, 1, "partial");  // a unary sink has not committed it
  h.failed(first, 1, "unavailable", false);
  EXPECT_THAT(s.kinds(), ElementsAre(Kind::delta, Kind::restarted));
  EXPECT_EQ(j->conn, other);
  EXPECT_EQ(j->attempts, 2);
  EXPECT_THAT(j->tried, ElementsAre(first));
  ASSERT_EQ(h.links[other].jobs.size(), 1u);
  EXPECT_EQ(h.metric("agora_job_retries_total"), "1");
  EXPECT_EQ(h.metric("agora_node_failures_total"), "1");
  h.done(other, 1);
  EXPECT_THAT(s.kinds(), ElementsAre(Kind::delta, Kind::restarted, Kind::done));
}

TEST(Scheduler, NodeLostBeforeOutputGoesToAnotherNode) {
  Harness h;
  h.node(1, 1);
  h.node(2, 1);
  FakeSink s;
  auto j = h.submitted(s);
  const ConnId first = j->conn;
  h.gone(first);
  EXPECT_THAT(s.kinds(), ElementsAre(Kind::restarted));
  EXPECT_NE(j->conn, first);
  EXPECT_EQ(j->state, Job::State::running);
  EXPECT_EQ(h.scheduler.running(), 1u);
}

TEST(Scheduler, CommittedOutputIsNeverRetried) {
  Harness h;
  h.node(1, 1);
  h.node(2, 1);
  FakeSink lost(/*commit_on_delta=*/true), broke(/*commit_on_delta=*/true);
  auto a = h.submitted(lost);
  auto b = h.submitted(broke);
  h.delta(a->conn, a->id);
  h.delta(b->conn, b->id);
  h.failed(b->conn, b->id, "unavailable", true);
  h.gone(a->conn);
  ASSERT_THAT(lost.kinds(), ElementsAre(Kind::delta, Kind::failed));
  EXPECT_EQ(lost.events[1].error.status, 502);
  EXPECT_EQ(lost.events[1].error.message, "The provider disconnected while generating");
  EXPECT_TRUE(lost.events[1].ran);
  ASSERT_THAT(broke.kinds(), ElementsAre(Kind::delta, Kind::failed));
  EXPECT_EQ(broke.events[1].error.code, "provider_failed");
  EXPECT_EQ(h.metric("agora_job_retries_total"), "0");
}

TEST(Scheduler, NonRetryableFailureIsTheNodesErrorInOpenAIsShape) {
  Harness h;
  h.node(1, 2);
  FakeSink bad, big;
  auto a = h.submitted(bad);
  auto b = h.submitted(big);
  h.failed(1, a->id, "invalid_argument", false);
  h.failed(1, b->id, "too_large", false);
  ASSERT_THAT(bad.kinds(), ElementsAre(Kind::failed));
  EXPECT_EQ(bad.events[0].error.status, 400);
  EXPECT_THAT(bad.events[0].error.message, HasSubstr("The provider rejected the request: it broke"));
  ASSERT_THAT(big.kinds(), ElementsAre(Kind::failed));
  EXPECT_EQ(big.events[0].error.code, "context_length_exceeded");
  EXPECT_EQ(big.events[0].error.param, "messages");
  EXPECT_EQ(h.scheduler.running(), 0u);
}

TEST(Scheduler, MaxAttemptsNodesThenProvidersFailed) {
  auto c = Harness::config();
  c.max_attempts = 2;
  Harness h(c);
  h.node(1, 1);
  h.node(2, 1);
  h.node(3, 1);
  FakeSink s;
  auto j = h.submitted(s);
  h.failed(j->conn, j->id, "unavailable", false);
  h.failed(j->conn, j->id, "unavailable", false);
  ASSERT_THAT(s.kinds(), ElementsAre(Kind::restarted, Kind::failed));
  EXPECT_EQ(s.events[1].error.status, 502);
  EXPECT_EQ(s.events[1].error.message, "2 providers failed this request");
  EXPECT_EQ(j->state, Job::State::finished);
}

TEST(Scheduler, EveryEligibleNodeFailedIs503) {
  Harness h;
  h.node(1, 1);
  FakeSink s;
  auto j = h.submitted(s);
  h.failed(1, j->id, "unavailable", true);
  ASSERT_THAT(s.kinds(), ElementsAre(Kind::restarted, Kind::failed));
  EXPECT_EQ(s.events[1].error.status, 503);
  EXPECT_EQ(s.events[1].error.code, "provider_failed");
}

TEST(Scheduler, SilentNodeIsCancelledAfterTheIdleTimeoutCountedFromItsLastDelta) {
  Harness h;
  auto& link = h.node(1, 1);
  FakeSink s;
  auto j = h.submitted(s);
  h.clock.advance(kIdleTimeout / 2);
  h.delta(1, j->id);
  h.clock.advance(kIdleTimeout - milliseconds(1));  // 1.5 idle timeouts since dispatch, not since the delta
  EXPECT_THAT(s.kinds(), ElementsAre(Kind::delta));
  EXPECT_TRUE(link.cancels.empty());
  h.clock.advance(milliseconds(1));
  ASSERT_THAT(s.kinds(), ElementsAre(Kind::delta, Kind::failed));
  EXPECT_EQ(s.events[1].error.code, "provider_timeout");
  EXPECT_EQ(s.events[1].error.status, 502);
  EXPECT_THAT(link.cancels, ElementsAre(j->id));
  // The slot stays taken until the node confirms the cancel.
  EXPECT_EQ(h.scheduler.running(), 1u);
  h.done(1, j->id, protocol::FinishReason::cancelled);
  EXPECT_EQ(h.scheduler.running(), 0u);
  ASSERT_EQ(h.late.size(), 1u);
  EXPECT_EQ(h.late[0].first, j->generation_id);
  EXPECT_EQ(s.events.size(), 2u);
}

TEST(Scheduler, AbandonCancelsARunningJobAndDropsAQueuedOne) {
  Harness h;
  auto& link = h.node(1, 1);
  FakeSink s1, s2;
  auto running = h.submitted(s1);
  auto queued = h.submitted(s2);
  h.scheduler.abandon(queued);
  EXPECT_EQ(h.scheduler.queued(), 0u);
  h.scheduler.abandon(running);
  EXPECT_THAT(link.cancels, ElementsAre(running->id));
  h.scheduler.abandon(running);  // idempotent
  EXPECT_EQ(link.cancels.size(), 1u);
  h.delta(1, running->id);  // output after the cancel reaches no one
  h.done(1, running->id, protocol::FinishReason::cancelled);
  EXPECT_TRUE(s1.events.empty());
  EXPECT_TRUE(s2.events.empty());
  EXPECT_EQ(h.late.size(), 1u);
  EXPECT_EQ(link.jobs.size(), 1u);  // the abandoned queued job never ran
  EXPECT_EQ(h.scheduler.running(), 0u);
}

TEST(Scheduler, EachLevelQueuesApartSoAWaitingConfidentialJobHoldsUpNoOne) {
  Harness h;
  h.node(1, 1, Level::confidential);
  h.node(2, 1, Level::standard);
  FakeSink s1, s2, s3, s4;
  auto conf1 = h.submitted(s1, "m", Level::confidential);
  auto plain1 = h.submitted(s2);
  ASSERT_EQ(conf1->conn, 1u);
  ASSERT_EQ(plain1->conn, 2u);
  auto conf2 = h.submitted(s3, "m", Level::confidential);  // waits for node 1
  auto plain2 = h.submitted(s4);                          // waits for any node
  ASSERT_EQ(conf2->state, Job::State::queued);
  ASSERT_EQ(plain2->state, Job::State::queued);
  h.done(2, plain1->id);  // node 2 frees: the standard job behind the waiting confidential one runs
  EXPECT_EQ(plain2->state, Job::State::running);
  EXPECT_EQ(plain2->conn, 2u);
  EXPECT_EQ(conf2->state, Job::State::queued);
  h.done(1, conf1->id);
  EXPECT_EQ(conf2->state, Job::State::running);
  EXPECT_EQ(conf2->conn, 1u);
}

TEST(Scheduler, AQueuedJobWhoseLastNodeLeavesFails) {
  Harness h;
  h.node(1, 1, Level::confidential);
  h.node(2, 1);
  FakeSink s1, s2;
  auto running = h.submitted(s1, "m", Level::confidential);
  auto waiting = h.submitted(s2, "m", Level::confidential);
  ASSERT_EQ(waiting->state, Job::State::queued);
  h.router.set_level(1, Level::standard);  // its verdict expired
  h.scheduler.drain("m");
  ASSERT_THAT(s2.kinds(), ElementsAre(Kind::failed));
  EXPECT_EQ(s2.events[0].error.code, "no_eligible_provider");
  EXPECT_THAT(s2.events[0].error.message, HasSubstr("confidential: true"));
  EXPECT_FALSE(s2.events[0].ran);
  EXPECT_EQ(h.scheduler.queued(), 0u);
}

TEST(Scheduler, StoppedSchedulerRefusesNewJobs) {
  Harness h;
  h.node(1);
  h.scheduler.stop();
  FakeSink s;
  auto err = h.scheduler.submit(h.job(s));
  ASSERT_TRUE(err);
  EXPECT_EQ(err->code, "shutting_down");
  EXPECT_EQ(err->status, 503);
}

TEST(Scheduler, NoTimerIsLeftArmedOnceNothingWaits) {
  // A timer left armed would keep the gateway's event loop (and process)
  // alive after stop.
  Harness h;
  h.node(1, 1);
  FakeSink s1, s2;
  auto a = h.submitted(s1);
  auto b = h.submitted(s2);
  EXPECT_EQ(h.clock.timers_armed(), 1u);
  h.done(1, a->id);
  h.done(1, b->id);
  EXPECT_EQ(h.scheduler.next_deadline(), std::nullopt);
  EXPECT_EQ(h.clock.timers_armed(), 0u);
}

TEST(Scheduler, AGatewayOriginatedJobRunsWithItsOwnAdmissionAndSink) {
  // No HTTP request: the gateway's own work (an Arena probe, say) with its
  // own rate-limit lineage and a sink of its own.
  Harness h;
  auto& link = h.node(1, 1);
  auto limiter = std::make_shared<RateLimiter>();
  const KeyLimits one_at_a_time{0, 0, 1};
  FakeSink probe_sink;
  auto probe = std::make_shared<Job>();
  probe->generation_id = "probe-1";
  probe->request.model = "m";
  probe->request.generation.max_tokens = 4;
  probe->request.max_tokens_given = true;
  probe->sink = &probe_sink;
  ASSERT_EQ(limiter->admit("arena", one_at_a_time, 8, h.clock.now()).refusal, RateLimiter::Refusal::none);
  probe->admission.limiter = limiter;
  probe->admission.lineage = "arena";
  probe->admission.reserved = 8;
  probe->admission.clock = &h.clock;
  ASSERT_FALSE(h.scheduler.submit(probe));
  ASSERT_EQ(link.jobs.size(), 1u);
  EXPECT_EQ(link.jobs[0].request.max_tokens, 4);
  EXPECT_EQ(limiter->admit("arena", one_at_a_time, 8, h.clock.now()).refusal, RateLimiter::Refusal::concurrency);
  h.delta(1, 1, "ok");
  h.done(1, 1);
  ASSERT_THAT(probe_sink.kinds(), ElementsAre(Kind::delta, Kind::done));
  EXPECT_EQ(probe_sink.events[0].delta.text, "ok");
  probe.reset();  // the source lets go: its admission settles
  EXPECT_EQ(limiter->admit("arena", one_at_a_time, 8, h.clock.now()).refusal, RateLimiter::Refusal::none);
}

}  // namespace
}  // namespace agora::gateway

namespace agora::gateway {
namespace {

TEST(Scheduler, ToolAndStructuredRequestsGoOnlyToNodesThatSupportThem) {
  Harness h;
  auto& plain = h.node(1, 4);
  FakeSink s1;
  auto tools = h.job(s1);
  tools->request.routing.needs_tools = true;
  auto err = h.scheduler.submit(tools);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->status, 503);
  EXPECT_EQ(err->code, "no_eligible_provider");
  EXPECT_THAT(err->message, HasSubstr("tools"));
  FakeSink s2;
  auto structured = h.job(s2);
  structured->request.routing.needs_grammar = true;
  err = h.scheduler.submit(structured);
  ASSERT_TRUE(err);
  EXPECT_THAT(err->message, HasSubstr("response_format"));
  EXPECT_TRUE(plain.jobs.empty());

  auto& capable = h.node(2, 1, Level::standard, "m", {true, true, true});
  EXPECT_FALSE(h.scheduler.submit(tools).has_value());
  ASSERT_EQ(capable.jobs.size(), 1u);
  // The capable node is full: the next tool request waits in its own queue,
  // and plain requests behind it are not held up.
  FakeSink s3, s4;
  auto waiting = h.job(s3);
  waiting->request.routing.needs_tools = true;
  EXPECT_FALSE(h.scheduler.submit(waiting).has_value());
  EXPECT_EQ(waiting->state, Job::State::queued);
  auto next_plain = h.submitted(s4);
  EXPECT_EQ(next_plain->state, Job::State::running);
  EXPECT_EQ(plain.jobs.size(), 1u);
  h.done(2, 1);
  EXPECT_EQ(waiting->state, Job::State::running);
  EXPECT_EQ(capable.jobs.size(), 2u);
}

TEST(Scheduler, ASealedJobsFailureKeepsTheNodesSealedChunk) {
  Harness h;
  h.node(1);
  FakeSink s;
  auto j = h.job(s);
  j->request.sealed.emplace();
  ASSERT_FALSE(h.scheduler.submit(j).has_value());
  protocol::Failed f{1, "invalid_argument", "the sealed request failed", false, protocol::SealedChunk{0, true, "ct"}};
  h.scheduler.on_failed(1, std::move(f));
  ASSERT_THAT(s.kinds(), ElementsAre(Kind::failed));
  ASSERT_TRUE(s.events[0].sealed_failure.has_value());
  EXPECT_EQ(s.events[0].sealed_failure->ciphertext, "ct");
  EXPECT_EQ(s.events[0].error.status, 400);

  // A plain job's failure never carries one, whatever the node sends.
  FakeSink p;
  h.submitted(p);
  h.scheduler.on_failed(1, protocol::Failed{2, "internal", "x", false, protocol::SealedChunk{0, true, "ct"}});
  ASSERT_THAT(p.kinds(), ElementsAre(Kind::failed));
  EXPECT_FALSE(p.events[0].sealed_failure.has_value());
}

}  // namespace
}  // namespace agora::gateway
