// `agora bench grammar`: what function calling and structured outputs cost
// on the node — the set-up of a request (render with the model's template,
// grammar compile; submit() on the caller's thread, first request and a
// repeat that hits the node's grammar cache) and the decode time per token
// with the grammar sampler in the chain — against plain chat, on any GGUF.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <future>
#include <thread>

#include "cli/commands.h"
#include "engine/llama_engine.h"

namespace agora::cli {
namespace {

struct GrammarArgs {
  std::string model;
  int32_t max_tokens = 64;
  int32_t threads = 0;
  int32_t repeat = 3;
};

constexpr const char* kPersonSchema =
    R"({"type":"object","properties":{"name":{"type":"string","maxLength":24},"age":{"type":"integer","minimum":0,)"
    R"("maximum":150},"tags":{"type":"array","items":{"enum":["a","b","c"]},"maxItems":4}},"required":["name","age","tags"],)"
    R"("additionalProperties":false})";
constexpr const char* kWeatherSchema =
    R"({"type":"object","properties":{"city":{"type":"string","maxLength":32},"unit":{"enum":["c","f"]}},)"
    R"("required":["city","unit"],"additionalProperties":false})";

struct Case {
  const char* name;
  engine::GenerationRequest request;
};

std::vector<Case> cases(int32_t max_tokens) {
  auto base = [&] {
    engine::GenerationRequest r;
    r.messages = {{"user", "Describe a person who checks the weather every morning."}};
    r.max_tokens = max_tokens;
    r.sampling.temperature = 1.0f;
    r.sampling.seed = 7;
    return r;
  };
  std::vector<Case> out;
  out.push_back({"plain chat", base()});
  auto obj = base();
  obj.response_format.type = engine::ResponseFormat::Type::json_object;
  out.push_back({"json_object", obj});
  auto schema = base();
  schema.response_format = {engine::ResponseFormat::Type::json_schema, "person", kPersonSchema, true};
  out.push_back({"json_schema", schema});
  auto tools = base();
  tools.tools = {{"get_weather", "Weather in a city", kWeatherSchema, true}};
  tools.tool_choice.mode = engine::ToolChoiceMode::required;
  out.push_back({"tools, required", tools});
  return out;
}

struct Measure {
  double submit_ms = 0;     // submit(): render, tokenise, sampler (grammar) set-up
  double ms_per_token = 0;  // decode time per generated token after the first
  int32_t tokens = 0;
};

Measure run_one(engine::Engine& eng, const engine::GenerationRequest& r) {
  std::promise<engine::Completion> done;
  engine::GenerationCallbacks cb;
  cb.on_done = [&](engine::Completion c) { done.set_value(std::move(c)); };
  const auto t0 = std::chrono::steady_clock::now();
  auto id = eng.submit(r, std::move(cb));
  const auto t1 = std::chrono::steady_clock::now();
  if (!id) fail(id.error().to_string());
  const engine::Completion c = done.get_future().get();
  if (c.finish == engine::FinishReason::error) fail(c.error ? c.error->to_string() : "generation failed");
  Measure m;
  m.submit_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
  m.tokens = c.usage.completion_tokens;
  m.ms_per_token = c.usage.completion_tokens > 1 ? c.timings.decode_ms / (c.usage.completion_tokens - 1) : 0;
  return m;
}

void run_bench_grammar(const GrammarArgs& a) {
  engine::EngineOptions eo;
  eo.model_path = a.model;
  eo.slots = 1;
  eo.threads = a.threads;
  eo.ctx_per_slot = 1024 + a.max_tokens;
  auto eng = engine::open_llama_engine(eo);
  if (!eng) fail(eng.error().to_string());
  const auto& info = (*eng)->model_info();
  std::printf("model: %s (%s, %s), one stream, up to %d tokens, median of %d runs\n\n", info.name.c_str(),
              info.description.c_str(), info.quantization.c_str(), a.max_tokens, a.repeat);
  run_one(**eng, cases(4).front().request);  // warm-up: weights paged in, buffers sized
  std::printf("| request | set-up ms (first) | set-up ms (repeat) | decode ms/token | tokens |\n");
  std::printf("|---|--:|--:|--:|--:|\n");
  for (const auto& c : cases(a.max_tokens)) {
    const Measure first = run_one(**eng, c.request);
    std::vector<Measure> rest;
    for (int32_t i = 0; i < a.repeat; ++i) rest.push_back(run_one(**eng, c.request));
    auto median = [&](auto field) {
      std::vector<double> v;
      for (const auto& m : rest) v.push_back(field(m));
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
    std::printf("| %s | %.2f | %.2f | %.3f | %d |\n", c.name, first.submit_ms,
                median([](const Measure& m) { return m.submit_ms; }),
                median([](const Measure& m) { return m.ms_per_token; }), rest.back().tokens);
    std::fflush(stdout);
  }
}

}  // namespace

void add_bench_grammar_command(CLI::App& bench) {
  auto a = std::make_shared<GrammarArgs>();
  auto* g = bench.add_subcommand(
      "grammar", "What tools and structured outputs cost: request set-up (render, grammar compile) and decode time "
                 "per token with the grammar, against plain chat");
  g->add_option("--model", a->model, "GGUF model file")->required();
  g->add_option("--max-tokens", a->max_tokens, "Tokens generated per request at most")
      ->check(CLI::Range(2, 4096))
      ->capture_default_str();
  g->add_option("--threads", a->threads, "Threads (0 = all cores)")->capture_default_str();
  g->add_option("--repeat", a->repeat, "Repeats per request (the median is reported)")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  g->callback([a] { run_bench_grammar(*a); });
}

}  // namespace agora::cli
