// FakeEngine: the Engine contract without a model, on real threads. Nothing
// here sleeps to synchronise: tests wait on the engine's own callbacks
// (futures) with bounded timeouts, and time-dependent checks assert lower
// bounds only.
#include "engine/fake_engine.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#include "crypto/sha256.h"
#include "fakes/manual_clock.h"

namespace agora::engine {
namespace {

using namespace std::chrono_literals;
using SteadyTime = std::chrono::steady_clock::time_point;

constexpr auto kWait = 10s;  // bound on every wait for the engine thread

template <class T>
bool ready(std::future<T>& f, std::chrono::seconds limit = kWait) {
  return f.wait_for(limit) == std::future_status::ready;
}

FakeEngineOptions options(int32_t slots = 4, int32_t tokens = 16) {
  FakeEngineOptions o;
  o.slots = slots;
  o.tokens = tokens;
  return o;
}

GenerationRequest chat(const std::string& text, int32_t max_tokens = 256) {
  GenerationRequest r;
  r.messages = {{"user", text}};
  r.max_tokens = max_tokens;
  return r;
}

GenerationRequest raw(const std::string& prompt, int32_t max_tokens = 256) {
  GenerationRequest r;
  r.prompt = prompt;
  r.max_tokens = max_tokens;
  return r;
}

std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

// Records one request's stream: events with their arrival times, a signal at
// the first event, and the completion. Fields are written on the engine
// thread and read by the test after the matching future is ready. The
// callbacks share the state, so a Recorder may go before the engine does.
struct Recorder {
  struct State {
    std::vector<StreamEvent> events;
    std::vector<SteadyTime> event_times;
    std::promise<void> first;
    std::promise<Completion> done;
    std::function<void(const StreamEvent&)> also;  // runs after recording, on the engine thread
  };
  std::shared_ptr<State> state = std::make_shared<State>();
  std::vector<StreamEvent>& events = state->events;
  std::vector<SteadyTime>& event_times = state->event_times;
  std::function<void(const StreamEvent&)>& also = state->also;
  std::future<void> first = state->first.get_future();
  std::future<Completion> done = state->done.get_future();

  GenerationCallbacks callbacks() const {
    GenerationCallbacks cb;
    cb.on_event = [st = state](const StreamEvent& ev) {
      st->events.push_back(ev);
      st->event_times.push_back(std::chrono::steady_clock::now());
      if (st->events.size() == 1) st->first.set_value();
      if (st->also) st->also(ev);
    };
    cb.on_done = [st = state](Completion c) { st->done.set_value(std::move(c)); };
    return cb;
  }

