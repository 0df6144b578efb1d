// Router decision time with 1k, 10k and 100k registered nodes (issue 4, "Scale").
//
// A realistic mix: four models with skewed popularity, each node serving one
// or two of them with 1-8 slots, random starting loads and TTFTs, four
// regions, 2 % of nodes draining. Every iteration picks, acquires the pick and
// releases the oldest outstanding job once a window is full, so loads keep
// moving and the router's bookkeeping is part of what is measured.
//
//   BM_RouterPickAcquireRelease  mean time of one decision plus its bookkeeping
//   BM_RouterPickLatency         each pick() timed alone with steady_clock;
//                                p50 / p99 / p99.9 / max in the counters (ns)
//
// Both take (nodes, mode): mode 0 = anywhere, 1 = one allowed region,
// 2 = a retry that excludes the two nodes it already tried, 3 = attested
// only (half the requests confidential, half privacyLevel "verified"; 10 %
// of nodes have a GPU TEE verdict and 20 % a device verdict, drawn from a
// separate seed so modes 0-2 see the population they always saw).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include "gateway/router.h"

namespace {

using agora::gateway::ConnId;
using agora::gateway::Level;
using agora::gateway::NodeInfo;
using agora::gateway::NodeModel;
using agora::gateway::NoPick;
using agora::gateway::Pick;
using agora::gateway::Router;
using agora::gateway::RoutingPreferences;

const std::vector<std::string> kModels = {"llama-3.2-1b", "llama-3.1-8b", "qwen2.5-7b",
                                          "mistral-7b"};
const std::vector<double> kModelWeights = {0.5, 0.25, 0.15, 0.10};
const std::vector<std::string> kRegions = {"eu-west", "us-east", "us-west", "ap-south"};

constexpr size_t kOutstanding = 1024;  // jobs in flight before the oldest is released
constexpr size_t kRequestMix = 4096;   // pre-drawn requests, cycled

enum class Mode : int64_t { anywhere = 0, region = 1, retry = 2, attested = 3 };

struct Request {
  const std::string* model = nullptr;
  RoutingPreferences prefs;
  std::vector<ConnId> exclude;
};

struct Job {
  ConnId conn = 0;
  const std::string* model = nullptr;
};

// A router filled with `nodes` nodes and a fixed sequence of requests (seeded,
// so every run and every build sees the same population).
struct Fixture {
  Router router;
  std::vector<Request> requests;
  std::deque<Job> outstanding;
  size_t next = 0;

  Fixture(int64_t nodes, Mode mode) {
    std::mt19937_64 rng(42);
    std::discrete_distribution<size_t> model_dist(kModelWeights.begin(), kModelWeights.end());
    std::uniform_int_distribution<size_t> region_dist(0, kRegions.size() - 1);
    std::uniform_int_distribution<int32_t> slots_dist(1, 8);
    std::uniform_real_distribution<double> ttft_dist(40.0, 600.0);
    std::bernoulli_distribution two_models(0.3);
    std::bernoulli_distribution draining(0.02);
    std::bernoulli_distribution unmeasured(0.05);

    for (int64_t i = 1; i <= nodes; ++i) {
      NodeInfo n;
      n.conn = static_cast<ConnId>(i);
      n.node_id = "node-" + std::to_string(i);
      n.provider_id = "prov-" + std::to_string(i % 997);
      n.region = kRegions[region_dist(rng)];
      n.connected_ms = 1'700'000'000'000 + i;
      n.ttft_ms = unmeasured(rng) ? 0 : ttft_dist(rng);
      const size_t first = model_dist(rng);
      std::vector<size_t> served{first};
      if (two_models(rng)) {
        const size_t second = model_dist(rng);
        if (second != first) served.push_back(second);
      }
      for (size_t m : served) {
        NodeModel nm;
        nm.advert.name = kModels[m];
        nm.advert.sha256 = "sha-" + kModels[m];
        nm.advert.slots = slots_dist(rng);
        nm.advert.ctx_per_slot = 4096;
        nm.in_flight = std::uniform_int_distribution<int32_t>(0, nm.advert.slots)(rng);
        n.models.push_back(std::move(nm));
      }
      n.draining = draining(rng);
      router.add(std::move(n));
    }
    std::mt19937_64 level_rng(7);
    std::discrete_distribution<int> level_dist({0.7, 0.2, 0.1});
    for (int64_t i = 1; i <= nodes; ++i) router.set_level(static_cast<ConnId>(i), static_cast<Level>(level_dist(level_rng)));

    std::uniform_int_distribution<int64_t> node_dist(1, nodes);
    requests.resize(kRequestMix);
    for (auto& r : requests) {
      r.model = &kModels[model_dist(rng)];
      if (mode == Mode::region) r.prefs.regions = {kRegions[region_dist(rng)]};
      if (mode == Mode::retry) {
        r.exclude = {static_cast<ConnId>(node_dist(rng)), static_cast<ConnId>(node_dist(rng))};
      }
    }
    if (mode == Mode::attested) {
      std::bernoulli_distribution confidential(0.5);
      for (auto& r : requests) {
        if (confidential(level_rng)) r.prefs.confidential = true;
        else r.prefs.privacy_level = "verified";
      }
    }
  }

