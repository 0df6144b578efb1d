#include "engine/fake_engine.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <functional>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/log.h"
#include "common/utf8.h"
#include "crypto/sha256.h"
#include "engine/text_stream.h"

namespace agora::engine {
namespace {

constexpr int64_t kMaxSlots = 1 << 16;
constexpr int64_t kMaxCtx = int64_t{1} << 24;  // output token ids stay below kFakeAltIdBase
constexpr int64_t kMaxQueue = int64_t{1} << 24;
constexpr int64_t kMaxDelayUs = int64_t{24} * 3600 * 1000 * 1000;  // one day
constexpr size_t kMaxTextBytes = 256;
constexpr size_t kBytesPerToken = 4;
constexpr std::string_view kAssistantOpen = "<|assistant|>";

Error invalid(std::string_view what, std::string_view problem) {
  return make_error(Errc::invalid_argument, "'" + std::string(what) + "' " + std::string(problem));
}

Status check_range(std::string_view what, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) {
    return invalid(what, "must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                             " (got " + std::to_string(v) + ")");
  }
  return ok_status();
}

Status check_text(std::string_view what, std::string_view v) {
  if (v.empty()) return invalid(what, "must not be empty");
  if (v.size() > kMaxTextBytes) {
    return invalid(what, "must be at most " + std::to_string(kMaxTextBytes) + " bytes");
  }
  if (!is_valid_utf8(v)) return invalid(what, "must be valid UTF-8");
  return ok_status();
}

// Bytes of the rendered chat template ("<|role|>content\n"... "<|assistant|>"),
// without rendering it.
size_t chat_bytes(const std::vector<ChatMessage>& messages) {
  size_t n = kAssistantOpen.size();
  for (const auto& m : messages) n += 2 + m.role.size() + 2 + m.content.size() + 1;
  return n;
}

size_t tokens_for_bytes(size_t bytes) {
  return (bytes + kBytesPerToken - 1) / kBytesPerToken;
}

// FNV-1a of a prompt chunk, folded into [kFakePromptIdBase, INT32_MAX].
TokenId chunk_id(std::string_view chunk) {
  uint32_t h = 2166136261u;
  for (char c : chunk) {
    h ^= static_cast<uint8_t>(c);
    h *= 16777619u;
  }
  constexpr uint32_t kSpan =
      static_cast<uint32_t>(std::numeric_limits<int32_t>::max() - kFakePromptIdBase) + 1u;
  return kFakePromptIdBase + static_cast<TokenId>(h % kSpan);
}

std::string alt_text(const std::string& token_text, int32_t j) {
  return token_text + std::to_string(j);
}

struct Job {
  RequestId id = 0;
  GenerationCallbacks cb;
  bool logprobs = false;
  int32_t top_logprobs = 0;
  int32_t prompt_tokens = 0;
  int32_t target = 0;                         // tokens this request will get
  FinishReason natural = FinishReason::stop;  // how it ends after `target` tokens
  Clock::TimePoint submitted{}, started{}, first_token{}, due{};
  int32_t n_generated = 0;
  TokenTextStream text;
  std::vector<ToolCallDelta> script;  // with tool calls: one fragment per token
  Completion result;
  std::atomic<bool> cancel_requested{false};  // written under mu_, read anywhere

  explicit Job(std::vector<std::string> stops) : text(std::move(stops)) {}
};

class FakeEngine final : public Engine {
 public:
  explicit FakeEngine(FakeEngineOptions opts)
      : opts_(std::move(opts)),
        clock_(opts_.clock ? *opts_.clock : SystemClock::instance()),
        exact_waits_(&clock_ == &SystemClock::instance()) {
    info_.name = opts_.name;
    info_.architecture = "fake";
    info_.description = "fake engine (no model)";
    info_.quantization = "none";
    info_.context_length = opts_.ctx_per_slot;
    info_.sha256 = crypto::sha256_hex("fake:" + opts_.name);
    active_.reserve(static_cast<size_t>(opts_.slots));
    spdlog::info("engine_ready model={} engine=fake slots={} ctx_per_slot={} tokens={}",
                 logfmt_value(info_.name), opts_.slots, opts_.ctx_per_slot, opts_.tokens);
    thread_ = std::thread([this] { run(); });
  }