  std::string streamed_text() const {
    std::string s;
    for (const auto& e : events) s += e.text;
    return s;
  }
};

RequestId submit_ok(Engine& e, GenerationRequest r, Recorder& rec) {
  auto id = e.submit(std::move(r), rec.callbacks());
  EXPECT_TRUE(id.ok()) << (id ? "" : id.error().to_string());
  return id ? *id : 0;
}

Completion run(Engine& e, GenerationRequest r, Recorder& rec) {
  submit_ok(e, std::move(r), rec);
  if (!ready(rec.done)) {
    ADD_FAILURE() << "no completion within the time limit";
    return {};
  }
  return rec.done.get();
}

GenerationCallbacks must_not_run() {
  GenerationCallbacks cb;
  cb.on_event = [](const StreamEvent&) { ADD_FAILURE() << "on_event after a rejected submit"; };
  cb.on_done = [](Completion) { ADD_FAILURE() << "on_done after a rejected submit"; };
  return cb;
}

using agora::fakes::ManualClock;

size_t ceil4(size_t bytes) {
  return (bytes + 3) / 4;
}

// ------------------------------------------------------------ the fake model

TEST(FakeEngine, ModelInfo) {
  FakeEngineOptions o;
  o.name = "bench-fake";
  o.ctx_per_slot = 1024;
  auto e = make_fake_engine(o);
  const auto& info = e->model_info();
  EXPECT_EQ(info.name, "bench-fake");
  EXPECT_EQ(info.architecture, "fake");
  EXPECT_EQ(info.quantization, "none");
  EXPECT_EQ(info.description, "fake engine (no model)");
  EXPECT_EQ(info.context_length, 1024);
  EXPECT_EQ(info.sha256, crypto::sha256_hex(std::string_view("fake:bench-fake")));
  EXPECT_EQ(info.sha256.size(), 64u);
  const auto s = e->stats();
  EXPECT_EQ(s.slots_total, 64);
  EXPECT_EQ(s.ctx_per_slot, 1024);
  EXPECT_EQ(s.slots_busy, 0);
}

TEST(FakeEngine, ChatTemplate) {
  auto e = make_fake_engine(options());
  auto t = e->apply_chat_template({{"system", "be brief"}, {"user", "hi"}});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t, "<|system|>be brief\n<|user|>hi\n<|assistant|>");
  auto empty = e->apply_chat_template({});
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().code, Errc::invalid_argument);
  auto bad = e->apply_chat_template({{"robot", "x"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, Errc::invalid_argument);
  EXPECT_NE(bad.error().message.find("robot"), std::string::npos);
}

TEST(FakeEngine, TokenizerIsFourBytesPerToken) {
  auto e = make_fake_engine(options());
  EXPECT_TRUE(e->tokenize("", false).empty());
  EXPECT_EQ(e->tokenize("a", false).size(), 1u);
  EXPECT_EQ(e->tokenize("abcd", false).size(), 1u);
  EXPECT_EQ(e->tokenize("abcde", false).size(), 2u);
  EXPECT_EQ(e->tokenize(repeat("x", 4001), false).size(), 1001u);
  const auto a = e->tokenize("hello world!", false);
  EXPECT_EQ(a, e->tokenize("hello world!", true));  // parse_special changes nothing
  ASSERT_EQ(a.size(), 3u);
  EXPECT_NE(a[0], a[1]);
  for (TokenId t : a) {
    EXPECT_GE(t, kFakePromptIdBase);
    EXPECT_EQ(e->token_bytes(t), "");  // prompt chunk ids are hashes
  }
  EXPECT_EQ(e->tokenize("hell", false)[0], a[0]);  // same chunk, same id
  EXPECT_EQ(make_fake_engine(options())->tokenize("hello world!", false), a);  // across instances
}

TEST(FakeEngine, TokenBytes) {
  FakeEngineOptions o = options();
  o.token_text = " wörd";
  auto e = make_fake_engine(o);
  EXPECT_EQ(e->token_bytes(0), " wörd");
  EXPECT_EQ(e->token_bytes(15), " wörd");
  EXPECT_EQ(e->token_bytes(kFakeAltIdBase + 3), " wörd3");
  EXPECT_EQ(e->token_bytes(kFakeAltIdBase), "");
  EXPECT_EQ(e->token_bytes(-1), "");
  EXPECT_EQ(e->token_bytes(kFakeAltIdBase + kMaxTopLogprobs), "");
}

// ------------------------------------------------------------ generation

TEST(FakeEngine, DefaultRequestStreamsTokensAndStops) {
  auto e = make_fake_engine(options(4, 16));
  Recorder rec;
  auto req = chat("Say something.");
  const auto rendered = e->apply_chat_template(req.messages);
  ASSERT_TRUE(rendered.ok());
  const Completion c = run(*e, req, rec);
  EXPECT_EQ(c.finish, FinishReason::stop);
  EXPECT_EQ(c.text, repeat(" tok", 16));
  EXPECT_EQ(rec.streamed_text(), c.text);
  ASSERT_EQ(rec.events.size(), 16u);
  for (const auto& ev : rec.events) {
    EXPECT_EQ(ev.text, " tok");
    EXPECT_TRUE(ev.logprobs.empty());
  }
  EXPECT_TRUE(c.logprobs.empty());
  EXPECT_FALSE(c.error.has_value());
  EXPECT_EQ(c.usage.prompt_tokens, static_cast<int32_t>(ceil4(rendered->size())));
  EXPECT_EQ(c.usage.prompt_tokens, static_cast<int32_t>(e->tokenize(*rendered, true).size()));
  EXPECT_EQ(c.usage.completion_tokens, 16);
  EXPECT_EQ(c.usage.cached_prompt_tokens, 0);
  EXPECT_GE(c.timings.queued_ms, 0.0);
  EXPECT_GE(c.timings.prompt_ms, 0.0);
  EXPECT_GE(c.timings.decode_ms, 0.0);
  EXPECT_GT(c.id, 0u);
}

TEST(FakeEngine, RawPromptTokens) {
  auto e = make_fake_engine(options(1, 3));
  Recorder rec;
  const Completion c = run(*e, raw("abcdefghi"), rec);  // 9 bytes
  EXPECT_EQ(c.usage.prompt_tokens, 3);
  EXPECT_EQ(c.usage.completion_tokens, 3);
  const auto s = e->stats();
  EXPECT_EQ(s.prompt_tokens_processed, 3u);
  EXPECT_EQ(s.tokens_generated, 3u);
  EXPECT_EQ(s.decode_steps, 3u);  // one request: one token per step
  EXPECT_EQ(s.prompt_tokens_reused, 0u);
}

TEST(FakeEngine, MaxTokensBelowTokensFinishesWithLength) {
  auto e = make_fake_engine(options(2, 16));
  Recorder short_rec;
  const Completion c = run(*e, chat("x", 5), short_rec);
  EXPECT_EQ(c.finish, FinishReason::length);
  EXPECT_EQ(c.usage.completion_tokens, 5);
  EXPECT_EQ(c.text, repeat(" tok", 5));
  EXPECT_EQ(short_rec.events.size(), 5u);

  Recorder exact_rec;
  const Completion exact = run(*e, chat("x", 16), exact_rec);
  EXPECT_EQ(exact.finish, FinishReason::stop);
  EXPECT_EQ(exact.usage.completion_tokens, 16);
}

TEST(FakeEngine, IgnoreEosRunsToMaxTokens) {
  auto e = make_fake_engine(options(1, 4));
  auto req = chat("x", 40);
  req.ignore_eos = true;
  Recorder rec;
  const Completion c = run(*e, req, rec);
  EXPECT_EQ(c.finish, FinishReason::length);
  EXPECT_EQ(c.usage.completion_tokens, 40);
}

TEST(FakeEngine, ContextEndsGeneration) {
  FakeEngineOptions o = options(1, 16);
  o.ctx_per_slot = 8;
  auto e = make_fake_engine(o);
  Recorder rec;
  const Completion c = run(*e, raw(repeat("a", 20)), rec);  // 5 prompt tokens, room for 3
  EXPECT_EQ(c.usage.prompt_tokens, 5);
  EXPECT_EQ(c.usage.completion_tokens, 3);
  EXPECT_EQ(c.finish, FinishReason::length);
}

TEST(FakeEngine, ZeroTokensFinishesEmpty) {
  auto e = make_fake_engine(options(1, 0));
  Recorder rec;
  const Completion c = run(*e, chat("x"), rec);
  EXPECT_EQ(c.finish, FinishReason::stop);
  EXPECT_EQ(c.text, "");
  EXPECT_EQ(c.usage.completion_tokens, 0);
  EXPECT_TRUE(rec.events.empty());
}

TEST(FakeEngine, StopSequenceEndsAndIsTrimmed) {
  auto e = make_fake_engine(options(1, 16));
  auto req = chat("x");
  req.stop = {"k t"};  // " tok tok" holds it after the second token
  Recorder rec;
  const Completion c = run(*e, req, rec);
  EXPECT_EQ(c.finish, FinishReason::stop);
  EXPECT_EQ(c.text, " to");
  EXPECT_EQ(rec.streamed_text(), " to");
  EXPECT_EQ(c.usage.completion_tokens, 2);

  auto never = chat("x");
  never.stop = {"zzz", "tok!"};
  Recorder rec2;
  const Completion c2 = run(*e, never, rec2);
  EXPECT_EQ(c2.text, repeat(" tok", 16));
  EXPECT_EQ(rec2.streamed_text(), c2.text);
  EXPECT_EQ(c2.finish, FinishReason::stop);
}

TEST(FakeEngine, LogprobsShape) {
  auto e = make_fake_engine(options(1, 6));
  auto req = chat("x");
  req.logprobs = true;
  req.top_logprobs = 3;
  Recorder rec;
  const Completion c = run(*e, req, rec);
  ASSERT_EQ(c.logprobs.size(), 6u);
  size_t streamed = 0;
  for (const auto& ev : rec.events) streamed += ev.logprobs.size();
  EXPECT_EQ(streamed, 6u);
  for (size_t k = 0; k < c.logprobs.size(); ++k) {
    const auto& lp = c.logprobs[k];
    EXPECT_EQ(lp.token, static_cast<TokenId>(k));
    EXPECT_EQ(lp.text, " tok");
    EXPECT_FLOAT_EQ(lp.logprob, kFakeLogprob);
    ASSERT_EQ(lp.top.size(), 3u);
    EXPECT_EQ(lp.top[0].token, lp.token);
    EXPECT_EQ(lp.top[0].text, lp.text);
    for (size_t j = 1; j < lp.top.size(); ++j) {
      EXPECT_LT(lp.top[j].logprob, lp.top[j - 1].logprob);
      EXPECT_EQ(lp.top[j].token, kFakeAltIdBase + static_cast<TokenId>(j));
      EXPECT_EQ(e->token_bytes(lp.top[j].token), lp.top[j].text);
    }
  }

  auto no_top = chat("x");
  no_top.logprobs = true;
  Recorder rec2;
  const Completion c2 = run(*e, no_top, rec2);
  ASSERT_EQ(c2.logprobs.size(), 6u);
  EXPECT_TRUE(c2.logprobs[0].top.empty());
}

TEST(FakeEngine, LogprobsOfStoppedTokensAreDropped) {
  auto e = make_fake_engine(options(1, 16));
  auto req = chat("x");
  req.logprobs = true;
  req.stop = {" tok tok tok"};
  Recorder rec;
  const Completion c = run(*e, req, rec);
  EXPECT_EQ(c.text, "");
  EXPECT_TRUE(c.logprobs.empty());
  EXPECT_EQ(c.usage.completion_tokens, 3);
}

// ------------------------------------------------------------ rejected requests

TEST(FakeEngine, InvalidParametersAreRejected) {
  auto e = make_fake_engine(options());
  auto bad = chat("x");
  bad.sampling.temperature = 3.0f;
  auto r = e->submit(bad, must_not_run());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::invalid_argument);
  EXPECT_NE(r.error().message.find("temperature"), std::string::npos);

  auto both = chat("x");
  both.prompt = "y";
  r = e->submit(both, must_not_run());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("messages"), std::string::npos);