  // The next request of the pre-drawn sequence.
  const Request& next_request() {
    const Request& r = requests[next];
    next = (next + 1) % requests.size();
    return r;
  }

  // After a decision: acquire the pick, and release the oldest job once the
  // window is full (or when nothing could be picked, so slots free up).
  void settle(const std::variant<Pick, NoPick>& result, const std::string& model) {
    if (const auto* p = std::get_if<Pick>(&result)) {
      router.acquire(*p);
      outstanding.push_back({p->conn, &model});
    }
    if (outstanding.size() > kOutstanding ||
        (!outstanding.empty() && std::holds_alternative<NoPick>(result))) {
      router.release(outstanding.front().conn, *outstanding.front().model);
      outstanding.pop_front();
    }
  }
};

void set_labels(benchmark::State& state) {
  static const char* const kModeNames[] = {"anywhere", "region", "retry", "attested"};
  state.SetLabel(kModeNames[state.range(1)]);
}

void BM_RouterPickAcquireRelease(benchmark::State& state) {
  Fixture f(state.range(0), static_cast<Mode>(state.range(1)));
  int64_t no_picks = 0;
  for (auto _ : state) {
    const Request& r = f.next_request();
    auto result = f.router.pick(*r.model, r.prefs, r.exclude);
    benchmark::DoNotOptimize(result);
    no_picks += std::holds_alternative<NoPick>(result) ? 1 : 0;
    f.settle(result, *r.model);
  }
  set_labels(state);
  state.SetItemsProcessed(state.iterations());
  state.counters["no_pick%"] =
      100.0 * static_cast<double>(no_picks) / static_cast<double>(state.iterations());
}

double percentile(std::vector<int64_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  const auto i = static_cast<size_t>(q * static_cast<double>(sorted.size() - 1));
  return static_cast<double>(sorted[i]);
}

// Each pick() timed on its own; the acquire/release bookkeeping runs between
// the timed sections so loads still move. Percentiles in nanoseconds.
void BM_RouterPickLatency(benchmark::State& state) {
  Fixture f(state.range(0), static_cast<Mode>(state.range(1)));
  using Clock = std::chrono::steady_clock;
  std::vector<int64_t> ns;
  ns.reserve(1 << 20);
  for (auto _ : state) {
    const Request& r = f.next_request();
    const auto t0 = Clock::now();
    auto result = f.router.pick(*r.model, r.prefs, r.exclude);
    benchmark::DoNotOptimize(result);
    const auto t1 = Clock::now();
    if (ns.size() < ns.capacity())
      ns.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
    f.settle(result, *r.model);
  }
  std::sort(ns.begin(), ns.end());
  set_labels(state);
  state.counters["p50_ns"] = percentile(ns, 0.50);
  state.counters["p99_ns"] = percentile(ns, 0.99);
  state.counters["p99.9_ns"] = percentile(ns, 0.999);
  state.counters["max_ns"] = ns.empty() ? 0 : static_cast<double>(ns.back());
  state.counters["samples"] = static_cast<double>(ns.size());
}

void node_counts(benchmark::internal::Benchmark* b) {
  for (int64_t mode : {0, 1, 2, 3}) {
    for (int64_t nodes : {1'000, 10'000, 100'000}) b->Args({nodes, mode});
  }
  b->ArgNames({"nodes", "mode"});
}

BENCHMARK(BM_RouterPickAcquireRelease)->Apply(node_counts);
BENCHMARK(BM_RouterPickLatency)->Apply(node_counts);

}  // namespace

BENCHMARK_MAIN();
