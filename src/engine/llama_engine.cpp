#include "engine/llama_engine.h"

#include <gguf.h>
#include <llama.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <stdexcept>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_set>

#include "common/log.h"
#include "engine/chat_format.h"
#include "engine/llama_handles.h"
#include "engine/model_file.h"
#include "engine/text_stream.h"

namespace agora::engine {
namespace {

// ---------------------------------------------------------------- model loading

void llama_log_to_spdlog(ggml_log_level level, const char* text, void* /*user*/) {
  std::string_view line(text);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  if (line.empty()) return;
  if (level == GGML_LOG_LEVEL_ERROR) {
    spdlog::warn("llama.cpp: {}", line);
  } else {
    spdlog::debug("llama.cpp: {}", line);
  }
}

void init_backend_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    route_llama_logs();
    llama_backend_init();
  });
}

std::string meta_string(const llama_model* model, const std::string& key) {
  char buf[512];
  const int32_t n = llama_model_meta_val_str(model, key.c_str(), buf, sizeof buf);
  if (n < 0) return {};
  if (static_cast<size_t>(n) < sizeof buf) return std::string(buf, static_cast<size_t>(n));
  std::string big(static_cast<size_t>(n) + 1, '\0');
  llama_model_meta_val_str(model, key.c_str(), big.data(), big.size());
  big.resize(static_cast<size_t>(n));
  return big;
}

// Short, conventional names ("Q4_K_M") for llama.cpp's file types.
std::string quantization_name(llama_ftype ftype) {
  switch (ftype) {
    case LLAMA_FTYPE_ALL_F32: return "F32";
    case LLAMA_FTYPE_MOSTLY_F16: return "F16";
    case LLAMA_FTYPE_MOSTLY_BF16: return "BF16";
    case LLAMA_FTYPE_MOSTLY_Q4_0: return "Q4_0";
    case LLAMA_FTYPE_MOSTLY_Q4_1: return "Q4_1";
    case LLAMA_FTYPE_MOSTLY_Q5_0: return "Q5_0";
    case LLAMA_FTYPE_MOSTLY_Q5_1: return "Q5_1";
    case LLAMA_FTYPE_MOSTLY_Q8_0: return "Q8_0";
    case LLAMA_FTYPE_MOSTLY_Q2_K: return "Q2_K";
    case LLAMA_FTYPE_MOSTLY_Q3_K_S: return "Q3_K_S";
    case LLAMA_FTYPE_MOSTLY_Q3_K_M: return "Q3_K_M";
    case LLAMA_FTYPE_MOSTLY_Q3_K_L: return "Q3_K_L";
    case LLAMA_FTYPE_MOSTLY_Q4_K_S: return "Q4_K_S";
    case LLAMA_FTYPE_MOSTLY_Q4_K_M: return "Q4_K_M";
    case LLAMA_FTYPE_MOSTLY_Q5_K_S: return "Q5_K_S";
    case LLAMA_FTYPE_MOSTLY_Q5_K_M: return "Q5_K_M";
    case LLAMA_FTYPE_MOSTLY_Q6_K: return "Q6_K";
    default: return llama_ftype_name(ftype);
  }
}

// Opens the GGUF with ggml's parser (metadata only), which rejects a
// structurally broken file with a clear error before llama.cpp loads it.
Result<GgufPtr> open_gguf(const std::filesystem::path& path) {
  if (auto st = check_gguf_header(path); !st) return st.error();
  gguf_init_params params{/*no_alloc=*/true, /*ctx=*/nullptr};
  GgufPtr g(gguf_init_from_file(path.c_str(), params));
  if (!g) return make_error(Errc::corrupt, "corrupt GGUF file (metadata unreadable): " + path.string());
  return g;
}

struct LoadedModel {
  ModelPtr model;
  ModelInfo info;
};