  auto top = chat("x");
  top.top_logprobs = 2;  // without logprobs
  r = e->submit(top, must_not_run());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("top_logprobs"), std::string::npos);

  r = e->submit(raw(""), must_not_run());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::invalid_argument);

  r = e->submit(chat("x", 0), must_not_run());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("max_tokens"), std::string::npos);
  EXPECT_EQ(e->stats().queued, 0);
}

TEST(FakeEngine, PromptThatFillsTheContextIsTooLarge) {
  FakeEngineOptions o = options(1, 16);
  o.ctx_per_slot = 16;
  auto e = make_fake_engine(o);
  auto r = e->submit(raw(repeat("a", 64)), must_not_run());  // 16 tokens + 1 > 16
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::too_large);
  Recorder rec;
  const Completion c = run(*e, raw(repeat("a", 60)), rec);  // 15 tokens: room for one
  EXPECT_EQ(c.usage.prompt_tokens, 15);
  EXPECT_EQ(c.usage.completion_tokens, 1);
  EXPECT_EQ(c.finish, FinishReason::length);
}

// ------------------------------------------------------------ concurrency

TEST(FakeEngine, SixtyFourConcurrentRequestsAllComplete) {
  auto e = make_fake_engine(options(64, 16));
  std::vector<std::unique_ptr<Recorder>> recs;
  std::set<RequestId> ids;
  for (int i = 0; i < 64; ++i) {
    recs.push_back(std::make_unique<Recorder>());
    ids.insert(submit_ok(*e, chat("request " + std::to_string(i)), *recs.back()));
  }
  EXPECT_EQ(ids.size(), 64u);
  for (auto& rec : recs) {
    ASSERT_TRUE(ready(rec->done));
    const Completion c = rec->done.get();
    EXPECT_TRUE(ids.contains(c.id));
    EXPECT_EQ(c.finish, FinishReason::stop);
    EXPECT_EQ(c.text, repeat(" tok", 16));
    EXPECT_EQ(rec->streamed_text(), c.text);
  }
  const auto s = e->stats();
  EXPECT_EQ(s.tokens_generated, 64u * 16u);
  EXPECT_EQ(s.slots_busy, 0);
  EXPECT_EQ(s.queued, 0);
  EXPECT_GE(s.decode_steps, 16u);
  EXPECT_LE(s.decode_steps, 64u * 16u);
}

