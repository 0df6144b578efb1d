#include "engine/synth.h"

#include <ggml.h>
#include <gguf.h>
#include <llama.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include <unistd.h>

#include "engine/llama_engine.h"
#include "engine/llama_handles.h"

#ifndef AGORA_LLAMA_SOURCE_DIR
#define AGORA_LLAMA_SOURCE_DIR "third_party/llama.cpp"
#endif

namespace agora::engine {
namespace fs = std::filesystem;
namespace {

constexpr int32_t kLlama3Vocab = 128256;
constexpr size_t kChunk = size_t{1} << 20;  // elements per RNG stream

// splitmix64: seeds the per-chunk generators.
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// xoshiro256+: fast, good enough for weights.
struct Rng {
  uint64_t s[4];
  explicit Rng(uint64_t seed) {
    for (auto& v : s) v = splitmix64(seed);
  }
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t next() {
    const uint64_t r = s[0] + s[3];
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
  }
  // Uniform in [-1, 1).
  float uniform() { return static_cast<float>(static_cast<double>(next() >> 40) * 0x1.0p-23 - 1.0); }
};

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ull;
  return h;
}

struct TensorSpec {
  std::string name;
  int64_t ne0 = 0, ne1 = 1;  // ggml order: ne0 = row length (input features)
  float std = 0;             // 0: a norm weight, all ones
};

std::vector<TensorSpec> tensor_specs(const ModelShape& s) {
  const int64_t e = s.n_embd, ff = s.n_ff;
  const int64_t kv = static_cast<int64_t>(s.n_embd) / s.n_head * s.n_head_kv;
  const auto inv_sqrt = [](double n) { return static_cast<float>(1.0 / std::sqrt(n)); };
  // Scales keep activations O(1) and give logits a spread of a few nats, so
  // outputs are varied but not flat (the embedding is tied to the output).
  const float resid = inv_sqrt(2.0 * s.n_layer);
  std::vector<TensorSpec> t;
  t.push_back({"token_embd.weight", e, kLlama3Vocab, 2.5f * inv_sqrt(static_cast<double>(e))});
  for (int32_t l = 0; l < s.n_layer; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    t.push_back({b + "attn_norm.weight", e, 1, 0});
    t.push_back({b + "attn_q.weight", e, e, inv_sqrt(static_cast<double>(e))});
    t.push_back({b + "attn_k.weight", e, kv, inv_sqrt(static_cast<double>(e))});
    t.push_back({b + "attn_v.weight", e, kv, inv_sqrt(static_cast<double>(e))});
    t.push_back({b + "attn_output.weight", e, e, resid * inv_sqrt(static_cast<double>(e))});
    t.push_back({b + "ffn_norm.weight", e, 1, 0});
    t.push_back({b + "ffn_gate.weight", e, ff, inv_sqrt(static_cast<double>(e))});
    t.push_back({b + "ffn_up.weight", e, ff, inv_sqrt(static_cast<double>(e))});
    t.push_back({b + "ffn_down.weight", ff, e, resid * inv_sqrt(static_cast<double>(ff))});
  }
  t.push_back({"output_norm.weight", e, 1, 0});
  return t;
}

Result<std::string> read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return make_error(Errc::not_found, "cannot read " + p.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Fills `out` (n elements, F16) for chunk range [c0, c1) of a tensor.
void fill_chunks(const TensorSpec& t, uint64_t tensor_seed, size_t c0, size_t c1, size_t n_total,
                 ggml_fp16_t* out) {
  std::vector<float> tmp(kChunk);
  const float a = t.std * std::sqrt(3.0f);  // uniform(-a, a) has this std
  for (size_t c = c0; c < c1; ++c) {
    const size_t begin = c * kChunk;
    const size_t n = std::min(kChunk, n_total - begin);
    Rng rng(tensor_seed ^ (c * 0xD1B54A32D192ED03ull));
    for (size_t i = 0; i < n; ++i) tmp[i] = a * rng.uniform();
    ggml_fp32_to_fp16_row(tmp.data(), out + (begin - c0 * kChunk), static_cast<int64_t>(n));
  }
}

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};

// Progress hook for llama_model_quantize, which reports per tensor in its log.
struct QuantizeLog {
  std::function<void(const SynthProgress&)>* progress = nullptr;
};

void quantize_log(ggml_log_level /*level*/, const char* text, void* user) {
  auto* q = static_cast<QuantizeLog*>(user);
  int i = 0, n = 0;
  if (q->progress && *q->progress && std::sscanf(text, "[%d/%d]", &i, &n) == 2 && n > 0) {
    (*q->progress)({"quantize", static_cast<uint64_t>(i), static_cast<uint64_t>(n)});
  }
}

llama_ftype to_ftype(Quant q) {
  switch (q) {
    case Quant::f16: return LLAMA_FTYPE_MOSTLY_F16;
    case Quant::q8_0: return LLAMA_FTYPE_MOSTLY_Q8_0;
    case Quant::q4_k_m: return LLAMA_FTYPE_MOSTLY_Q4_K_M;
  }
  return LLAMA_FTYPE_MOSTLY_F16;
}

// Writes the F16 model to `path`.
Status write_f16(const SynthOptions& o, const Preset& preset, const fs::path& path, int32_t threads,
                 uint64_t& params_out) {
  const ModelShape& s = preset.shape;
  auto tmpl = read_file(o.chat_template.empty() ? default_chat_template_path() : o.chat_template);
  if (!tmpl) return tmpl.error();
  const fs::path vocab_path = o.vocab.empty() ? default_vocab_path() : o.vocab;
  if (!fs::exists(vocab_path)) {
    return make_error(Errc::not_found, "tokenizer vocabulary not found: " + vocab_path.string() +
                                           " (run scripts/setup, or pass --vocab)");
  }
  GgufPtr vocab(gguf_init_from_file(vocab_path.c_str(), {true, nullptr}));
  if (!vocab) return make_error(Errc::corrupt, "cannot parse vocabulary GGUF " + vocab_path.string());
  const int64_t tok_key = gguf_find_key(vocab.get(), "tokenizer.ggml.tokens");
  const int64_t model_key = gguf_find_key(vocab.get(), "tokenizer.ggml.model");
  if (tok_key < 0 || model_key < 0 || gguf_get_arr_n(vocab.get(), tok_key) != kLlama3Vocab ||
      std::string(gguf_get_val_str(vocab.get(), model_key)) != "gpt2") {
    return make_error(Errc::corrupt, vocab_path.string() + " is not the Llama-3 BPE vocabulary");
  }

  GgufPtr out(gguf_init_empty());
  gguf_set_kv(out.get(), vocab.get());
  // Keep only the tokenizer from the vocabulary file; the rest describes us.
  for (int64_t i = gguf_get_n_kv(out.get()) - 1; i >= 0; --i) {
    const std::string key = gguf_get_key(out.get(), i);
    if (key.rfind("tokenizer.", 0) != 0) gguf_remove_key(out.get(), key.c_str());
  }
  const std::string name = "agora-synth-" + preset.name;
  gguf_set_val_str(out.get(), "general.architecture", "llama");
  gguf_set_val_str(out.get(), "general.name", name.c_str());
  gguf_set_val_u32(out.get(), "general.file_type", LLAMA_FTYPE_MOSTLY_F16);
  gguf_set_val_u32(out.get(), "llama.block_count", static_cast<uint32_t>(s.n_layer));
  gguf_set_val_u32(out.get(), "llama.context_length", static_cast<uint32_t>(s.n_ctx_train));
  gguf_set_val_u32(out.get(), "llama.embedding_length", static_cast<uint32_t>(s.n_embd));
  gguf_set_val_u32(out.get(), "llama.feed_forward_length", static_cast<uint32_t>(s.n_ff));
  gguf_set_val_u32(out.get(), "llama.attention.head_count", static_cast<uint32_t>(s.n_head));
  gguf_set_val_u32(out.get(), "llama.attention.head_count_kv", static_cast<uint32_t>(s.n_head_kv));
  gguf_set_val_u32(out.get(), "llama.rope.dimension_count", static_cast<uint32_t>(s.n_embd / s.n_head));
  gguf_set_val_f32(out.get(), "llama.rope.freq_base", s.rope_freq_base);
  gguf_set_val_f32(out.get(), "llama.attention.layer_norm_rms_epsilon", s.rms_eps);
  gguf_set_val_u32(out.get(), "llama.vocab_size", kLlama3Vocab);
  gguf_set_val_str(out.get(), "tokenizer.chat_template", tmpl->c_str());
  gguf_set_val_str(out.get(), "agora.synth.preset", preset.name.c_str());
  gguf_set_val_u64(out.get(), "agora.synth.seed", o.seed);

  const auto specs = tensor_specs(s);
  ggml_init_params ip{ggml_tensor_overhead() * (specs.size() + 1), nullptr, true};
  GgmlContextPtr meta(ggml_init(ip));
  uint64_t total_elems = 0;
  for (const auto& t : specs) {
    ggml_tensor* x = t.ne1 == 1 ? ggml_new_tensor_1d(meta.get(), GGML_TYPE_F32, t.ne0)
                                : ggml_new_tensor_2d(meta.get(), GGML_TYPE_F16, t.ne0, t.ne1);
    ggml_set_name(x, t.name.c_str());
    gguf_add_tensor(out.get(), x);
    total_elems += static_cast<uint64_t>(t.ne0 * t.ne1);
  }
  params_out = total_elems;

  std::unique_ptr<FILE, FileCloser> f(std::fopen(path.c_str(), "wb"));
  if (!f) return make_error(Errc::io_error, "cannot write " + path.string());
  std::vector<uint8_t> head(gguf_get_meta_size(out.get()));
  gguf_get_meta_data(out.get(), head.data());
  bool ok = std::fwrite(head.data(), 1, head.size(), f.get()) == head.size();
  const size_t align = gguf_get_alignment(out.get());

  uint64_t done = 0;
  const size_t batch_chunks = 64;  // 64 Mi elements (128 MiB F16) in memory at a time
  std::vector<ggml_fp16_t> buf;
  for (size_t ti = 0; ti < specs.size() && ok; ++ti) {
    const auto& t = specs[ti];
    const size_t n = static_cast<size_t>(t.ne0 * t.ne1);
    size_t bytes = 0;
    if (t.std == 0) {  // norm weights: ones, F32
      std::vector<float> ones(n, 1.0f);
      bytes = n * sizeof(float);
      ok = std::fwrite(ones.data(), 1, bytes, f.get()) == bytes;
    } else {
      const uint64_t tseed = o.seed * 0x9E3779B97F4A7C15ull ^ fnv1a(t.name);
      const size_t chunks = (n + kChunk - 1) / kChunk;
      for (size_t c0 = 0; c0 < chunks && ok; c0 += batch_chunks) {
        const size_t c1 = std::min(chunks, c0 + batch_chunks);
        const size_t elems = std::min(n, c1 * kChunk) - c0 * kChunk;
        buf.resize(elems);
        std::vector<std::thread> pool;
        const size_t per = (c1 - c0 + static_cast<size_t>(threads) - 1) / static_cast<size_t>(threads);
        for (size_t a = c0; a < c1; a += per) {
          const size_t b = std::min(c1, a + per);
          pool.emplace_back(fill_chunks, std::cref(t), tseed, a, b, n, buf.data() + (a - c0) * kChunk);
        }
        for (auto& th : pool) th.join();
        ok = std::fwrite(buf.data(), sizeof(ggml_fp16_t), elems, f.get()) == elems;
        done += elems;
        if (o.progress) o.progress({"generate", done, total_elems});
      }
      bytes = n * sizeof(ggml_fp16_t);
    }
    const size_t pad = (align - bytes % align) % align;
    static const char zeros[64] = {};
    if (ok && pad) ok = std::fwrite(zeros, 1, pad, f.get()) == pad;
    if (t.std == 0) {
      done += n;
      if (o.progress) o.progress({"generate", done, total_elems});
    }
  }
  if (!ok || std::fflush(f.get()) != 0) return make_error(Errc::io_error, "write failed: " + path.string());
  return ok_status();
}

}  // namespace