Result<LoadedModel> load_model(const std::filesystem::path& path,
                               const std::function<void(uint64_t, uint64_t)>& hash_progress) {
  init_backend_once();
  auto gguf = open_gguf(path);
  if (!gguf) return gguf.error();
  const bool has_output = gguf_find_tensor(gguf->get(), "output.weight") >= 0;
  uint64_t weight_bytes = 0, embd_bytes = 0;
  for (int64_t i = 0; i < gguf_get_n_tensors(gguf->get()); ++i) {
    const size_t bytes = gguf_get_tensor_size(gguf->get(), i);
    weight_bytes += bytes;
    if (std::string_view(gguf_get_tensor_name(gguf->get(), i)) == "token_embd.weight") embd_bytes = bytes;
  }
  gguf->reset();

  llama_model_params mp = llama_model_default_params();
  mp.load_mode = LLAMA_LOAD_MODE_MMAP;
  ModelPtr model(llama_model_load_from_file(path.c_str(), mp));
  if (!model) {
    return make_error(Errc::corrupt, "llama.cpp could not load the model (truncated, corrupt or unsupported "
                                     "architecture): " + path.string());
  }
  auto sha = model_sha256(path, hash_progress);
  if (!sha) return sha.error();

  LoadedModel out;
  ModelInfo& info = out.info;
  const llama_model* m = model.get();
  info.path = path.string();
  info.architecture = meta_string(m, "general.architecture");
  info.name = meta_string(m, "general.name");
  char desc[256];
  const int32_t n = llama_model_desc(m, desc, sizeof desc);
  if (n > 0) info.description.assign(desc, std::min(static_cast<size_t>(n), sizeof desc - 1));
  info.quantization = quantization_name(llama_model_ftype(m));
  info.parameters = llama_model_n_params(m);
  std::error_code ec;
  info.file_bytes = std::filesystem::file_size(path, ec);
  info.context_length = llama_model_n_ctx_train(m);
  info.n_layer = llama_model_n_layer(m);
  info.n_embd = llama_model_n_embd(m);
  info.n_head = llama_model_n_head(m);
  info.n_head_kv = llama_model_n_head_kv(m);
  const std::string ff = meta_string(m, info.architecture + ".feed_forward_length");
  info.n_ff = ff.empty() ? 0 : std::atoi(ff.c_str());
  info.n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(m));
  info.tied_embeddings = !has_output;
  if (has_output && info.n_vocab > 0) weight_bytes -= embd_bytes - embd_bytes / static_cast<uint64_t>(info.n_vocab);
  info.weight_bytes_per_token = weight_bytes;
  if (const char* t = llama_model_chat_template(m, nullptr)) info.chat_template = t;
  info.sha256 = std::move(*sha);
  out.model = std::move(model);
  return out;
}

// ---------------------------------------------------------------- tokenisation

std::string token_piece(const llama_vocab* vocab, llama_token t, bool special) {
  char buf[256];
  int32_t n = llama_token_to_piece(vocab, t, buf, sizeof buf, 0, special);
  if (n >= 0) return std::string(buf, static_cast<size_t>(n));
  std::string big(static_cast<size_t>(-n), '\0');
  n = llama_token_to_piece(vocab, t, big.data(), static_cast<int32_t>(big.size()), 0, special);
  big.resize(static_cast<size_t>(std::max(n, 0)));
  return big;
}

std::vector<llama_token> tokenize_text(const llama_vocab* vocab, std::string_view text, bool add_special,
                                  bool parse_special) {
  std::vector<llama_token> out(text.size() + 4);
  int32_t n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), out.data(),
                             static_cast<int32_t>(out.size()), add_special, parse_special);
  if (n < 0) {
    out.resize(static_cast<size_t>(-n));
    n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), out.data(),
                       static_cast<int32_t>(out.size()), add_special, parse_special);
  }
  out.resize(static_cast<size_t>(std::max(n, 0)));
  return out;
}

// ---------------------------------------------------------------- logprobs

void fill_logprobs(const llama_vocab* vocab, const float* logits, int32_t n_vocab, llama_token chosen,
                   int32_t top_n, TokenLogprob& out) {
  float max = logits[0];
  for (int32_t i = 1; i < n_vocab; ++i) max = std::max(max, logits[i]);
  double sum = 0;
  for (int32_t i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - max));
  const float lse = max + static_cast<float>(std::log(sum));
  out.token = chosen;
  out.text = token_piece(vocab, chosen, true);
  out.logprob = logits[chosen] - lse;
  if (top_n <= 0) return;
  std::vector<llama_token> ids(static_cast<size_t>(n_vocab));
  for (int32_t i = 0; i < n_vocab; ++i) ids[static_cast<size_t>(i)] = i;
  const auto k = static_cast<std::ptrdiff_t>(std::min(top_n, n_vocab));
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [logits](llama_token a, llama_token b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  out.top.reserve(static_cast<size_t>(k));
  for (std::ptrdiff_t i = 0; i < k; ++i) {
    const llama_token t = ids[static_cast<size_t>(i)];
    out.top.push_back({t, token_piece(vocab, t, true), logits[t] - lse});
  }
}

// ---------------------------------------------------------------- the engine