TEST(FakeEngine, ManySubmittersMoreRequestsThanSlots) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 100;
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  int bad = 0;
  std::set<RequestId> ids;
  auto e = make_fake_engine(options(8, 5));  // after what its callbacks use
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        GenerationCallbacks cb;
        cb.on_done = [&](Completion c) {
          std::lock_guard lock(mu);
          if (c.finish != FinishReason::stop || c.usage.completion_tokens != 5) ++bad;
          ++done;
          cv.notify_all();
        };
        auto id = e->submit(raw("prompt"), std::move(cb));
        std::lock_guard lock(mu);
        if (id) {
          ids.insert(*id);
        } else {
          ++bad;
          ++done;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, kWait, [&] { return done == kThreads * kPerThread; }));
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(ids.size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(e->stats().tokens_generated, static_cast<uint64_t>(kThreads * kPerThread * 5));
}

TEST(FakeEngine, SubmitFromCallbackChains) {
  auto e = make_fake_engine(options(1, 2));
  std::promise<int> finished;
  auto fut = finished.get_future();
  std::function<void(int)> next;
  next = [&](int n) {
    GenerationCallbacks cb;
    cb.on_done = [&, n](Completion) {
      if (n == 10) {
        finished.set_value(n);
      } else {
        next(n + 1);  // on the engine thread
      }
    };
    EXPECT_TRUE(e->submit(chat("x"), std::move(cb)).ok());
  };
  next(1);
  ASSERT_TRUE(ready(fut));
  EXPECT_EQ(fut.get(), 10);
}

