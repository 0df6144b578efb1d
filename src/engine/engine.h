// Engine: the seam between Agora and an inference backend. The real one is
// LlamaEngine (llama.cpp, llama_engine.h); tests add fakes. An Engine serves
// one model to many concurrent requests.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/generation_rules.h"
#include "common/result.h"

namespace agora::engine {

using TokenId = int32_t;
using RequestId = uint64_t;

// What `agora model info` shows and what the gateway advertises.
struct ModelInfo {
  std::string path;
  std::string name;          // general.name
  std::string architecture;  // general.architecture, e.g. "llama"
  std::string description;   // llama.cpp's one-line description
  std::string quantization;  // e.g. "Q4_K_M", "Q8_0", "F16"
  uint64_t parameters = 0;
  uint64_t file_bytes = 0;
  int32_t context_length = 0;  // trained context
  int32_t n_layer = 0;
  int32_t n_embd = 0;
  int32_t n_head = 0;
  int32_t n_head_kv = 0;
  int32_t n_ff = 0;
  int32_t n_vocab = 0;
  bool tied_embeddings = false;  // no separate output.weight
  // Weight bytes one decode step reads: every tensor, except that of the
  // token embedding only one row is read unless it doubles as the output
  // layer (tied). The numerator of the memory-bandwidth roofline.
  uint64_t weight_bytes_per_token = 0;
  std::string chat_template;     // the model's own (Jinja) template; may be empty
  std::string sha256;            // of the whole file, lower-case hex
};

// A call the assistant made (OpenAI's message.tool_calls[i]).
struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments;  // JSON text, as the model wrote it
};

struct ChatMessage {
  std::string role;  // "system" | "user" | "assistant" | "tool"
  std::string content;
  std::vector<ToolCall> tool_calls = {};  // assistant messages
  std::string tool_call_id = {};          // tool messages: the call answered
};

// A function the model may call: its JSON Schema travels as text.
struct ToolDef {
  std::string name;
  std::string description;
  std::string parameters;  // JSON Schema text; empty: takes no arguments
  bool strict = false;
};

enum class ToolChoiceMode { automatic, none, required, named };
struct ToolChoice {
  ToolChoiceMode mode = ToolChoiceMode::automatic;
  std::string name;  // ToolChoiceMode::named
};

// OpenAI's response_format: free text, any JSON object, or JSON that
// validates against `schema` (grammar-constrained either way).
struct ResponseFormat {
  enum class Type { text, json_object, json_schema };
  Type type = Type::text;
  std::string name;
  std::string schema;  // JSON Schema text (json_schema)
  bool strict = false;
};

// OpenAI-style sampling parameters. Defaults are OpenAI's.
struct SamplingParams {
  float temperature = 1.0f;        // [0, 2]; 0 = greedy
  float top_p = 1.0f;              // (0, 1]
  int32_t top_k = 0;               // >= 0; 0 = off
  float min_p = 0.0f;              // [0, 1]
  std::optional<uint32_t> seed;    // same seed + same request => same output
  float presence_penalty = 0.0f;   // [-2, 2]
  float frequency_penalty = 0.0f;  // [-2, 2]
  std::vector<std::pair<TokenId, float>> logit_bias;  // bias in [-100, 100]
};

struct GenerationRequest {
  // Either chat messages (formatted with the model's own chat template) or a
  // raw prompt (tokenised as is, BOS added). Exactly one must be set.
  std::vector<ChatMessage> messages;
  std::optional<std::string> prompt;

  SamplingParams sampling;
  int32_t max_tokens = 256;        // >= 1; generation also ends at the slot's context
  std::vector<std::string> stop;   // up to kMaxStopSequences, non-empty, valid UTF-8
  bool logprobs = false;
  int32_t top_logprobs = 0;        // [0, 20]; needs logprobs
  bool ignore_eos = false;         // benchmarks only: never stop at end-of-generation tokens

  // Function calling and structured outputs (chat messages only).
  std::vector<ToolDef> tools = {};
  ToolChoice tool_choice = {};
  bool parallel_tool_calls = true;
  ResponseFormat response_format = {};
};

using agora::kMaxStopSequences;
using agora::kMaxTopLogprobs;

struct TopLogprob {
  TokenId token = 0;
  std::string text;  // raw bytes of the token (may be part of a character)
  float logprob = 0;
};

struct TokenLogprob {
  TokenId token = 0;
  std::string text;
  float logprob = 0;               // log-softmax of the model's raw logits
  std::vector<TopLogprob> top;     // top_logprobs alternatives, most likely first
};

