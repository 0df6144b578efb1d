// The value types the gateway↔node protocol carries: a generation request
// and what comes back (logprobs, finish reason, usage, timings). They are
// the wire's own, not the engine's (engine/engine.h): the node converts at
// its edge (node/wire_convert.h), so a change to the engine never silently
// changes the protocol, and nothing that speaks the protocol links the
// engine. Both obey the same request rules (common/generation_rules.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/generation_rules.h"
#include "common/result.h"

namespace agora::protocol {

using TokenId = int32_t;

struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments;  // JSON text
};

struct ChatMessage {
  std::string role;  // "system" | "user" | "assistant" | "tool"
  std::string content;
  std::vector<ToolCall> tool_calls = {};  // assistant messages
  std::string tool_call_id = {};          // tool messages
};

// A function the model may call; the schema travels as JSON text, so the
// frame's depth limit never refuses a deep schema.
struct ToolDef {
  std::string name;
  std::string description;
  std::string parameters;  // JSON Schema text; empty: no arguments
  bool strict = false;
};

enum class ToolChoiceMode { automatic, none, required, named };
struct ToolChoice {
  ToolChoiceMode mode = ToolChoiceMode::automatic;
  std::string name;
};

struct ResponseFormat {
  enum class Type { text, json_object, json_schema };
  Type type = Type::text;
  std::string name;
  std::string schema;  // JSON Schema text
  bool strict = false;
};

// OpenAI-style sampling parameters. Defaults are OpenAI's.
struct SamplingParams {
  float temperature = 1.0f;        // [0, 2]; 0 = greedy
  float top_p = 1.0f;              // (0, 1]
  int32_t top_k = 0;               // >= 0; 0 = off
  float min_p = 0.0f;              // [0, 1]
  std::optional<uint32_t> seed;
  float presence_penalty = 0.0f;   // [-2, 2]
  float frequency_penalty = 0.0f;  // [-2, 2]
  std::vector<std::pair<TokenId, float>> logit_bias;  // bias in [-100, 100]
};

struct GenerationRequest {
  // Either chat messages or a raw prompt; exactly one is set.
  std::vector<ChatMessage> messages;
  std::optional<std::string> prompt;
  SamplingParams sampling;
  int32_t max_tokens = 256;
  std::vector<std::string> stop;
  bool logprobs = false;
  int32_t top_logprobs = 0;
  bool ignore_eos = false;  // benchmarks only
  std::vector<ToolDef> tools = {};
  ToolChoice tool_choice = {};
  bool parallel_tool_calls = true;
  ResponseFormat response_format = {};
};

struct ToolCallDelta {
  int32_t index = 0;
  std::string id;
  std::string name;
  std::string arguments;
};

// Appends a fragment, joining it to the last one when it continues the same
// call (same index, no id or name of its own): one entry per call in a run.
inline void append_tool_call_fragment(std::vector<ToolCallDelta>& out, ToolCallDelta f) {
  if (!out.empty() && out.back().index == f.index && f.id.empty() && f.name.empty()) {
    out.back().arguments += f.arguments;
  } else {
    out.push_back(std::move(f));
  }
}

struct TopLogprob {
  TokenId token = 0;
  std::string text;  // raw bytes of the token (may be part of a character)
  float logprob = 0;
};

struct TokenLogprob {
  TokenId token = 0;
  std::string text;
  float logprob = 0;
  std::vector<TopLogprob> top;
};

enum class FinishReason { stop, length, cancelled, error, tool_calls };
const char* finish_reason_name(FinishReason r);

struct Usage {
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int32_t cached_prompt_tokens = 0;
};

struct Timings {
  double queued_ms = 0;
  double prompt_ms = 0;
  double decode_ms = 0;
};

// The request rules (errors: invalid_argument naming the parameter).
inline Status validate_request(const GenerationRequest& r) { return check_generation_request(r); }

}  // namespace agora::protocol
