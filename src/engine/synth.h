// Model synthesis: writes a real llama-architecture GGUF with random weights
// and the real Llama-3 tokenizer and chat template, so tests and benchmarks
// need no downloaded weights. Deterministic: same preset, quantisation and
// seed give a byte-identical file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "common/result.h"

namespace agora::engine {

struct ModelShape {
  int32_t n_layer = 0;
  int32_t n_embd = 0;
  int32_t n_head = 0;
  int32_t n_head_kv = 0;
  int32_t n_ff = 0;
  int32_t n_ctx_train = 0;
  float rope_freq_base = 500000.0f;
  float rms_eps = 1e-5f;
};

enum class Quant { f16, q8_0, q4_k_m };

struct Preset {
  std::string name;
  ModelShape shape;
  Quant default_quant;
};

// "tiny" (a few MB, loads in milliseconds; for tests) or "bench-1b" (the
// exact shape of Llama-3.2-1B; for speed measurements).
std::optional<Preset> find_preset(std::string_view name);
std::optional<Quant> parse_quant(std::string_view name);
const char* quant_name(Quant q);

struct SynthProgress {
  const char* stage;  // "generate" or "quantize"
  uint64_t done;
  uint64_t total;
};

struct SynthOptions {
  std::string preset = "tiny";
  std::filesystem::path out;
  std::optional<Quant> quant;  // default: the preset's
  uint64_t seed = 1;
  std::filesystem::path vocab;          // default: default_vocab_path()
  std::filesystem::path chat_template;  // default: default_chat_template_path()
  int32_t threads = 0;                  // 0 = all hardware threads
  std::function<void(const SynthProgress&)> progress;
};

struct SynthReport {
  std::filesystem::path path;
  uint64_t bytes = 0;
  uint64_t parameters = 0;
  double seconds = 0;
};

// Errors: invalid_argument (preset, quant, output path), not_found (vocab or
// template), corrupt (vocab is not the Llama-3 BPE vocab), io_error.
Result<SynthReport> synthesize_model(const SynthOptions& options);

// llama.cpp's models/ggml-vocab-llama-bpe.gguf and its Llama-3.2 chat template
// from the pinned source tree; $AGORA_VOCAB and $AGORA_CHAT_TEMPLATE override.
std::filesystem::path default_vocab_path();
std::filesystem::path default_chat_template_path();

}  // namespace agora::engine