struct Job {
  RequestId id = 0;
  GenerationRequest req;
  GenerationCallbacks cb;
  std::vector<llama_token> prompt;
  Clock::TimePoint submitted{}, started{}, first_token{};
  size_t n_past = 0;        // prompt tokens already in the slot's KV cache
  int32_t n_generated = 0;  // sampled tokens
  llama_token next = -1;    // sampled, still to be decoded
  int32_t logits_idx = -1;  // row of this step's batch whose logits we sample
  SamplerPtr sampler;       // the request's chain (penalties, truncation, temperature, draw)
  SamplerPtr grammar;       // tools / structured output: the grammar, checked after the draw
  std::vector<llama_token_data> candidates;  // scratch for the grammar path
  std::unique_ptr<TokenTextStream> text;
  std::vector<std::string> stops;                   // the request's and the template's
  std::vector<llama_token> preserved;               // special tokens the parser must see
  std::unique_ptr<ToolCallStream> calls;            // tools / structured output: parses the text
  Completion result;
};

struct Slot {
  llama_seq_id seq = 0;
  std::vector<llama_token> cache;  // tokens whose KV is in this slot's sequence
  std::unique_ptr<Job> job;        // null: free
  uint64_t last_used = 0;
};

class LlamaEngine final : public Engine {
 public:
  LlamaEngine(LoadedModel model, ContextPtr ctx, std::unique_ptr<ChatFormat> chat, const EngineOptions& opts,
              Clock& clock)
      : model_(std::move(model.model)),
        chat_(std::move(chat)),
        info_(std::move(model.info)),
        ctx_(std::move(ctx)),
        vocab_(llama_model_get_vocab(model_.get())),
        clock_(clock),
        n_vocab_(llama_vocab_n_tokens(vocab_)),
        n_ctx_slot_(static_cast<int32_t>(llama_n_ctx_seq(ctx_.get()))),
        batch_budget_(opts.batch),
        max_queue_(opts.max_queue),
        batch_(llama_batch_init(opts.batch + opts.slots, 0, 1)) {
    slots_.resize(static_cast<size_t>(opts.slots));
    for (size_t i = 0; i < slots_.size(); ++i) slots_[i].seq = static_cast<llama_seq_id>(i);
    for (llama_token t = 0; t < n_vocab_; ++t) {
      if (llama_vocab_is_eog(vocab_, t)) eog_tokens_.push_back(t);
    }
    thread_ = std::thread([this] { run(); });
  }

  ~LlamaEngine() override {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
    llama_batch_free(batch_);
  }

  const ModelInfo& model_info() const override { return info_; }

  Result<std::string> apply_chat_template(const std::vector<ChatMessage>& messages) const override {
    GenerationRequest r;
    r.messages = messages;
    auto plan = chat_->plan(r);
    if (!plan) return plan.error();
    std::string out;
    for (const auto& p : plan->prompt) out += p.text;
    return out;
  }

  ChatCapabilities chat_capabilities() const override {
    ChatCapabilities c = chat_->capabilities();
    c.grammar = true;
    return c;
  }

  Result<RequestId> submit(GenerationRequest request, GenerationCallbacks callbacks) override {
    if (auto st = validate_request(request); !st) return st.error();
    for (const auto& [token, bias] : request.sampling.logit_bias) {
      if (token >= n_vocab_) {
        return make_error(Errc::invalid_argument, "'logit_bias' token id " + std::to_string(token) +
                                                      " is outside the vocabulary (size " +
                                                      std::to_string(n_vocab_) + ")");
      }
    }
    auto job = std::make_unique<Job>();
    job->stops = request.stop;
    if (request.prompt) {
      job->prompt = tokenize_text(vocab_, *request.prompt, true, false);
      auto sampler = make_sampler(request, nullptr);  // cannot fail without a grammar
      job->sampler = std::move(*sampler);
    } else {
      auto plan = chat_->plan(request);
      if (!plan) return plan.error();
      if (request.ignore_eos && !plan->grammar.empty()) {
        return make_error(Errc::invalid_argument, "'ignore_eos' cannot be combined with a grammar (tools or response_format)");
      }
      job->prompt = tokenize_plan(*plan);
      auto sampler = make_sampler(request, nullptr);
      if (!sampler) return sampler.error();
      job->sampler = std::move(*sampler);
      if (!plan->grammar.empty()) {
        auto g = grammar_sampler(*plan);
        if (!g) return g.error();
        job->grammar = std::move(*g);
      }
      for (auto& s : plan->stops) {
        if (std::find(job->stops.begin(), job->stops.end(), s) == job->stops.end()) job->stops.push_back(std::move(s));
      }
      for (const auto& text : plan->preserved_tokens) {
        const auto ids = tokenize_text(vocab_, text, false, true);
        if (ids.size() == 1) job->preserved.push_back(ids[0]);
      }
      // Only calls need parsing out: a structured answer is its text, as
      // generated (a length-cut one too), whatever the template's parser
      // would trim.
      if (plan->parser && !request.tools.empty()) job->calls = std::make_unique<ToolCallStream>(plan->parser);
    }
    if (job->prompt.empty()) return make_error(Errc::invalid_argument, "the prompt is empty");
    if (static_cast<int32_t>(job->prompt.size()) >= n_ctx_slot_) {
      return make_error(Errc::too_large, "the prompt is " + std::to_string(job->prompt.size()) +
                                             " tokens; this model's context per request is " +
                                             std::to_string(n_ctx_slot_) + " tokens");
    }
    job->req = std::move(request);
    job->cb = std::move(callbacks);
    job->submitted = clock_.now();
    RequestId id = 0;
    {
      std::lock_guard lock(mu_);
      if (stopping_) return make_error(Errc::unavailable, "the engine is shutting down");
      if (static_cast<int32_t>(queue_.size()) >= max_queue_) {
        return make_error(Errc::unavailable, "too many requests are waiting for this model");
      }
      id = job->id = ++next_id_;
      live_.insert(id);
      queue_.push_back(std::move(job));
      queued_.store(static_cast<int32_t>(queue_.size()), std::memory_order_relaxed);
    }
    cv_.notify_one();
    return id;
  }

