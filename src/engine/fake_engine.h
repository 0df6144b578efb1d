// FakeEngine: an Engine with no model. It behaves like LlamaEngine from the
// outside — validation, slots, a bounded queue, one engine thread, streamed
// events, cancellation, stats — but every "token" is the same configured text,
// produced on a timer instead of by a model. `agora node --engine fake` serves
// it so the gateway can be benchmarked without model cost, and gateway tests
// use it for fast, deterministic fault injection (`fail_after_tokens`).
//
// The fake "model", exactly (tests may rely on every rule here):
//   * Chat template: each message becomes "<|role|>content\n", then
//     "<|assistant|>" opens the reply.
//   * Tokenizer: one token per 4 bytes of text, the last one possibly shorter,
//     so a prompt of B bytes (a raw prompt, or the rendered chat template) is
//     ceil(B / 4) prompt tokens. `parse_special` changes nothing. A prompt
//     chunk's id is a hash of its bytes in [kFakePromptIdBase, INT32_MAX];
//     the fake cannot turn those back into text (token_bytes gives "").
//   * Generation: the k-th completion token (k = 0, 1, ...) has id k and text
//     `token_text`. A request gets n = min(tokens, max_tokens, ctx_per_slot -
//     prompt tokens) tokens and finishes with `stop` when n == tokens (the fake
//     model "ends its answer"), else `length`. With `ignore_eos` it runs to
//     min(max_tokens, ctx_per_slot - prompt tokens) and finishes with `length`.
//     Stop sequences apply to the generated text as in LlamaEngine (a stop is
//     never emitted; the request finishes with `stop`).
//   * Logprobs: each token has logprob -0.1 (kFakeLogprob); its `top_logprobs`
//     alternatives are the token itself first, then ids kFakeAltIdBase + j
//     (j = 1, 2, ...) with text token_text + std::to_string(j) and logprob
//     -(j + 2), most likely first.
//   * Schedule: a request's first token is due `first_token_delay` after it
//     gets a slot, and token k at first + k * token_interval (a fixed
//     schedule: a late engine thread catches up rather than drifting). Each
//     step emits one token for every running request whose token is due, in
//     the order they got their slots. With both durations 0 tokens are produced as fast as the
//     callbacks allow.
//   * Usage: prompt_tokens as above, completion_tokens = tokens emitted
//     (including one that completed a stop sequence), cached_prompt_tokens 0.
//     Timings are measured with the engine's clock.
//   * Cancellation: cancel() returning true guarantees the request's on_done
//     reports `cancelled`, even when it was about to end on its own (its
//     text and usage then show everything it emitted). The engine thread
//     checks for cancels before each token, so at most a token already being
//     emitted when cancel() is called still arrives; a cancel from one of
//     the request's own callbacks is exact.
//   * Tool calls: with `tool_calls = N` > 0 the fake announces tools (and
//     parallel calls when N > 1). A request with tools and tool_choice other
//     than "none" then gets calls instead of text: min(N, 1 if
//     parallel_tool_calls is false) calls, call j to the named function, else
//     to tools[j % tools.size()], id "call_fake_<r>_<j>" (r: the engine's
//     count of requests with calls), arguments {"n":j}. Each call is three
//     events (tokens): {index j, id, name, arguments ""}, then "{\"n\":", then
//     "j}"; the request finishes with `tool_calls` and Completion::tool_calls
//     holds the calls (with fewer tokens allowed: `length`, the calls so far).
//   * Faults: with `fail_after_tokens = N`, a request that has emitted N tokens
//     (N = 0: at its first token's due time) and has not yet finished otherwise
//     finishes with `error` and Error{internal, "fake engine: injected
//     failure"}; text held back for a possible stop sequence is dropped, as
//     in LlamaEngine's error path.
//
// Threading: as documented in engine.h. submit/cancel/stats and the const
// methods are thread-safe; callbacks run on the engine thread, in order, and
// may call cancel() and submit(). The destructor finishes every queued and
// running request with `cancelled` (callbacks run, on the engine thread)
// before it returns; it must not run on the engine thread (from a callback).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/result.h"
#include "engine/engine.h"

namespace agora::engine {

inline constexpr float kFakeLogprob = -0.1f;
inline constexpr TokenId kFakeAltIdBase = 1 << 24;     // logprob alternatives: base + j
inline constexpr TokenId kFakePromptIdBase = 1 << 25;  // prompt chunk ids: [base, INT32_MAX]

struct FakeEngineOptions {
  std::string name = "fake";    // ModelInfo::name; non-empty, valid UTF-8, <= 256 bytes
  int32_t slots = 64;           // requests served concurrently, 1..65536
  int32_t ctx_per_slot = 4096;  // prompt + completion tokens per request, 2..2^24
  int32_t max_queue = 4096;     // requests waiting for a slot before submit says unavailable, >= 1
  int32_t tokens = 16;          // completion tokens when max_tokens allows (see above), >= 0
  std::chrono::microseconds token_interval{0};     // between tokens; 0 = as fast as possible
  std::chrono::microseconds first_token_delay{0};  // slot assigned -> first token
  std::string token_text = " tok";  // every token's text; non-empty, valid UTF-8, <= 256 bytes
  // Fault injection: after this many tokens a request finishes with `error`.
  std::optional<int32_t> fail_after_tokens;  // >= 0 when set
  int32_t tool_calls = 0;  // calls per request that offers tools (see above), 0..128; 0 = no tool support
  // Time for the schedule and the timings; nullptr = the system clock. Must
  // outlive the engine. A Clock cannot wake the engine thread, so with an
  // injected clock the thread re-reads it at least every kFakeClockPoll while
  // a token is due in the future (the system clock is waited on exactly).
  Clock* clock = nullptr;
};

// How often the engine thread re-reads an injected clock while waiting.
inline constexpr std::chrono::milliseconds kFakeClockPoll{1};

// Checks the ranges documented on FakeEngineOptions; the message names the
// option. Thread-safe (pure).
Status validate_fake_engine_options(const FakeEngineOptions& options);

// Starts a FakeEngine (its thread runs until the engine is destroyed). Options
// are configuration: invalid ones throw std::invalid_argument with
// validate_fake_engine_options' message (check them first to avoid that).
std::unique_ptr<Engine> make_fake_engine(FakeEngineOptions options);

// Parses a CLI spec, comma-separated key=value pairs over the defaults, e.g.
// "name=fake,tokens=16,slots=64,token-interval-us=0,first-token-us=0". Keys:
// name, slots, ctx-per-slot, max-queue, tokens, token-interval-us,
// first-token-us, token-text, fail-after-tokens, tool-calls. An empty spec gives the
// defaults. Errors (invalid_argument): an unknown or repeated key (named), a
// pair without '=', a value that is not a whole number in range. The result
// passes validate_fake_engine_options. Values cannot contain ','. Pure.
Result<FakeEngineOptions> parse_fake_engine_spec(std::string_view spec);

}  // namespace agora::engine
