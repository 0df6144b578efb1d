// LlamaEngine: the Engine on llama.cpp. One model, N slots (one KV-cache
// sequence each), decoded together by one thread in a continuous-batching
// loop: each step carries one token for every generating slot plus chunks of
// new prompts, and new requests join between steps. A slot keeps its KV cache
// after a request, so a new prompt sharing a prefix with it reuses that prefix.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <functional>
#include <memory>

#include "common/clock.h"
#include "engine/engine.h"

namespace agora::engine {

struct EngineOptions {
  std::filesystem::path model_path;
  int32_t slots = 4;           // concurrent requests decoded together
  int32_t ctx_per_slot = 0;    // tokens of context per slot; 0 = min(trained, 4096)
  int32_t threads = 0;         // 0 = all hardware threads
  int32_t batch = 512;         // most prompt tokens processed in one step
  int32_t max_queue = 1024;    // requests waiting for a slot before submit() says unavailable
  Clock* clock = nullptr;      // nullptr = the system clock
  // The date chat templates see (Llama 3.x templates print today's date);
  // unset: the current UTC date.
  std::optional<std::chrono::system_clock::time_point> template_date;
  // Reports SHA-256 progress while a model is hashed for the first time.
  std::function<void(uint64_t done, uint64_t total)> hash_progress;
};

// Loads the model (memory-mapped) and starts the engine thread.
// Errors: not_found, corrupt (not a loadable GGUF), invalid_argument (options).
Result<std::unique_ptr<Engine>> open_llama_engine(const EngineOptions& options);

// Reads a model's metadata (loading it memory-mapped, no context), for
// `agora model info`. Errors as open_llama_engine.
Result<ModelInfo> read_model_info(const std::filesystem::path& path,
                                  const std::function<void(uint64_t, uint64_t)>& hash_progress = {});

// Sends llama.cpp's and ggml's own log lines to our logger at debug level.
// Idempotent; open_llama_engine() calls it.
void route_llama_logs();

}  // namespace agora::engine