  ~FakeEngine() override {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  FakeEngine(const FakeEngine&) = delete;
  FakeEngine& operator=(const FakeEngine&) = delete;

  const ModelInfo& model_info() const override { return info_; }

  Result<std::string> apply_chat_template(const std::vector<ChatMessage>& messages) const override {
    if (messages.empty()) return make_error(Errc::invalid_argument, "'messages' must not be empty");
    std::string out;
    out.reserve(chat_bytes(messages));
    for (const auto& m : messages) {
      if (m.role != "system" && m.role != "user" && m.role != "assistant" && m.role != "tool") {
        return make_error(Errc::invalid_argument, "unknown role '" + m.role + "'");
      }
      out += "<|";
      out += m.role;
      out += "|>";
      out += m.content;
      out += '\n';
    }
    out += kAssistantOpen;
    return out;
  }

  Result<RequestId> submit(GenerationRequest request, GenerationCallbacks callbacks) override {
    if (auto st = validate_request(request); !st) return st.error();
    const size_t bytes = request.prompt ? request.prompt->size() : chat_bytes(request.messages);
    if (bytes == 0) return make_error(Errc::invalid_argument, "the prompt is empty");
    const size_t n_prompt = tokens_for_bytes(bytes);
    const auto ctx = static_cast<size_t>(opts_.ctx_per_slot);
    if (n_prompt >= ctx) {
      return make_error(Errc::too_large, "the prompt is " + std::to_string(n_prompt) +
                                             " tokens; this model's context per request is " +
                                             std::to_string(ctx) + " tokens");
    }
    auto job = std::make_unique<Job>(std::move(request.stop));
    job->cb = std::move(callbacks);
    job->logprobs = request.logprobs;
    job->top_logprobs = request.top_logprobs;
    job->prompt_tokens = static_cast<int32_t>(n_prompt);
    const int32_t budget = std::min(request.max_tokens, opts_.ctx_per_slot - job->prompt_tokens);
    job->script = call_script(request);
    if (!job->script.empty()) {
      const auto n = static_cast<int32_t>(job->script.size());
      job->target = std::min(n, budget);
      job->natural = n <= budget ? FinishReason::tool_calls : FinishReason::length;
    } else if (request.ignore_eos || opts_.tokens > budget) {
      job->target = budget;
      job->natural = FinishReason::length;
    } else {
      job->target = opts_.tokens;
      job->natural = FinishReason::stop;
    }
    job->submitted = clock_.now();
    RequestId id = 0;
    {
      std::lock_guard lock(mu_);
      if (stopping_) return make_error(Errc::unavailable, "the engine is shutting down");
      if (queue_.size() >= static_cast<size_t>(opts_.max_queue)) {
        return make_error(Errc::unavailable, "too many requests are waiting for this model");
      }
      id = job->id = ++next_id_;
      live_.emplace(id, job.get());
      queue_.push_back(std::move(job));
      queued_.store(static_cast<int32_t>(queue_.size()), std::memory_order_relaxed);
    }
    cv_.notify_one();
    return id;
  }

  bool cancel(RequestId id) override {
    {
      std::lock_guard lock(mu_);
      auto it = live_.find(id);
      if (it == live_.end()) return false;
      it->second->cancel_requested.store(true);
      cancel_pending_ = true;
    }
    cv_.notify_one();
    return true;
  }

  ChatCapabilities chat_capabilities() const override {
    return ChatCapabilities{opts_.tool_calls > 0, opts_.tool_calls > 1, false};
  }

  EngineStats stats() const override {
    EngineStats s;
    s.slots_total = opts_.slots;
    s.ctx_per_slot = opts_.ctx_per_slot;
    s.slots_busy = busy_.load(std::memory_order_relaxed);
    s.queued = queued_.load(std::memory_order_relaxed);
    s.decode_steps = decode_steps_.load(std::memory_order_relaxed);
    s.tokens_generated = tokens_generated_.load(std::memory_order_relaxed);
    s.prompt_tokens_processed = prompt_processed_.load(std::memory_order_relaxed);
    s.prompt_tokens_reused = 0;
    return s;
  }

  std::vector<TokenId> tokenize(std::string_view text, bool /*parse_special*/) const override {
    std::vector<TokenId> out;
    out.reserve(tokens_for_bytes(text.size()));
    for (size_t at = 0; at < text.size(); at += kBytesPerToken) {
      out.push_back(chunk_id(text.substr(at, kBytesPerToken)));
    }
    return out;
  }

  std::string token_bytes(TokenId token) const override {
    if (token >= 0 && token < kFakeAltIdBase) return opts_.token_text;
    if (token > kFakeAltIdBase && token < kFakeAltIdBase + kMaxTopLogprobs) {
      return alt_text(opts_.token_text, token - kFakeAltIdBase);
    }
    return {};
  }

 private:
  // The fragments of the calls a request gets (empty: it gets text).
  std::vector<ToolCallDelta> call_script(const GenerationRequest& r) {
    std::vector<ToolCallDelta> out;
    if (opts_.tool_calls == 0 || r.tools.empty() || r.tool_choice.mode == ToolChoiceMode::none) return out;
    const int32_t n = r.parallel_tool_calls ? opts_.tool_calls : 1;
    const uint64_t req = call_requests_.fetch_add(1, std::memory_order_relaxed);
    for (int32_t j = 0; j < n; ++j) {
      const std::string& name = r.tool_choice.mode == ToolChoiceMode::named
                                    ? r.tool_choice.name
                                    : r.tools[static_cast<size_t>(j) % r.tools.size()].name;
      const std::string id = "call_fake_" + std::to_string(req) + "_" + std::to_string(j);
      out.push_back({j, id, name, ""});
      out.push_back({j, "", "", "{\"n\":"});
      out.push_back({j, "", "", std::to_string(j) + "}"});
    }
    return out;
  }

  // ---- the engine thread

  void run() {
    for (;;) {
      std::vector<std::unique_ptr<Job>> dropped;  // leave the queue without running
      bool stopping = false;
      {
        std::unique_lock lock(mu_);
        wait_for_work(lock);
        stopping = stopping_;
        if (stopping || cancel_pending_) {
          cancel_pending_ = false;
          for (auto it = queue_.begin(); it != queue_.end();) {
            if (stopping || (*it)->cancel_requested.load()) {
              dropped.push_back(std::move(*it));
              it = queue_.erase(it);
            } else {
              ++it;
            }
          }
        }
        if (!stopping) admit();
        queued_.store(static_cast<int32_t>(queue_.size()), std::memory_order_relaxed);
      }
      for (auto& job : dropped) complete(*job, FinishReason::cancelled, false);
      if (stopping) {
        for (auto& job : active_) finish(*job, FinishReason::cancelled);
        active_.clear();
        return;
      }
      step();
    }
  }

  // Returns (with mu_ held) once there is something to do: stop, a cancel, a
  // queued request and a free slot, or a running request's token is due.
  void wait_for_work(std::unique_lock<std::mutex>& lock) {
    for (;;) {
      if (stopping_ || cancel_pending_) return;
      if (!queue_.empty() && active_.size() < static_cast<size_t>(opts_.slots)) return;
      if (active_.empty()) {
        cv_.wait(lock);
        continue;
      }
      Clock::TimePoint next = Clock::TimePoint::max();
      for (const auto& j : active_) next = std::min(next, j->due);
      const Clock::TimePoint now = clock_.now();
      if (next <= now) return;
      if (exact_waits_) {
        cv_.wait_until(lock, next);  // the system clock is steady_clock
      } else {
        cv_.wait_for(lock, std::min<Clock::Duration>(next - now, kFakeClockPoll));
      }
    }
  }

  // Moves queued requests into free slots. Called with mu_ held.
  void admit() {
    if (queue_.empty() || active_.size() >= static_cast<size_t>(opts_.slots)) return;
    const Clock::TimePoint now = clock_.now();
    while (!queue_.empty() && active_.size() < static_cast<size_t>(opts_.slots)) {
      std::unique_ptr<Job> job = std::move(queue_.front());
      queue_.pop_front();
      job->started = now;
      job->due = now + opts_.first_token_delay;
      prompt_processed_.fetch_add(static_cast<uint64_t>(job->prompt_tokens),
                                  std::memory_order_relaxed);
      busy_.fetch_add(1, std::memory_order_relaxed);
      active_.push_back(std::move(job));
    }
  }

  // One step: cancelled requests finish; every request whose token is due
  // gets one token, in slot order.
  void step() {
    const Clock::TimePoint now = clock_.now();
    bool emitted = false;
    size_t kept = 0;
    for (size_t i = 0; i < active_.size(); ++i) {
      Job& j = *active_[i];
      bool done = false;
      if (j.cancel_requested.load()) {
        finish(j, FinishReason::cancelled);
        done = true;
      } else if (j.due <= now) {
        done = advance(j, now, emitted);
      }
      if (done) {
        active_[i].reset();
      } else if (kept != i) {
        active_[kept++] = std::move(active_[i]);
      } else {
        ++kept;
      }
    }
    active_.resize(kept);
  }

  // Finishes `j` if it has no more tokens to give; true when it did.
  bool maybe_end(Job& j) {
    if (j.n_generated >= j.target) {
      finish(j, j.natural);
      return true;
    }
    if (opts_.fail_after_tokens && j.n_generated >= *opts_.fail_after_tokens) {
      j.result.error = make_error(Errc::internal, "fake engine: injected failure");
      finish(j, FinishReason::error);
      return true;
    }
    return false;
  }

  // `j`'s token is due: emits it (or ends the request). True when finished.
  bool advance(Job& j, Clock::TimePoint now, bool& emitted) {
    if (maybe_end(j)) return true;
    const TokenId k = j.n_generated;
    if (k == 0) j.first_token = now;
    ++j.n_generated;
    tokens_generated_.fetch_add(1, std::memory_order_relaxed);
    if (!emitted) decode_steps_.fetch_add(1, std::memory_order_relaxed);  // before any callback sees it
    emitted = true;
    if (!j.script.empty()) {
      const ToolCallDelta& d = j.script[static_cast<size_t>(k)];
      if (d.index == static_cast<int32_t>(j.result.tool_calls.size())) j.result.tool_calls.push_back({d.id, d.name, ""});
      j.result.tool_calls.back().arguments += d.arguments;
      StreamEvent ev;
      ev.tool_calls.push_back(d);
      if (j.cb.on_event) j.cb.on_event(ev);
      if (maybe_end(j)) return true;
      j.due += opts_.token_interval;
      return false;
    }
    TokenLogprob lp;
    if (j.logprobs) lp = make_logprob(k, j.top_logprobs);
    bool stopped = false;
    emit(j, j.text.push(opts_.token_text, std::move(lp), j.logprobs, stopped));
    if (stopped) {
      finish(j, FinishReason::stop);
      return true;
    }
    if (maybe_end(j)) return true;
    j.due += opts_.token_interval;
    return false;
  }

  TokenLogprob make_logprob(TokenId k, int32_t top_n) const {
    TokenLogprob lp{k, opts_.token_text, kFakeLogprob, {}};
    lp.top.reserve(static_cast<size_t>(top_n));
    for (int32_t j = 0; j < top_n; ++j) {
      if (j == 0) {
        lp.top.push_back({k, opts_.token_text, kFakeLogprob});
      } else {
        lp.top.push_back(
            {kFakeAltIdBase + j, alt_text(opts_.token_text, j), -static_cast<float>(j + 2)});
      }
    }
    return lp;
  }

  void emit(Job& j, StreamEvent ev) {
    if (ev.text.empty() && ev.logprobs.empty()) return;
    j.result.text += ev.text;
    if (j.logprobs)
      j.result.logprobs.insert(j.result.logprobs.end(), ev.logprobs.begin(), ev.logprobs.end());
    if (j.cb.on_event) j.cb.on_event(ev);
  }

  // Ends a running request: frees its slot, releases held-back text (unless
  // it failed) and reports.
  void finish(Job& j, FinishReason reason) {
    busy_.fetch_sub(1, std::memory_order_relaxed);
    if (reason != FinishReason::error) emit(j, j.text.finish());
    complete(j, reason, true);
  }

  void complete(Job& j, FinishReason reason, bool ran) {
    bool cancelled = false;
    {
      std::lock_guard lock(mu_);
      live_.erase(j.id);
      cancelled = j.cancel_requested.load();
    }
    if (cancelled) {  // cancel() said true: the caller is told `cancelled`
      reason = FinishReason::cancelled;
      j.result.error.reset();
    }
    const Clock::TimePoint now = clock_.now();
    Completion& r = j.result;
    r.id = j.id;
    r.finish = reason;
    r.usage.prompt_tokens = j.prompt_tokens;
    r.usage.completion_tokens = j.n_generated;
    r.usage.cached_prompt_tokens = 0;
    if (ran) {
      r.timings.queued_ms = to_millis(j.started - j.submitted);
      const Clock::TimePoint first = j.n_generated > 0 ? j.first_token : now;
      r.timings.prompt_ms = to_millis(first - j.started);
      r.timings.decode_ms = j.n_generated > 0 ? to_millis(now - j.first_token) : 0.0;
    } else {
      r.timings.queued_ms = to_millis(now - j.submitted);
    }
    if (j.cb.on_done) j.cb.on_done(std::move(r));
  }

  const FakeEngineOptions opts_;
  Clock& clock_;
  const bool exact_waits_;  // clock_ is the system clock: wait on its deadlines directly
  ModelInfo info_;

  // Engine-thread state: running requests in the order they got their slots.
  std::vector<std::unique_ptr<Job>> active_;

  // Shared with submitters.
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Job>> queue_;
  std::unordered_map<RequestId, Job*> live_;  // queued or running; owned by queue_ or active_
  RequestId next_id_ = 0;
  bool stopping_ = false;
  bool cancel_pending_ = false;

  std::atomic<int32_t> busy_{0};
  std::atomic<int32_t> queued_{0};
  std::atomic<uint64_t> decode_steps_{0};
  std::atomic<uint64_t> tokens_generated_{0};
  std::atomic<uint64_t> prompt_processed_{0};
  std::atomic<uint64_t> call_requests_{0};

  std::thread thread_;  // last: starts after everything it uses exists
};

// ---------------------------------------------------------------- the spec

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

Result<int64_t> parse_whole(std::string_view key, std::string_view value, int64_t lo, int64_t hi) {
  int64_t v = 0;
  const char* end = value.data() + value.size();
  auto [ptr, ec] = std::from_chars(value.data(), end, v);
  if (value.empty() || ec != std::errc{} || ptr != end) {
    return invalid(key, "must be a whole number (got '" + std::string(value) + "')");
  }
  if (auto st = check_range(key, v, lo, hi); !st) return st.error();
  return v;
}

}  // namespace

Status validate_fake_engine_options(const FakeEngineOptions& o) {
  if (auto st = check_text("name", o.name); !st) return st;
  if (auto st = check_range("slots", o.slots, 1, kMaxSlots); !st) return st;
  if (auto st = check_range("ctx_per_slot", o.ctx_per_slot, 2, kMaxCtx); !st) return st;
  if (auto st = check_range("max_queue", o.max_queue, 1, kMaxQueue); !st) return st;
  if (auto st = check_range("tokens", o.tokens, 0, kMaxCtx); !st) return st;
  if (auto st = check_range("token_interval", o.token_interval.count(), 0, kMaxDelayUs); !st)
    return st;
  if (auto st = check_range("first_token_delay", o.first_token_delay.count(), 0, kMaxDelayUs);
      !st) {
    return st;
  }
  if (auto st = check_text("token_text", o.token_text); !st) return st;
  if (o.fail_after_tokens) {
    if (auto st = check_range("fail_after_tokens", *o.fail_after_tokens, 0, kMaxCtx); !st)
      return st;
  }
  if (auto st = check_range("tool_calls", o.tool_calls, 0, 128); !st) return st;
  return ok_status();
}

std::unique_ptr<Engine> make_fake_engine(FakeEngineOptions options) {
  if (auto st = validate_fake_engine_options(options); !st) {
    throw std::invalid_argument("fake engine: " + st.error().message);
  }
  return std::make_unique<FakeEngine>(std::move(options));
}

Result<FakeEngineOptions> parse_fake_engine_spec(std::string_view spec) {
  FakeEngineOptions o;
  using Setter = std::function<Status(std::string_view key, std::string_view value)>;
  auto whole = [](int64_t lo, int64_t hi, std::function<void(int64_t)> set) -> Setter {
    return [lo, hi, set = std::move(set)](std::string_view key, std::string_view value) -> Status {
      auto v = parse_whole(key, value, lo, hi);
      if (!v) return v.error();
      set(*v);
      return ok_status();
    };
  };
  auto text = [](std::string* field) -> Setter {
    return [field](std::string_view key, std::string_view value) -> Status {
      if (auto st = check_text(key, value); !st) return st;
      *field = std::string(value);
      return ok_status();
    };
  };
  const std::vector<std::pair<std::string_view, Setter>> keys = {
      {"name", text(&o.name)},
      {"slots", whole(1, kMaxSlots, [&o](int64_t v) { o.slots = static_cast<int32_t>(v); })},
      {"ctx-per-slot",
       whole(2, kMaxCtx, [&o](int64_t v) { o.ctx_per_slot = static_cast<int32_t>(v); })},
      {"max-queue",
       whole(1, kMaxQueue, [&o](int64_t v) { o.max_queue = static_cast<int32_t>(v); })},
      {"tokens", whole(0, kMaxCtx, [&o](int64_t v) { o.tokens = static_cast<int32_t>(v); })},
      {"token-interval-us",
       whole(0, kMaxDelayUs, [&o](int64_t v) { o.token_interval = std::chrono::microseconds(v); })},
      {"first-token-us",
       whole(0, kMaxDelayUs,
             [&o](int64_t v) { o.first_token_delay = std::chrono::microseconds(v); })},
      {"token-text", text(&o.token_text)},
      {"fail-after-tokens",
       whole(0, kMaxCtx, [&o](int64_t v) { o.fail_after_tokens = static_cast<int32_t>(v); })},
      {"tool-calls", whole(0, 128, [&o](int64_t v) { o.tool_calls = static_cast<int32_t>(v); })},
  };
  std::vector<std::string_view> seen;
  if (spec.empty()) return o;
  for (size_t pos = 0;;) {
    const size_t comma = spec.find(',', pos);
    const std::string_view item = spec.substr(pos, comma - pos);  // to the end when npos
    pos = comma == std::string_view::npos ? spec.size() : comma + 1;
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      return make_error(Errc::invalid_argument,
                        "fake engine spec: expected key=value, got '" + std::string(item) + "'");
    }
    const std::string_view key = trim(item.substr(0, eq));
    const std::string_view value = item.substr(eq + 1);
    auto it =
        std::find_if(keys.begin(), keys.end(), [key](const auto& k) { return k.first == key; });
    if (it == keys.end()) {
      std::string known;
      for (const auto& k : keys) known += (known.empty() ? "" : ", ") + std::string(k.first);
      return make_error(Errc::invalid_argument, "fake engine spec: unknown key '" +
                                                    std::string(key) + "' (known: " + known + ")");
    }
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
      return make_error(Errc::invalid_argument,
                        "fake engine spec: '" + std::string(key) + "' is given twice");
    }
    seen.push_back(key);
    if (auto st = it->second(key, value); !st) {
      return make_error(Errc::invalid_argument, "fake engine spec: " + st.error().message);
    }
    if (comma == std::string_view::npos) break;
  }
  if (auto st = validate_fake_engine_options(o); !st) return st.error();
  return o;
}

}  // namespace agora::engine