// A request that takes its slot and then holds it: one token, then an hour.
FakeEngineOptions one_slot_held(int32_t max_queue) {
  FakeEngineOptions o = options(1, 1000);
  o.max_queue = max_queue;
  o.token_interval = std::chrono::hours(1);
  return o;
}

TEST(FakeEngine, FullQueueIsUnavailableAndCancelFreesTheSlot) {
  Recorder a, b;
  auto e = make_fake_engine(one_slot_held(1));
  const RequestId id_a = submit_ok(*e, chat("a"), a);
  ASSERT_TRUE(ready(a.first));  // a holds the only slot
  submit_ok(*e, chat("b"), b);  // waits in the queue
  auto full = e->submit(chat("c"), must_not_run());
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code, Errc::unavailable);
  auto s = e->stats();
  EXPECT_EQ(s.slots_busy, 1);
  EXPECT_EQ(s.queued, 1);

  EXPECT_TRUE(e->cancel(id_a));
  ASSERT_TRUE(ready(a.done));
  const Completion ca = a.done.get();
  EXPECT_EQ(ca.finish, FinishReason::cancelled);
  EXPECT_EQ(ca.usage.completion_tokens, 1);
  EXPECT_EQ(ca.text, " tok");
  EXPECT_FALSE(e->cancel(id_a));  // already finished

  ASSERT_TRUE(ready(b.first));  // b got the freed slot
  s = e->stats();
  EXPECT_EQ(s.slots_busy, 1);
  EXPECT_EQ(s.queued, 0);
  EXPECT_EQ(s.tokens_generated, 2u);
  EXPECT_TRUE(e->submit(chat("d"), GenerationCallbacks{}).ok());  // room in the queue again
}

TEST(FakeEngine, CancelQueuedRequest) {
  Recorder a, b;
  auto e = make_fake_engine(one_slot_held(4));
  submit_ok(*e, chat("a"), a);
  ASSERT_TRUE(ready(a.first));
  const RequestId id_b = submit_ok(*e, chat("b"), b);
  EXPECT_TRUE(e->cancel(id_b));
  ASSERT_TRUE(ready(b.done));
  const Completion cb = b.done.get();
  EXPECT_EQ(cb.finish, FinishReason::cancelled);
  EXPECT_EQ(cb.usage.completion_tokens, 0);
  EXPECT_TRUE(b.events.empty());
  EXPECT_FALSE(e->cancel(id_b));
  EXPECT_EQ(e->stats().queued, 0);
  EXPECT_EQ(e->stats().slots_busy, 1);
}

TEST(FakeEngine, CancelUnknownId) {
  auto e = make_fake_engine(options());
  EXPECT_FALSE(e->cancel(12345));
  Recorder rec;
  const Completion c = run(*e, chat("x"), rec);
  EXPECT_FALSE(e->cancel(c.id));
}

TEST(FakeEngine, CancelFromOwnCallbackStopsBeforeTheNextToken) {
  auto e = make_fake_engine(options(2, 16));
  Recorder rec;
  std::promise<RequestId> id_promise;  // the id is known only once submit returns
  std::shared_future<RequestId> id = id_promise.get_future().share();
  bool cancel_result = false;  // engine thread; read after done
  rec.also = [&](const StreamEvent&) {
    if (rec.events.size() == 1 && id.wait_for(kWait) != std::future_status::ready) {
      ADD_FAILURE() << "the test never published the id";
    }
    if (rec.events.size() == 3) cancel_result = e->cancel(id.get());
  };
  id_promise.set_value(submit_ok(*e, chat("x"), rec));
  ASSERT_TRUE(ready(rec.done));
  const Completion c = rec.done.get();
  EXPECT_TRUE(cancel_result);
  EXPECT_EQ(c.id, id.get());
  EXPECT_EQ(c.finish, FinishReason::cancelled);
  EXPECT_EQ(c.usage.completion_tokens, 3);
  EXPECT_EQ(rec.events.size(), 3u);
  EXPECT_EQ(c.text, repeat(" tok", 3));
}