std::optional<Preset> find_preset(std::string_view name) {
  if (name == "tiny") {
    // Vocab-sized embedding, everything else minimal: ~4 MB at Q8_0.
    return Preset{"tiny", ModelShape{2, 32, 4, 2, 96, 4096, 500000.0f, 1e-5f}, Quant::q8_0};
  }
  if (name == "bench-1b") {
    // Llama-3.2-1B: 16 layers, 2048 wide, 32 heads / 8 KV heads, FFN 8192, tied embeddings.
    return Preset{"bench-1b", ModelShape{16, 2048, 32, 8, 8192, 131072, 500000.0f, 1e-5f}, Quant::q4_k_m};
  }
  return std::nullopt;
}

std::optional<Quant> parse_quant(std::string_view name) {
  if (name == "f16" || name == "F16") return Quant::f16;
  if (name == "q8_0" || name == "Q8_0") return Quant::q8_0;
  if (name == "q4_k_m" || name == "Q4_K_M") return Quant::q4_k_m;
  return std::nullopt;
}

const char* quant_name(Quant q) {
  switch (q) {
    case Quant::f16: return "f16";
    case Quant::q8_0: return "q8_0";
    case Quant::q4_k_m: return "q4_k_m";
  }
  return "?";
}

fs::path default_vocab_path() {
  if (const char* v = std::getenv("AGORA_VOCAB"); v && *v) return v;
  return fs::path(AGORA_LLAMA_SOURCE_DIR) / "models" / "ggml-vocab-llama-bpe.gguf";
}

