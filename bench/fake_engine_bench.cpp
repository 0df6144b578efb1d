// FakeEngine overhead: what the engine seam itself costs per request (queue,
// engine thread, text stream, callbacks) with no model work, i.e. the ceiling
// a gateway benchmark on `--engine fake` can reach per node.
#include <benchmark/benchmark.h>

#include <condition_variable>
#include <future>
#include <mutex>

#include "engine/fake_engine.h"

namespace {

using agora::engine::Completion;
using agora::engine::GenerationCallbacks;
using agora::engine::GenerationRequest;

GenerationRequest request() {
  GenerationRequest r;
  r.messages = {{"user", "Benchmark the fake engine."}};
  return r;
}

// One request at a time: submit -> on_done latency for a 16-token request.
void BM_FakeEngineSubmitToDone(benchmark::State& state) {
  agora::engine::FakeEngineOptions o;
  o.tokens = 16;
  auto engine = agora::engine::make_fake_engine(o);
  for (auto _ : state) {
    std::promise<Completion> done;
    auto fut = done.get_future();
    GenerationCallbacks cb;
    cb.on_event = [](const agora::engine::StreamEvent& ev) {
      benchmark::DoNotOptimize(ev.text.data());
    };
    cb.on_done = [&done](Completion c) { done.set_value(std::move(c)); };
    if (!engine->submit(request(), std::move(cb)).ok()) {
      state.SkipWithError("submit failed");
      break;
    }
    benchmark::DoNotOptimize(fut.get());
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * 16, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_FakeEngineSubmitToDone)->UseRealTime();

// `range(0)` requests in flight at once (up to the 64 slots), 16 tokens each.
void BM_FakeEngineConcurrent(benchmark::State& state) {
  const auto n = static_cast<int>(state.range(0));
  agora::engine::FakeEngineOptions o;
  o.tokens = 16;
  auto engine = agora::engine::make_fake_engine(o);
  std::mutex mu;
  std::condition_variable cv;
  for (auto _ : state) {
    int left = n;
    for (int i = 0; i < n; ++i) {
      GenerationCallbacks cb;
      cb.on_done = [&](Completion) {
        std::lock_guard lock(mu);
        if (--left == 0) cv.notify_one();
      };
      if (!engine->submit(request(), std::move(cb)).ok()) {
        state.SkipWithError("submit failed");
        return;
      }
    }
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return left == 0; });
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_FakeEngineConcurrent)->Arg(8)->Arg(64)->UseRealTime();

}  // namespace