  bool cancel(RequestId id) override {
    {
      std::lock_guard lock(mu_);
      if (!live_.contains(id)) return false;
      cancels_.insert(id);
    }
    cv_.notify_one();
    return true;
  }

  EngineStats stats() const override {
    EngineStats s;
    s.slots_total = static_cast<int32_t>(slots_.size());
    s.ctx_per_slot = n_ctx_slot_;
    s.slots_busy = busy_.load(std::memory_order_relaxed);
    s.queued = queued_.load(std::memory_order_relaxed);
    s.decode_steps = decode_steps_.load(std::memory_order_relaxed);
    s.tokens_generated = tokens_generated_.load(std::memory_order_relaxed);
    s.prompt_tokens_processed = prompt_processed_.load(std::memory_order_relaxed);
    s.prompt_tokens_reused = prompt_reused_.load(std::memory_order_relaxed);
    return s;
  }

  std::vector<TokenId> tokenize(std::string_view text, bool parse_special) const override {
    return tokenize_text(vocab_, text, false, parse_special);
  }

  std::string token_bytes(TokenId token) const override {
    if (token < 0 || token >= n_vocab_) return {};
    return token_piece(vocab_, token, false);
  }

 private:
  // A rendered chat -> tokens: the template's markup with special tokens
  // recognised, message text without (chat_format.h), BOS first.
  std::vector<llama_token> tokenize_plan(const ChatPlan& plan) const {
    std::vector<llama_token> out;
    bool first = true;
    for (const auto& piece : plan.prompt) {
      auto toks = tokenize_text(vocab_, piece.text, first, piece.markup);
      out.insert(out.end(), toks.begin(), toks.end());
      first = false;
    }
    return out;
  }

  // The grammar sampler for a plan: compiled once per grammar (cached),
  // its generation-prompt prefix already consumed, cloned per request.
  Result<SamplerPtr> grammar_sampler(const ChatPlan& plan) const {
    const std::string key = (plan.grammar_lazy ? "L" : "E") + plan.grammar_prefill + '\0' + plan.grammar;
    {
      std::lock_guard lock(grammar_mu_);
      if (auto it = grammars_.find(key); it != grammars_.end()) {  // lazy grammars are never stored
        return SamplerPtr(llama_sampler_clone(it->second.get()));
      }
    }
    SamplerPtr g;
    if (plan.grammar_lazy) {
      std::vector<const char*> patterns;
      for (const auto& p : plan.trigger_patterns) patterns.push_back(p.c_str());
      std::vector<llama_token> tokens(plan.trigger_tokens.begin(), plan.trigger_tokens.end());
      g.reset(llama_sampler_init_grammar_lazy_patterns(vocab_, plan.grammar.c_str(), "root", patterns.data(),
                                                       patterns.size(), tokens.data(), tokens.size()));
    } else {
      g.reset(llama_sampler_init_grammar(vocab_, plan.grammar.c_str(), "root"));
    }
    if (!g) return make_error(Errc::invalid_argument, "the request's schema gives a grammar llama.cpp cannot compile");
    if (!plan.grammar_prefill.empty()) {
      try {
        for (llama_token t : tokenize_text(vocab_, plan.grammar_prefill, false, true)) llama_sampler_accept(g.get(), t);
      } catch (const std::exception& e) {
        return make_error(Errc::internal, std::string("the grammar refuses the template's own prefix: ") + e.what());
      }
    }
    if (plan.grammar_lazy) return g;  // triggers hold per-request state; not cached
    std::lock_guard lock(grammar_mu_);
    if (grammars_.size() >= kGrammarCacheSize) grammars_.erase(grammars_.begin());
    grammars_.emplace(key, SamplerPtr(llama_sampler_clone(g.get())));
    return g;
  }

