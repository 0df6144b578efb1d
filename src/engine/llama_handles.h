// RAII owners for llama.cpp / ggml C handles.
#pragma once

#include <gguf.h>
#include <llama.h>

#include <memory>

namespace agora::engine {

struct ModelDeleter {
  void operator()(llama_model* m) const { llama_model_free(m); }
};
struct ContextDeleter {
  void operator()(llama_context* c) const { llama_free(c); }
};
struct SamplerDeleter {
  void operator()(llama_sampler* s) const { llama_sampler_free(s); }
};
struct GgufDeleter {
  void operator()(gguf_context* g) const { gguf_free(g); }
};
struct GgmlContextDeleter {
  void operator()(ggml_context* c) const { ggml_free(c); }
};

using ModelPtr = std::unique_ptr<llama_model, ModelDeleter>;
using ContextPtr = std::unique_ptr<llama_context, ContextDeleter>;
using SamplerPtr = std::unique_ptr<llama_sampler, SamplerDeleter>;
using GgufPtr = std::unique_ptr<gguf_context, GgufDeleter>;
using GgmlContextPtr = std::unique_ptr<ggml_context, GgmlContextDeleter>;

}  // namespace agora::engine