TEST(FakeEngine, CancelAfterTheLastTokenStillReportsCancelled) {
  auto e = make_fake_engine(options(1, 3));
  Recorder rec;
  std::promise<RequestId> id_promise;
  std::shared_future<RequestId> id = id_promise.get_future().share();
  bool cancel_result = false;
  rec.also = [&](const StreamEvent&) {
    if (rec.events.size() == 1 && id.wait_for(kWait) != std::future_status::ready) {
      ADD_FAILURE() << "the test never published the id";
    }
    if (rec.events.size() == 3) cancel_result = e->cancel(id.get());  // the last token
  };
  id_promise.set_value(submit_ok(*e, chat("x"), rec));
  ASSERT_TRUE(ready(rec.done));
  const Completion c = rec.done.get();
  EXPECT_TRUE(cancel_result);
  EXPECT_EQ(c.finish, FinishReason::cancelled);
  EXPECT_EQ(c.usage.completion_tokens, 3);
}

TEST(FakeEngine, FailAfterTokens) {
  FakeEngineOptions o = options(2, 16);
  o.fail_after_tokens = 4;
  auto e = make_fake_engine(o);
  Recorder rec;
  const Completion c = run(*e, chat("x"), rec);
  EXPECT_EQ(c.finish, FinishReason::error);
  ASSERT_TRUE(c.error.has_value());
  EXPECT_EQ(c.error->code, Errc::internal);
  EXPECT_EQ(c.error->message, "fake engine: injected failure");
  EXPECT_EQ(c.usage.completion_tokens, 4);
  EXPECT_EQ(rec.events.size(), 4u);
  EXPECT_EQ(c.text, repeat(" tok", 4));
  EXPECT_EQ(e->stats().slots_busy, 0);

  Recorder shorter;  // ends on its own before the fault
  const Completion s = run(*e, chat("x", 3), shorter);
  EXPECT_EQ(s.finish, FinishReason::length);
  EXPECT_FALSE(s.error.has_value());
}

TEST(FakeEngine, FailAfterZeroTokens) {
  FakeEngineOptions o = options(1, 16);
  o.fail_after_tokens = 0;
  auto e = make_fake_engine(o);
  Recorder rec;
  const Completion c = run(*e, chat("x"), rec);
  EXPECT_EQ(c.finish, FinishReason::error);
  ASSERT_TRUE(c.error.has_value());
  EXPECT_EQ(c.usage.completion_tokens, 0);
  EXPECT_TRUE(rec.events.empty());
}

TEST(FakeEngine, FailureDropsTextHeldForAStop) {
  FakeEngineOptions o = options(1, 16);
  o.fail_after_tokens = 2;
  auto e = make_fake_engine(o);
  auto req = chat("x");
  req.stop = {" tok tok tok"};  // holds everything back
  Recorder rec;
  const Completion c = run(*e, req, rec);
  EXPECT_EQ(c.finish, FinishReason::error);
  EXPECT_EQ(c.text, "");
  EXPECT_EQ(c.usage.completion_tokens, 2);
}

TEST(FakeEngine, DestructorCancelsOutstandingRequests) {
  Recorder a, b;
  auto e = make_fake_engine(one_slot_held(4));
  submit_ok(*e, chat("a"), a);
  ASSERT_TRUE(ready(a.first));
  submit_ok(*e, chat("b"), b);
  e.reset();  // callbacks run before the destructor returns
  ASSERT_TRUE(ready(a.done, 0s));
  ASSERT_TRUE(ready(b.done, 0s));
  const Completion ca = a.done.get();
  const Completion cb = b.done.get();
  EXPECT_EQ(ca.finish, FinishReason::cancelled);
  EXPECT_EQ(ca.usage.completion_tokens, 1);
  EXPECT_EQ(cb.finish, FinishReason::cancelled);
  EXPECT_EQ(cb.usage.completion_tokens, 0);
}

// ------------------------------------------------------------ time

TEST(FakeEngine, TokenIntervalIsALowerBoundOnTheSystemClock) {
  FakeEngineOptions o = options(2, 10);
  o.first_token_delay = 5ms;
  o.token_interval = 2ms;
  auto e = make_fake_engine(o);
  Recorder rec;
  const SteadyTime t0 = std::chrono::steady_clock::now();
  const Completion c = run(*e, chat("x"), rec);
  ASSERT_EQ(rec.event_times.size(), 10u);
  for (size_t k = 0; k < rec.event_times.size(); ++k) {
    EXPECT_GE(rec.event_times[k] - t0, 5ms + 2ms * static_cast<int>(k)) << "token " << k;
  }
  EXPECT_GE(c.timings.prompt_ms, 5.0);
  EXPECT_GE(c.timings.prompt_ms + c.timings.decode_ms + c.timings.queued_ms, 5.0 + 9 * 2.0);
}