  Result<SamplerPtr> make_sampler(const GenerationRequest& r, const ChatPlan* /*plan*/) const {
    llama_sampler_chain_params cp = llama_sampler_chain_default_params();
    cp.no_perf = true;
    SamplerPtr chain(llama_sampler_chain_init(cp));
    std::vector<llama_logit_bias> bias;
    for (const auto& [t, b] : r.sampling.logit_bias) bias.push_back({t, b});
    if (r.ignore_eos) {
      for (llama_token t : eog_tokens_) bias.push_back({t, -INFINITY});
    }
    if (!bias.empty()) {
      llama_sampler_chain_add(chain.get(), llama_sampler_init_logit_bias(
                                               n_vocab_, static_cast<int32_t>(bias.size()), bias.data()));
    }
    const auto& s = r.sampling;
    if (s.presence_penalty != 0.0f || s.frequency_penalty != 0.0f) {
      // OpenAI semantics: penalise tokens already generated (not the prompt).
      llama_sampler_chain_add(chain.get(), llama_sampler_init_penalties(n_vocab_, std::min(r.max_tokens, 1 << 16), 1.0f,
                                                                        s.frequency_penalty, s.presence_penalty));
    }
    if (s.temperature == 0.0f) {
      llama_sampler_chain_add(chain.get(), llama_sampler_init_greedy());
      return chain;
    }
    if (s.top_k > 0) llama_sampler_chain_add(chain.get(), llama_sampler_init_top_k(s.top_k));
    if (s.top_p < 1.0f) llama_sampler_chain_add(chain.get(), llama_sampler_init_top_p(s.top_p, 1));
    if (s.min_p > 0.0f) llama_sampler_chain_add(chain.get(), llama_sampler_init_min_p(s.min_p, 1));
    llama_sampler_chain_add(chain.get(), llama_sampler_init_temp(s.temperature));
    const uint32_t seed = s.seed ? *s.seed : std::random_device{}();
    llama_sampler_chain_add(chain.get(), llama_sampler_init_dist(seed));
    return chain;
  }

  // ---- the engine thread