// One streamed step. `text` is always complete, valid UTF-8 (possibly empty
// when only logprobs are released); concatenating every event's text gives
// Completion::text exactly.
// A streamed piece of tool call `index`, as OpenAI streams them: the first
// piece of a call carries its id and name, later ones argument fragments.
struct ToolCallDelta {
  int32_t index = 0;
  std::string id;
  std::string name;
  std::string arguments;
};

struct StreamEvent {
  std::string text;  // content (with tools: the part that is not a call)
  std::vector<TokenLogprob> logprobs;  // tokens whose text is now released
  std::vector<ToolCallDelta> tool_calls = {};
};

enum class FinishReason { stop, length, cancelled, error, tool_calls };
const char* finish_reason_name(FinishReason r);

struct Usage {
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int32_t cached_prompt_tokens = 0;  // prompt tokens reused from the slot's KV cache
};

struct Timings {
  double queued_ms = 0;   // submit -> slot assigned
  double prompt_ms = 0;   // slot assigned -> first token sampled
  double decode_ms = 0;   // first token -> finish
};

struct Completion {
  RequestId id = 0;
  FinishReason finish = FinishReason::stop;
  std::string text;
  std::vector<TokenLogprob> logprobs;  // when requested
  std::vector<ToolCall> tool_calls = {};  // finish == tool_calls
  Usage usage;
  Timings timings;
  std::optional<Error> error;  // set when finish == error
};

// Callbacks run on the engine's thread, in order: zero or more on_event, then
// exactly one on_done. They must return quickly (queue work elsewhere) and may
// call Engine::cancel().
struct GenerationCallbacks {
  std::function<void(const StreamEvent&)> on_event;
  std::function<void(Completion)> on_done;
};

// What a model's chat template supports, announced per model.
struct ChatCapabilities {
  bool tools = false;                // renders tool definitions and calls
  bool parallel_tool_calls = false;  // ... several calls in one turn
  bool grammar = false;              // grammar-constrained decoding (structured outputs)
};

struct EngineStats {
  int32_t slots_total = 0;
  int32_t ctx_per_slot = 0;  // tokens of context each request can use (prompt + output)
  int32_t slots_busy = 0;
  int32_t queued = 0;
  uint64_t decode_steps = 0;
  uint64_t tokens_generated = 0;
  uint64_t prompt_tokens_processed = 0;
  uint64_t prompt_tokens_reused = 0;
};

class Engine {
 public:
  virtual ~Engine() = default;

  virtual const ModelInfo& model_info() const = 0;

  // Formats chat messages with the model's chat template, ending with the
  // assistant's turn opened. Errors: invalid_argument (unknown role, no
  // messages), unsupported (template not recognised). Thread-safe.
  virtual Result<std::string> apply_chat_template(const std::vector<ChatMessage>& messages) const = 0;

  // Validates `request`, tokenises it and queues it; the callbacks then report
  // progress on the engine thread. Errors (nothing queued, no callback runs):
  // invalid_argument (bad parameters; the message names the parameter),
  // too_large (prompt does not fit the slot's context), unavailable (queue
  // full). Thread-safe.
  virtual Result<RequestId> submit(GenerationRequest request, GenerationCallbacks callbacks) = 0;

  // Cancels a queued or running request: it finishes with `cancelled` before
  // the next decode step, and its slot is free for the next request. Returns
  // false when the id is unknown or already finished. Thread-safe, and may be
  // called from a callback.
  virtual bool cancel(RequestId id) = 0;

  virtual EngineStats stats() const = 0;

  virtual ChatCapabilities chat_capabilities() const = 0;

  // Tokenises text as a raw prompt would be (no BOS; special-token markup is
  // plain text unless `parse_special`). Thread-safe.
  virtual std::vector<TokenId> tokenize(std::string_view text, bool parse_special) const = 0;

  // The raw bytes a token stands for (may be part of a UTF-8 character);
  // empty for ids outside the vocabulary. Thread-safe.
  virtual std::string token_bytes(TokenId token) const = 0;
};

// Checks a request's parameters without a model (the engine adds the checks
// that need one: token ids, prompt length). The message names the parameter.
Status validate_request(const GenerationRequest& request);

// Runs one request to completion on the calling thread's behalf, forwarding
// stream events to `on_event` (from the engine thread). Blocks until done.
Result<Completion> generate(Engine& engine, GenerationRequest request,
                            std::function<void(const StreamEvent&)> on_event = {});

}  // namespace agora::engine