TEST(FakeEngine, ScheduleFollowsAnInjectedClock) {
  ManualClock clock;
  FakeEngineOptions o = options(1, 3);
  o.first_token_delay = 5s;
  o.token_interval = 10s;
  o.clock = &clock;
  std::vector<Clock::TimePoint> stamps;  // engine thread only, read after done
  Recorder rec;
  auto e = make_fake_engine(o);
  rec.also = [&](const StreamEvent&) { stamps.push_back(clock.now()); };
  const Clock::TimePoint t0 = clock.now();
  submit_ok(*e, chat("x"), rec);
  // Drive the clock one second per millisecond until the request is done; the
  // engine must not emit a token before its time on this clock.
  int ticks = 0;
  while (rec.done.wait_for(1ms) != std::future_status::ready) {
    clock.advance(1s);
    ASSERT_LT(++ticks, 10000) << "the engine did not follow the clock";
  }
  const Completion c = rec.done.get();
  ASSERT_EQ(stamps.size(), 3u);
  for (size_t k = 0; k < stamps.size(); ++k) {
    EXPECT_GE(stamps[k] - t0, 5s + 10s * static_cast<int>(k)) << "token " << k;
  }
  EXPECT_GE(c.timings.prompt_ms, 5000.0);
  EXPECT_GE(clock.now() - t0, 25s);
}

// ------------------------------------------------------------ options and spec

TEST(FakeEngineSpec, ParsesTheDocumentedExample) {
  auto o =
      parse_fake_engine_spec("name=fake,tokens=16,slots=64,token-interval-us=0,first-token-us=0");
  ASSERT_TRUE(o.ok()) << o.error().to_string();
  EXPECT_EQ(o->name, "fake");
  EXPECT_EQ(o->tokens, 16);
  EXPECT_EQ(o->slots, 64);
  EXPECT_EQ(o->token_interval, 0us);
  EXPECT_EQ(o->first_token_delay, 0us);
}

TEST(FakeEngineSpec, ParsesEveryKey) {
  auto o = parse_fake_engine_spec(
      "name=m1,slots=2,ctx-per-slot=128,max-queue=3,tokens=7,token-interval-us=1500,"
      "first-token-us=20,token-text= hi,fail-after-tokens=3");
  ASSERT_TRUE(o.ok()) << o.error().to_string();
  EXPECT_EQ(o->name, "m1");
  EXPECT_EQ(o->slots, 2);
  EXPECT_EQ(o->ctx_per_slot, 128);
  EXPECT_EQ(o->max_queue, 3);
  EXPECT_EQ(o->tokens, 7);
  EXPECT_EQ(o->token_interval, 1500us);
  EXPECT_EQ(o->first_token_delay, 20us);
  EXPECT_EQ(o->token_text, " hi");  // values are taken verbatim
  ASSERT_TRUE(o->fail_after_tokens.has_value());
  EXPECT_EQ(*o->fail_after_tokens, 3);
}

TEST(FakeEngineSpec, EmptySpecGivesDefaults) {
  auto o = parse_fake_engine_spec("");
  ASSERT_TRUE(o.ok());
  const FakeEngineOptions d;
  EXPECT_EQ(o->name, d.name);
  EXPECT_EQ(o->slots, d.slots);
  EXPECT_EQ(o->ctx_per_slot, d.ctx_per_slot);
  EXPECT_EQ(o->max_queue, d.max_queue);
  EXPECT_EQ(o->tokens, d.tokens);
  EXPECT_EQ(o->token_text, d.token_text);
  EXPECT_FALSE(o->fail_after_tokens.has_value());
  EXPECT_EQ(o->clock, nullptr);
}

void expect_spec_error(std::string_view spec, const std::string& mention) {
  auto o = parse_fake_engine_spec(spec);
  ASSERT_FALSE(o.ok()) << spec;
  EXPECT_EQ(o.error().code, Errc::invalid_argument);
  EXPECT_NE(o.error().message.find(mention), std::string::npos)
      << spec << ": " << o.error().message;
}