  void run() {
    for (;;) {
      std::vector<std::unique_ptr<Job>> cancelled_queued;
      std::unordered_set<RequestId> cancels;
      bool stopping = false;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] {
          return stopping_ || !cancels_.empty() || active_ > 0 || (!queue_.empty() && active_ < slots_.size());
        });
        stopping = stopping_;
        cancels.swap(cancels_);
        if (stopping) {
          for (auto& s : slots_) {
            if (s.job) cancels.insert(s.job->id);
          }
        }
        // Cancelled jobs still in the queue leave it now.
        for (auto it = queue_.begin(); it != queue_.end();) {
          if (stopping || cancels.contains((*it)->id)) {
            cancelled_queued.push_back(std::move(*it));
            it = queue_.erase(it);
          } else {
            ++it;
          }
        }
        while (!queue_.empty() && active_ < slots_.size()) {
          assign(std::move(queue_.front()));
          queue_.pop_front();
        }
        queued_.store(static_cast<int32_t>(queue_.size()), std::memory_order_relaxed);
      }
      for (auto& job : cancelled_queued) complete(*job, FinishReason::cancelled, nullptr);
      for (auto& slot : slots_) {
        if (slot.job && cancels.contains(slot.job->id)) finish(slot, FinishReason::cancelled);
      }
      if (stopping) return;
      step();
    }
  }

  // Puts a job in the free slot whose cached tokens share the longest prefix
  // with its prompt (least recently used on ties). Called with mu_ held.
  void assign(std::unique_ptr<Job> job) {
    Slot* best = nullptr;
    size_t best_common = 0;
    for (auto& s : slots_) {
      if (s.job) continue;
      size_t common = 0;
      const size_t lim = std::min(s.cache.size(), job->prompt.size());
      while (common < lim && s.cache[common] == job->prompt[common]) ++common;
      if (!best || common > best_common || (common == best_common && s.last_used < best->last_used)) {
        best = &s;
        best_common = common;
      }
    }
    // At least the last prompt token is decoded again: its logits start generation.
    const size_t keep = std::min(best_common, job->prompt.size() - 1);
    llama_memory_t mem = llama_get_memory(ctx_.get());
    if (!llama_memory_seq_rm(mem, best->seq, static_cast<llama_pos>(keep), -1)) {
      llama_memory_seq_rm(mem, best->seq, -1, -1);
      best->cache.clear();
    } else {
      best->cache.resize(keep);
    }
    job->n_past = best->cache.size();
    job->result.usage.cached_prompt_tokens = static_cast<int32_t>(job->n_past);
    prompt_reused_.fetch_add(job->n_past, std::memory_order_relaxed);
    job->started = clock_.now();
    job->text = std::make_unique<TokenTextStream>(job->stops);
    best->job = std::move(job);
    ++active_;
    busy_.store(static_cast<int32_t>(active_), std::memory_order_relaxed);
  }

  void add_to_batch(llama_token t, llama_pos pos, llama_seq_id seq, bool logits) {
    const int32_t i = batch_.n_tokens++;
    batch_.token[i] = t;
    batch_.pos[i] = pos;
    batch_.n_seq_id[i] = 1;
    batch_.seq_id[i][0] = seq;
    batch_.logits[i] = logits ? 1 : 0;
  }

  // One decode step: a token for every generating slot, then prompt chunks.
  void step() {
    batch_.n_tokens = 0;
    for (auto& s : slots_) {
      if (!s.job || s.job->next < 0) continue;
      s.job->logits_idx = batch_.n_tokens;
      add_to_batch(s.job->next, static_cast<llama_pos>(s.cache.size()), s.seq, true);
    }
    int32_t budget = batch_budget_;
    for (size_t k = 0; k < slots_.size() && budget > 0; ++k) {
      // Rotate the starting slot so that no prompt waits behind another forever.
      Slot& s = slots_[(prefill_cursor_ + k) % slots_.size()];
      if (!s.job || s.job->next >= 0) continue;
      Job& j = *s.job;
      const size_t take = std::min(j.prompt.size() - j.n_past, static_cast<size_t>(budget));
      for (size_t i = 0; i < take; ++i) {
        const size_t p = j.n_past + i;
        const bool last = p + 1 == j.prompt.size();
        if (last) j.logits_idx = batch_.n_tokens;
        add_to_batch(j.prompt[p], static_cast<llama_pos>(p), s.seq, last);
      }
      budget -= static_cast<int32_t>(take);
    }
    prefill_cursor_ = (prefill_cursor_ + 1) % slots_.size();
    if (batch_.n_tokens == 0) return;

    const int32_t rc = llama_decode(ctx_.get(), batch_);
    decode_steps_.fetch_add(1, std::memory_order_relaxed);
    if (rc != 0) {
      spdlog::error("engine_decode_failed rc={} tokens={}", rc, batch_.n_tokens);
      for (auto& s : slots_) {
        if (!s.job) continue;
        llama_memory_seq_rm(llama_get_memory(ctx_.get()), s.seq, -1, -1);
        s.cache.clear();
        s.job->result.error = make_error(Errc::internal, "llama_decode failed (" + std::to_string(rc) + ")");
        finish(s, FinishReason::error);
      }
      return;
    }
    // Record what entered each slot's KV cache.
    for (int32_t i = 0; i < batch_.n_tokens; ++i) {
      slots_[static_cast<size_t>(batch_.seq_id[i][0])].cache.push_back(batch_.token[i]);
    }
    for (auto& s : slots_) {
      if (!s.job) continue;
      Job& j = *s.job;
      if (j.next < 0) {  // prefilling
        const size_t before = j.n_past;
        j.n_past = std::min(j.prompt.size(), s.cache.size());
        prompt_processed_.fetch_add(j.n_past - before, std::memory_order_relaxed);
        if (j.n_past < j.prompt.size()) continue;
      }
      sample(s);
    }
  }

  void sample(Slot& s) {
    Job& j = *s.job;
    const int32_t idx = j.logits_idx;
    llama_token t = -1;
    try {
      t = j.grammar ? sample_with_grammar(j, idx) : llama_sampler_sample(j.sampler.get(), ctx_.get(), idx);
    } catch (const std::exception& e) {  // a grammar left with no token it allows
      j.result.error = make_error(Errc::internal, std::string("sampling failed: ") + e.what());
      finish(s, FinishReason::error);
      return;
    }
    if (j.n_generated == 0) j.first_token = clock_.now();
    ++j.n_generated;
    tokens_generated_.fetch_add(1, std::memory_order_relaxed);
    if (!j.req.ignore_eos && llama_vocab_is_eog(vocab_, t)) {
      finish(s, FinishReason::stop);
      return;
    }
    TokenLogprob lp;
    if (j.req.logprobs) {
      fill_logprobs(vocab_, llama_get_logits_ith(ctx_.get(), idx), n_vocab_, t, j.req.top_logprobs, lp);
    }
    bool stopped = false;
    const bool preserved = std::find(j.preserved.begin(), j.preserved.end(), t) != j.preserved.end();
    StreamEvent ev = j.text->push(token_piece(vocab_, t, preserved), std::move(lp), j.req.logprobs, stopped);
    emit(j, std::move(ev));
    if (stopped) {
      finish(s, FinishReason::stop);
    } else if (j.n_generated >= j.req.max_tokens || static_cast<int32_t>(s.cache.size()) >= n_ctx_slot_) {
      finish(s, FinishReason::length);
    } else {
      j.next = t;
    }
  }

  // Draw, then check the grammar on the drawn token alone; only when it is
  // refused, constrain every candidate and draw again (as llama.cpp's server
  // does). The result has the constrained distribution — p(t) when allowed,
  // plus the refused mass spread over the allowed tokens as p(t)/Z — at the
  // cost of one grammar check per token instead of one per vocabulary entry.
  llama_token sample_with_grammar(Job& j, int32_t idx) {
    const float* logits = llama_get_logits_ith(ctx_.get(), idx);
    auto draw = [&](bool constrained) {
      j.candidates.resize(static_cast<size_t>(n_vocab_));
      for (int32_t i = 0; i < n_vocab_; ++i) j.candidates[static_cast<size_t>(i)] = {i, logits[i], 0.0f};
      llama_token_data_array all{j.candidates.data(), j.candidates.size(), -1, false};
      if (constrained) llama_sampler_apply(j.grammar.get(), &all);
      llama_sampler_apply(j.sampler.get(), &all);
      if (all.selected < 0 || static_cast<size_t>(all.selected) >= all.size) {
        throw std::runtime_error("no token was drawn");
      }
      const llama_token_data& pick = all.data[all.selected];
      if (constrained && pick.logit == -INFINITY) throw std::runtime_error("the grammar allows no token here");
      return pick.id;
    };
    llama_token t = draw(false);
    llama_token_data one{t, 1.0f, 0.0f};
    llama_token_data_array single{&one, 1, -1, false};
    llama_sampler_apply(j.grammar.get(), &single);
    if (one.logit == -INFINITY) t = draw(true);
    llama_sampler_accept(j.grammar.get(), t);
    llama_sampler_accept(j.sampler.get(), t);
    return t;
  }

  void emit(Job& j, StreamEvent ev, bool last = false) {
    if (j.calls) {  // the raw text becomes content and tool calls
      std::string raw = std::move(ev.text);
      ev.text.clear();
      j.calls->push(raw, ev.text, ev.tool_calls);
      if (last) j.calls->finish(ev.text, ev.tool_calls);
    }
    if (ev.text.empty() && ev.logprobs.empty() && ev.tool_calls.empty()) return;
    j.result.text += ev.text;
    if (j.req.logprobs) j.result.logprobs.insert(j.result.logprobs.end(), ev.logprobs.begin(), ev.logprobs.end());
    if (j.cb.on_event) j.cb.on_event(ev);
  }

  // Ends the slot's job with `reason`; the slot keeps its KV cache for reuse.
  void finish(Slot& s, FinishReason reason) {
    std::unique_ptr<Job> job = std::move(s.job);
    s.last_used = ++use_counter_;
    --active_;
    busy_.store(static_cast<int32_t>(active_), std::memory_order_relaxed);
    if (reason != FinishReason::error) emit(*job, job->text->finish(), /*last=*/true);
    if (job->calls) {
      job->result.tool_calls = job->calls->calls();
      if (reason == FinishReason::stop && job->calls->calls_complete()) reason = FinishReason::tool_calls;
    }
    complete(*job, reason, &s);
  }

  void complete(Job& j, FinishReason reason, const Slot* slot) {
    const auto now = clock_.now();
    auto& r = j.result;
    r.id = j.id;
    r.finish = reason;
    r.usage.prompt_tokens = static_cast<int32_t>(j.prompt.size());
    r.usage.completion_tokens = j.n_generated;
    if (slot) {
      r.timings.queued_ms = to_millis(j.started - j.submitted);
      const auto first = j.n_generated > 0 ? j.first_token : now;
      r.timings.prompt_ms = to_millis(first - j.started);
      r.timings.decode_ms = j.n_generated > 0 ? to_millis(now - j.first_token) : 0.0;
    } else {
      r.timings.queued_ms = to_millis(now - j.submitted);
    }
    {
      std::lock_guard lock(mu_);
      live_.erase(j.id);
    }
    spdlog::debug("engine_request_done id={} finish={} prompt_tokens={} cached={} completion_tokens={} "
                  "prompt_ms={:.1f} decode_ms={:.1f}",
                  j.id, finish_reason_name(reason), r.usage.prompt_tokens, r.usage.cached_prompt_tokens,
                  r.usage.completion_tokens, r.timings.prompt_ms, r.timings.decode_ms);
    if (j.cb.on_done) j.cb.on_done(std::move(r));
  }

  ModelPtr model_;
  std::unique_ptr<ChatFormat> chat_;
  static constexpr size_t kGrammarCacheSize = 64;
  mutable std::mutex grammar_mu_;
  mutable std::map<std::string, SamplerPtr> grammars_;  // compiled grammars by (prefill, grammar)
  ModelInfo info_;
  ContextPtr ctx_;
  const llama_vocab* vocab_;
  Clock& clock_;
  const int32_t n_vocab_;
  const int32_t n_ctx_slot_;
  const int32_t batch_budget_;
  const int32_t max_queue_;
  std::vector<llama_token> eog_tokens_;

  // Engine-thread state.
  llama_batch batch_;
  std::vector<Slot> slots_;
  size_t active_ = 0;  // written on the engine thread, read under mu_ by it only
  size_t prefill_cursor_ = 0;
  uint64_t use_counter_ = 0;

  // Shared with submitters.
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Job>> queue_;
  std::unordered_set<RequestId> cancels_;
  std::unordered_set<RequestId> live_;
  RequestId next_id_ = 0;
  bool stopping_ = false;

  std::atomic<int32_t> busy_{0};
  std::atomic<int32_t> queued_{0};
  std::atomic<uint64_t> decode_steps_{0};
  std::atomic<uint64_t> tokens_generated_{0};
  std::atomic<uint64_t> prompt_processed_{0};
  std::atomic<uint64_t> prompt_reused_{0};

  std::thread thread_;
};

}  // namespace

