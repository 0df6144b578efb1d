// `agora model synth | info | run`.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "cli/progress.h"
#include "engine/llama_engine.h"
#include "engine/synth.h"

namespace agora::cli {
namespace {

struct SynthArgs {
  std::string preset = "tiny";
  std::string out;
  std::string quant;
  uint64_t seed = 1;
  std::string vocab;
  std::string chat_template;
  int32_t threads = 0;
};

struct InfoArgs {
  std::string file;
  bool json = false;
};

struct RunArgs {
  std::string file;
  std::string prompt;
  std::string system;
  int32_t max_tokens = 128;
  std::optional<uint32_t> seed;
  float temperature = 0.8f;
  int32_t threads = 0;
  bool raw = false;
};

void run_synth(const SynthArgs& a) {
  engine::SynthOptions o;
  o.preset = a.preset;
  o.out = a.out;
  if (!a.quant.empty()) {
    o.quant = engine::parse_quant(a.quant);
    if (!o.quant) fail("unknown --quant '" + a.quant + "' (f16, q8_0, q4_k_m)");
  }
  o.seed = a.seed;
  o.vocab = a.vocab;
  o.chat_template = a.chat_template;
  o.threads = a.threads;
  Progress progress("synth " + a.preset);
  o.progress = [&](const engine::SynthProgress& p) { progress.update(p.stage, p.done, p.total); };
  auto r = engine::synthesize_model(o);
  progress.finish();
  if (!r) fail(r.error().to_string());
  std::fprintf(stderr, "wrote %s: %s parameters, %s, %.1f s\n", r->path.c_str(), human_count(r->parameters).c_str(),
               human_bytes(r->bytes).c_str(), r->seconds);
  std::printf("%s\n", r->path.c_str());
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += fmt::format("\\u{:04x}", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

void run_info(const InfoArgs& a) {
  Progress progress("sha256");
  auto info = engine::read_model_info(a.file, [&](uint64_t d, uint64_t t) { progress.update("hashing", d, t); });
  progress.finish();
  if (!info) fail(info.error().to_string());
  const auto& m = *info;
  if (a.json) {
    std::printf(
        "{\"path\":\"%s\",\"name\":\"%s\",\"architecture\":\"%s\",\"description\":\"%s\",\"quantization\":\"%s\","
        "\"parameters\":%llu,\"file_bytes\":%llu,\"context_length\":%d,\"n_layer\":%d,\"n_embd\":%d,"
        "\"n_head\":%d,\"n_head_kv\":%d,\"n_ff\":%d,\"n_vocab\":%d,\"tied_embeddings\":%s,"
        "\"weight_bytes_per_token\":%llu,\"chat_template\":\"%s\",\"sha256\":\"%s\"}\n",
        json_escape(m.path).c_str(), json_escape(m.name).c_str(), json_escape(m.architecture).c_str(),
        json_escape(m.description).c_str(), m.quantization.c_str(), static_cast<unsigned long long>(m.parameters),
        static_cast<unsigned long long>(m.file_bytes), m.context_length, m.n_layer, m.n_embd, m.n_head,
        m.n_head_kv, m.n_ff, m.n_vocab, m.tied_embeddings ? "true" : "false",
        static_cast<unsigned long long>(m.weight_bytes_per_token), json_escape(m.chat_template).c_str(),
        m.sha256.c_str());
    return;
  }
  std::printf("path            %s\n", m.path.c_str());
  std::printf("name            %s\n", m.name.c_str());
  std::printf("architecture    %s\n", m.architecture.c_str());
  std::printf("description     %s\n", m.description.c_str());
  std::printf("quantization    %s\n", m.quantization.c_str());
  std::printf("parameters      %s (%llu)\n", human_count(m.parameters).c_str(),
              static_cast<unsigned long long>(m.parameters));
  std::printf("file size       %s\n", human_bytes(m.file_bytes).c_str());
  std::printf("context length  %d\n", m.context_length);
  std::printf("layers          %d\n", m.n_layer);
  std::printf("embedding       %d\n", m.n_embd);
  std::printf("heads           %d (kv %d)\n", m.n_head, m.n_head_kv);
  std::printf("feed-forward    %d\n", m.n_ff);
  std::printf("vocabulary      %d\n", m.n_vocab);
  std::printf("tied embeddings %s\n", m.tied_embeddings ? "yes" : "no");
  std::printf("read per token  %s (weights one decode step reads)\n", human_bytes(m.weight_bytes_per_token).c_str());
  const auto nl = m.chat_template.find('\n');
  std::printf("chat template   %s\n",
              m.chat_template.empty() ? "(none)"
                                      : fmt::format("{} bytes, starts \"{}\"", m.chat_template.size(),
                                                    json_escape(m.chat_template.substr(0, std::min<size_t>(nl, 40))))
                                            .c_str());
  std::printf("sha256          %s\n", m.sha256.c_str());
}

void run_model(const RunArgs& a) {
  engine::EngineOptions eo;
  eo.model_path = a.file;
  eo.slots = 1;
  eo.threads = a.threads;
  Progress progress("sha256");
  eo.hash_progress = [&](uint64_t d, uint64_t t) { progress.update("hashing", d, t); };
  auto eng = engine::open_llama_engine(eo);
  progress.finish();
  if (!eng) fail(eng.error().to_string());
  engine::GenerationRequest req;
  if (a.raw) {
    req.prompt = a.prompt;
  } else {
    if (!a.system.empty()) req.messages.push_back({"system", a.system});
    req.messages.push_back({"user", a.prompt});
  }
  req.max_tokens = a.max_tokens;
  req.sampling.temperature = a.temperature;
  req.sampling.seed = a.seed;
  auto done = engine::generate(**eng, std::move(req), [](const engine::StreamEvent& ev) {
    std::fwrite(ev.text.data(), 1, ev.text.size(), stdout);
    std::fflush(stdout);
  });
  std::printf("\n");
  if (!done) fail(done.error().to_string());
  const auto& c = *done;
  const double tps = c.timings.decode_ms > 0 ? (c.usage.completion_tokens - 1) * 1000.0 / c.timings.decode_ms : 0;
  std::fprintf(stderr, "[finish=%s prompt_tokens=%d completion_tokens=%d ttft=%.1f ms decode=%.1f tok/s]\n",
               engine::finish_reason_name(c.finish), c.usage.prompt_tokens, c.usage.completion_tokens,
               c.timings.queued_ms + c.timings.prompt_ms, tps);
}

}  // namespace

void add_model_commands(CLI::App& app) {
  auto* model = app.add_subcommand("model", "Make, inspect and try GGUF models");
  model->require_subcommand(1);

  auto sa = std::make_shared<SynthArgs>();
  auto* synth = model->add_subcommand(
      "synth",
      "Synthesise a llama-architecture GGUF with random weights and the real Llama-3 tokenizer and chat "
      "template (for tests and benchmarks; no download). Same arguments give a byte-identical file. Prints "
      "the output path on stdout.");
  synth->add_option("--preset", sa->preset, "tiny (a few MB, for tests) or bench-1b (Llama-3.2-1B shape)")
      ->check(CLI::IsMember({"tiny", "bench-1b"}))
      ->capture_default_str();
  synth->add_option("--out", sa->out, "Output GGUF path")->required();
  synth->add_option("--quant", sa->quant, "f16, q8_0 or q4_k_m (default: q8_0 for tiny, q4_k_m for bench-1b)")
      ->check(CLI::IsMember({"f16", "q8_0", "q4_k_m"}));
  synth->add_option("--seed", sa->seed, "Seed for the random weights")->capture_default_str();
  synth->add_option("--vocab", sa->vocab,
                    "Tokenizer GGUF (default: $AGORA_VOCAB or llama.cpp's models/ggml-vocab-llama-bpe.gguf)");
  synth->add_option("--chat-template", sa->chat_template,
                    "Chat template file (default: $AGORA_CHAT_TEMPLATE or llama.cpp's Llama-3.2 template)");
  synth->add_option("--threads", sa->threads, "Worker threads (0 = all cores)")->capture_default_str();
  synth->callback([sa] { run_synth(*sa); });

  auto ia = std::make_shared<InfoArgs>();
  auto* info = model->add_subcommand("info", "Show a GGUF model's metadata and SHA-256");
  info->add_option("file", ia->file, "GGUF model file")->required();
  info->add_flag("--json", ia->json, "Print one JSON object");
  info->callback([ia] { run_info(*ia); });

  auto ra = std::make_shared<RunArgs>();
  auto* run = model->add_subcommand("run", "Stream a completion from a model to the terminal (to check a model)");
  run->add_option("file", ra->file, "GGUF model file")->required();
  run->add_option("--prompt", ra->prompt, "The user message")->required();
  run->add_option("--system", ra->system, "An optional system message");
  run->add_option("--max-tokens", ra->max_tokens, "Most tokens to generate")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  run->add_option("--seed", ra->seed, "Sampling seed (default: random)");
  run->add_option("--temperature", ra->temperature, "Sampling temperature, 0 = greedy")
      ->check(CLI::Range(0.0, 2.0))
      ->capture_default_str();
  run->add_option("--threads", ra->threads, "Threads (0 = all cores)")->capture_default_str();
  run->add_flag("--raw", ra->raw, "Send the prompt as is, without the chat template");
  run->callback([ra] { run_model(*ra); });
}

}  // namespace agora::cli
