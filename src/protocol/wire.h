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

struct ChatMessage {
  std::string role;  // "system" | "user" | "assistant"
  std::string content;
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
};

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

enum class FinishReason { stop, length, cancelled, error };
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