void route_llama_logs() {
  static std::once_flag once;
  std::call_once(once, [] { llama_log_set(llama_log_to_spdlog, nullptr); });
}

Result<ModelInfo> read_model_info(const std::filesystem::path& path,
                                  const std::function<void(uint64_t, uint64_t)>& hash_progress) {
  auto loaded = load_model(path, hash_progress);
  if (!loaded) return loaded.error();
  return std::move(loaded->info);
}

Result<std::unique_ptr<Engine>> open_llama_engine(const EngineOptions& opts) {
  if (opts.slots < 1 || opts.slots > 256) return make_error(Errc::invalid_argument, "slots must be 1..256");
  if (opts.batch < 1) return make_error(Errc::invalid_argument, "batch must be at least 1");
  if (opts.ctx_per_slot < 0) return make_error(Errc::invalid_argument, "ctx_per_slot must not be negative");
  auto loaded = load_model(opts.model_path, opts.hash_progress);
  if (!loaded) return loaded.error();
  const int32_t per_slot =
      opts.ctx_per_slot > 0 ? opts.ctx_per_slot : std::min(loaded->info.context_length, 4096);
  const int32_t threads =
      opts.threads > 0 ? opts.threads : static_cast<int32_t>(std::max(1u, std::thread::hardware_concurrency()));

  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = static_cast<uint32_t>(per_slot) * static_cast<uint32_t>(opts.slots);
  cp.n_seq_max = static_cast<uint32_t>(opts.slots);
  cp.n_batch = static_cast<uint32_t>(opts.batch + opts.slots);
  cp.n_ubatch = cp.n_batch;
  cp.n_outputs_max = static_cast<uint32_t>(opts.slots);  // one row of logits per slot per step
  cp.n_threads = threads;
  cp.n_threads_batch = threads;
  cp.kv_unified = false;  // one KV stream per slot: results do not depend on the neighbours
  cp.no_perf = true;
  ContextPtr ctx(llama_init_from_model(loaded->model.get(), cp));
  if (!ctx) return make_error(Errc::internal, "llama.cpp could not create a context (out of memory?)");
  Clock& clock = opts.clock ? *opts.clock : SystemClock::instance();
  spdlog::info("engine_ready model={} quant={} slots={} ctx_per_slot={} threads={}",
               logfmt_value(loaded->info.name), loaded->info.quantization, opts.slots,
               llama_n_ctx_seq(ctx.get()), threads);
  auto chat = ChatFormat::create(loaded->model.get(), {}, opts.template_date);
  if (!chat) return chat.error();
  return std::unique_ptr<Engine>(new LlamaEngine(std::move(*loaded), std::move(ctx), std::move(*chat), opts, clock));
}

}  // namespace agora::engine