fs::path default_chat_template_path() {
  if (const char* v = std::getenv("AGORA_CHAT_TEMPLATE"); v && *v) return v;
  return fs::path(AGORA_LLAMA_SOURCE_DIR) / "models" / "templates" / "meta-llama-Llama-3.2-3B-Instruct.jinja";
}

Result<SynthReport> synthesize_model(const SynthOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto preset = find_preset(o.preset);
  if (!preset) return make_error(Errc::invalid_argument, "unknown preset '" + o.preset + "' (tiny, bench-1b)");
  if (o.out.empty()) return make_error(Errc::invalid_argument, "an output path is required");
  const Quant quant = o.quant.value_or(preset->default_quant);
  const int32_t threads =
      o.threads > 0 ? o.threads : static_cast<int32_t>(std::max(1u, std::thread::hardware_concurrency()));
  std::error_code ec;
  if (o.out.has_parent_path()) fs::create_directories(o.out.parent_path(), ec);

  // Build beside the destination and rename at the end: readers never see a partial model.
  const std::string stem = o.out.string() + ".partial-" + std::to_string(::getpid());
  const fs::path f16_path = stem + ".f16";
  const fs::path final_tmp = stem + ".gguf";
  struct Cleanup {
    std::vector<fs::path> paths;
    ~Cleanup() {
      std::error_code e;
      for (auto& p : paths) fs::remove(p, e);
    }
  } cleanup{{f16_path, final_tmp}};

  uint64_t params = 0;
  if (auto st = write_f16(o, *preset, f16_path, threads, params); !st) return st.error();

  fs::path built = f16_path;
  if (quant != Quant::f16) {
    route_llama_logs();
    llama_backend_init();
    llama_model_quantize_params qp = llama_model_quantize_default_params();
    qp.nthread = threads;
    qp.ftype = to_ftype(quant);
    auto progress = o.progress;
    QuantizeLog ql{&progress};
    static std::mutex log_mu;  // the llama.cpp log hook is process-wide
    uint32_t rc = 0;
    {
      std::lock_guard lock(log_mu);
      ggml_log_callback prev_cb = nullptr;
      void* prev_ud = nullptr;
      llama_log_get(&prev_cb, &prev_ud);
      llama_log_set(quantize_log, &ql);
      rc = llama_model_quantize(f16_path.c_str(), final_tmp.c_str(), &qp);
      llama_log_set(prev_cb, prev_ud);
    }
    if (rc != 0) return make_error(Errc::internal, "llama_model_quantize failed (" + std::to_string(rc) + ")");
    built = final_tmp;
  }
  fs::rename(built, o.out, ec);
  if (ec) return make_error(Errc::io_error, "cannot move the model into place: " + ec.message());

  SynthReport r;
  r.path = o.out;
  r.bytes = fs::file_size(o.out, ec);
  r.parameters = params;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace agora::engine
