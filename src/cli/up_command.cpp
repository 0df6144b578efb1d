// `agora up`: the main job. For now (before the gateway exists) it prepares
// the embedded default model, synthesising it when missing, and streams a
// chat completion from it through the engine: the same path a provider node
// will serve.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>

#include "cli/commands.h"
#include "cli/progress.h"
#include "engine/llama_engine.h"
#include "engine/synth.h"

namespace agora::cli {
namespace {

struct UpArgs {
  std::string models_dir = "models";
  std::string prompt = "Say hello to the Agora marketplace.";
  int32_t max_tokens = 48;
  int32_t threads = 0;
  uint32_t seed = 7;
};

void run_up(const UpArgs& a) {
  const std::filesystem::path model = std::filesystem::path(a.models_dir) / "tiny.gguf";
  if (!std::filesystem::exists(model)) {
    std::fprintf(stderr, "agora up: synthesising the default model %s\n", model.c_str());
    engine::SynthOptions o;
    o.preset = "tiny";
    o.out = model;
    Progress progress("synth tiny");
    o.progress = [&](const engine::SynthProgress& p) { progress.update(p.stage, p.done, p.total); };
    auto r = engine::synthesize_model(o);
    progress.finish();
    if (!r) fail(r.error().to_string());
  }
  engine::EngineOptions eo;
  eo.model_path = model;
  eo.slots = 1;
  eo.threads = a.threads;
  auto eng = engine::open_llama_engine(eo);
  if (!eng) fail(eng.error().to_string());
  const auto& info = (*eng)->model_info();
  std::fprintf(stderr, "agora up: model %s (%s, %s, sha256 %.16s…)\n", info.name.c_str(), info.description.c_str(),
               info.quantization.c_str(), info.sha256.c_str());
  std::fprintf(stderr, "agora up: user> %s\nagora up: streaming (random weights: expect gibberish)\n\n",
               a.prompt.c_str());
  engine::GenerationRequest req;
  req.messages.push_back({"user", a.prompt});
  req.max_tokens = a.max_tokens;
  req.sampling.seed = a.seed;
  req.sampling.temperature = 0.8f;
  auto done = engine::generate(**eng, std::move(req), [](const engine::StreamEvent& ev) {
    std::fwrite(ev.text.data(), 1, ev.text.size(), stdout);
    std::fflush(stdout);
  });
  std::printf("\n");
  if (!done) fail(done.error().to_string());
  const double tps =
      done->timings.decode_ms > 0 ? (done->usage.completion_tokens - 1) * 1000.0 / done->timings.decode_ms : 0;
  std::fprintf(stderr, "\nagora up: finish=%s prompt_tokens=%d completion_tokens=%d decode=%.0f tok/s\n",
               engine::finish_reason_name(done->finish), done->usage.prompt_tokens, done->usage.completion_tokens,
               tps);
}

}  // namespace

void add_up_command(CLI::App& app) {
  auto args = std::make_shared<UpArgs>();
  auto* up = app.add_subcommand(
      "up", "Start a local marketplace on the embedded default model (today: synthesise the model if needed and "
            "stream a completion from it through the engine)");
  up->add_option("--models-dir", args->models_dir, "Where the default model lives")->capture_default_str();
  up->add_option("--prompt", args->prompt, "The user message")->capture_default_str();
  up->add_option("--max-tokens", args->max_tokens, "Tokens to stream")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  up->add_option("--seed", args->seed, "Sampling seed")->capture_default_str();
  up->add_option("--threads", args->threads, "Threads (0 = all cores)")->capture_default_str();
  up->callback([args] { run_up(*args); });
}

}  // namespace agora::cli
