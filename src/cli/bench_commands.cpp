// `agora bench engine`: prompt-processing and decode throughput of the engine
// at several concurrency levels, on any GGUF.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "cli/commands.h"
#include "engine/llama_engine.h"

namespace agora::cli {
namespace {

struct BenchArgs {
  std::string model;
  std::vector<int32_t> streams{1, 8};
  int32_t prompt_tokens = 128;
  int32_t max_tokens = 128;
  int32_t threads = 0;
  int32_t repeat = 1;
};

struct Row {
  int32_t streams = 0;
  double pp_tps = 0;         // prompt tokens / s (all streams' prompts together)
  double decode_tps = 0;     // generated tokens / s, all streams together
  double per_stream_tps = 0;
  double ttft_ms = 0;        // mean time to first token
};

// A prompt of roughly `n` tokens that differs per stream (no prefix sharing).
std::string make_prompt(int32_t n, int32_t stream, int32_t round) {
  std::string p = fmt::format("Stream {} round {}:", stream, round);
  static const char* words[] = {"market", "provider", "gateway", "token",  "stream", "model",
                                "credit", "latency",  "verify",  "tensor", "cache",  "slot"};
  for (int32_t i = 0; i < n - 8; ++i) {
    p += ' ';
    p += words[static_cast<size_t>(i * 7 + stream * 3 + round) % 12];
  }
  return p;
}

Row run_level(engine::Engine& eng, const BenchArgs& a, int32_t streams, int32_t round) {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<engine::Completion> done;
  for (int32_t s = 0; s < streams; ++s) {
    engine::GenerationRequest r;
    r.prompt = make_prompt(a.prompt_tokens, s, round);
    r.max_tokens = a.max_tokens;
    r.sampling.temperature = 0;
    r.ignore_eos = true;
    engine::GenerationCallbacks cb;
    cb.on_done = [&](engine::Completion c) {
      std::lock_guard lock(mu);
      done.push_back(std::move(c));
      cv.notify_all();
    };
    auto id = eng.submit(std::move(r), std::move(cb));
    if (!id) fail(id.error().to_string());
  }
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return static_cast<int32_t>(done.size()) == streams; });
  Row row;
  row.streams = streams;
  double prompt_tokens = 0, gen_tokens = 0, max_prefill = 0, max_decode = 0, ttft = 0;
  for (const auto& c : done) {
    if (c.finish != engine::FinishReason::length) fail("a benchmark request ended early: " +
                                                       std::string(engine::finish_reason_name(c.finish)));
    prompt_tokens += c.usage.prompt_tokens;
    gen_tokens += c.usage.completion_tokens - 1;  // the first token comes with the prompt
    max_prefill = std::max(max_prefill, c.timings.queued_ms + c.timings.prompt_ms);
    max_decode = std::max(max_decode, c.timings.decode_ms);
    ttft += c.timings.queued_ms + c.timings.prompt_ms;
  }
  row.pp_tps = prompt_tokens * 1000.0 / max_prefill;
  row.decode_tps = gen_tokens * 1000.0 / max_decode;
  row.per_stream_tps = row.decode_tps / streams;
  row.ttft_ms = ttft / streams;
  return row;
}

void run_bench_engine(const BenchArgs& a) {
  const int32_t max_streams = *std::max_element(a.streams.begin(), a.streams.end());
  engine::EngineOptions eo;
  eo.model_path = a.model;
  eo.slots = max_streams;
  eo.threads = a.threads;
  eo.ctx_per_slot = a.prompt_tokens + a.max_tokens + 64;
  auto eng = engine::open_llama_engine(eo);
  if (!eng) fail(eng.error().to_string());
  const auto& info = (*eng)->model_info();
  const unsigned threads = a.threads > 0 ? static_cast<unsigned>(a.threads) : std::thread::hardware_concurrency();
  std::printf("model: %s (%s, %s), threads: %u, prompt: ~%d tokens, generate: %d tokens\n\n", info.name.c_str(),
              info.description.c_str(), info.quantization.c_str(), threads, a.prompt_tokens, a.max_tokens);
  // Warm-up: page the weights in and size the compute buffers.
  run_level(**eng, BenchArgs{a.model, {1}, 16, 4, a.threads, 1}, 1, -1);
  std::printf("| streams | prompt tok/s | decode tok/s (total) | decode tok/s per stream | TTFT ms |\n");
  std::printf("|--------:|-------------:|---------------------:|------------------------:|--------:|\n");
  for (int32_t s : a.streams) {
    Row best;
    for (int32_t r = 0; r < a.repeat; ++r) {
      Row row = run_level(**eng, a, s, r);
      if (row.decode_tps > best.decode_tps) best = row;
    }
    std::printf("| %7d | %12.1f | %20.1f | %23.1f | %7.1f |\n", best.streams, best.pp_tps, best.decode_tps,
                best.per_stream_tps, best.ttft_ms);
    std::fflush(stdout);
  }
}

}  // namespace

void add_bench_commands(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Benchmarks");
  bench->require_subcommand(1);
  auto a = std::make_shared<BenchArgs>();
  auto* eng = bench->add_subcommand(
      "engine", "Engine throughput: prompt processing, decode tok/s and time to first token at each concurrency");
  eng->add_option("--model", a->model, "GGUF model file")->required();
  eng->add_option("--streams", a->streams, "Concurrency levels, e.g. 1,4,8")->delimiter(',')->capture_default_str();
  eng->add_option("--prompt-tokens", a->prompt_tokens, "Approximate prompt length")
      ->check(CLI::Range(16, 8192))
      ->capture_default_str();
  eng->add_option("--max-tokens", a->max_tokens, "Tokens generated per stream")
      ->check(CLI::Range(2, 8192))
      ->capture_default_str();
  eng->add_option("--threads", a->threads, "Threads (0 = all cores)")->capture_default_str();
  eng->add_option("--repeat", a->repeat, "Runs per level; the best is reported")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  eng->callback([a] { run_bench_engine(*a); });
  add_bench_grammar_command(*bench);
}

}  // namespace agora::cli