TEST(FakeEngineSpec, RejectsBadSpecs) {
  expect_spec_error("bogus=1", "'bogus'");
  expect_spec_error("tokens=16,speed=9", "'speed'");
  expect_spec_error("slots=0", "slots");
  expect_spec_error("slots=70000", "slots");
  expect_spec_error("slots=abc", "slots");
  expect_spec_error("slots=4x", "slots");
  expect_spec_error("slots=", "slots");
  expect_spec_error("slots=99999999999999999999999", "slots");
  expect_spec_error("tokens=-1", "tokens");
  expect_spec_error("ctx-per-slot=1", "ctx-per-slot");
  expect_spec_error("token-interval-us=-5", "token-interval-us");
  expect_spec_error("fail-after-tokens=-1", "fail-after-tokens");
  expect_spec_error("token-text=", "token-text");
  expect_spec_error("name=", "name");
  expect_spec_error("tokens", "key=value");
  expect_spec_error("tokens=1,", "key=value");
  expect_spec_error(",tokens=1", "key=value");
  expect_spec_error("tokens=1,tokens=2", "twice");
}

TEST(FakeEngineOptions, ValidationAndConstruction) {
  EXPECT_TRUE(validate_fake_engine_options(FakeEngineOptions{}).ok());
  FakeEngineOptions o;
  o.slots = 0;
  auto st = validate_fake_engine_options(o);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("slots"), std::string::npos);
  EXPECT_THROW(make_fake_engine(o), std::invalid_argument);
  o = FakeEngineOptions{};
  o.token_text = "\xff";
  EXPECT_FALSE(validate_fake_engine_options(o).ok());
  o = FakeEngineOptions{};
  o.token_interval = -1us;
  EXPECT_FALSE(validate_fake_engine_options(o).ok());
}

}  // namespace
}  // namespace agora::engine

namespace agora::engine {
namespace {

GenerationRequest with_tools(std::vector<std::string> names) {
  GenerationRequest r = chat("call something");
  for (auto& n : names) r.tools.push_back({std::move(n), "", "", false});
  return r;
}

TEST(FakeEngine, ScriptedToolCallsStreamAsFragmentsAndFinishWithToolCalls) {
  FakeEngineOptions o = options(2, 16);
  o.tool_calls = 2;
  auto e = make_fake_engine(o);
  const auto caps = e->chat_capabilities();
  EXPECT_TRUE(caps.tools);
  EXPECT_TRUE(caps.parallel_tool_calls);
  EXPECT_FALSE(caps.grammar);
  Recorder rec;
  const Completion c = run(*e, with_tools({"a", "b"}), rec);
  EXPECT_EQ(c.finish, FinishReason::tool_calls);
  ASSERT_EQ(c.tool_calls.size(), 2u);
  EXPECT_EQ(c.tool_calls[0].name, "a");
  EXPECT_EQ(c.tool_calls[1].name, "b");
  EXPECT_EQ(c.tool_calls[0].arguments, "{\"n\":0}");
  EXPECT_EQ(c.tool_calls[1].arguments, "{\"n\":1}");
  EXPECT_NE(c.tool_calls[0].id, c.tool_calls[1].id);
  ASSERT_EQ(rec.events.size(), 6u);
  EXPECT_EQ(rec.events[0].tool_calls.at(0).id, c.tool_calls[0].id);
  EXPECT_EQ(rec.events[0].tool_calls.at(0).name, "a");
  EXPECT_EQ(rec.events[3].tool_calls.at(0).index, 1);
  EXPECT_EQ(c.text, "");
  EXPECT_EQ(c.usage.completion_tokens, 6);
}

TEST(FakeEngine, ToolCallsFollowToolChoiceAndParallelism) {
  FakeEngineOptions o = options(2, 4);
  o.tool_calls = 3;
  auto e = make_fake_engine(o);
  GenerationRequest one = with_tools({"a", "b"});
  one.parallel_tool_calls = false;
  one.tool_choice = {ToolChoiceMode::named, "b"};
  Recorder r1;
  const Completion c1 = run(*e, one, r1);
  ASSERT_EQ(c1.tool_calls.size(), 1u);
  EXPECT_EQ(c1.tool_calls[0].name, "b");
  GenerationRequest none = with_tools({"a"});
  none.tool_choice.mode = ToolChoiceMode::none;
  Recorder r2;
  EXPECT_EQ(run(*e, none, r2).finish, FinishReason::stop);  // text, as without tools
  GenerationRequest cut = with_tools({"a"});
  cut.max_tokens = 4;
  Recorder r3;
  const Completion c3 = run(*e, cut, r3);
  EXPECT_EQ(c3.finish, FinishReason::length);
  EXPECT_EQ(c3.tool_calls.size(), 2u);  // the second call was begun
  // Without the option the fake announces no tools.
  EXPECT_FALSE(make_fake_engine(options())->chat_capabilities().tools);
  EXPECT_TRUE(parse_fake_engine_spec("tool-calls=2").ok());
  EXPECT_FALSE(parse_fake_engine_spec("tool-calls=129").ok());
}

}  // namespace
}  // namespace agora::engine
