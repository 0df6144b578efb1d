// The sans-I/O core of agora-mock-openai: parses an OpenAI chat completion
// request and renders the answer (a chat.completion object, or the SSE
// chat.completion.chunk events of a stream). No sockets, no clocks: the
// caller passes the id and the `created` time. All functions are pure and
// safe to call from any thread.
//
// The answer has the shape `agora node --engine fake` produces, so a peer
// gateway in front of this mock moves the same bytes as ours in front of the
// fake engine (src/engine/fake_engine.h):
//   * n = min(tokens, max_tokens) completion tokens, each `token_text`;
//     finish_reason "stop" when tokens <= max_tokens, else "length";
//   * prompt_tokens = ceil(B / 4), B the bytes of the fake chat template
//     ("<|role|>content\n" per message, then "<|assistant|>");
//   * a stream sends one chunk per token (the first also carries
//     "role":"assistant"), a finish chunk, a usage chunk when
//     stream_options.include_usage, then `data: [DONE]`.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace agora::mock {

// What the mock reads from a request body.
struct ChatRequest {
  std::string model;
  bool stream = false;
  bool include_usage = false;          // stream_options.include_usage
  int64_t max_tokens = INT64_MAX;      // max_tokens or max_completion_tokens; absent: no limit
  int64_t prompt_tokens = 0;           // by the fake engine's rule (above)
};

// How the mock answers (its command-line options).
struct AnswerOptions {
  int64_t tokens = 16;                 // completion tokens when max_tokens allows, >= 0
  std::string token_text = " tok";     // every token's text
};

// Parses a /v1/chat/completions body. Errors (invalid_argument, with an
// OpenAI-style message): not JSON, nesting deeper than 32, not an object,
// `messages` missing/empty/not an array of objects, a field of the wrong
// type, max_tokens < 0.
Result<ChatRequest> parse_chat_request(std::string_view body);

// A complete answer, fixed once the request is parsed.
struct Answer {
  std::string id;       // "chatcmpl-…"
  int64_t created = 0;  // unix seconds
  ChatRequest request;
  int64_t n_tokens = 0;
  bool truncated = false;  // finish_reason "length"
};

Answer make_answer(std::string id, int64_t created, ChatRequest request, const AnswerOptions& options);

// The non-streamed body: a chat.completion object with usage.
std::string completion_body(const Answer& answer, const AnswerOptions& options);

// The SSE events of a streamed answer, one at a time, in order:
//   StreamRenderer r(answer, options); std::string ev;
//   while (r.next(ev)) { write(ev); ev.clear(); }
// Each next() appends exactly one complete event ("data: …\n\n") to `out`.
class StreamRenderer {
 public:
  StreamRenderer(const Answer& answer, const AnswerOptions& options);

  // Appends the next event and returns true; false after `data: [DONE]`.
  bool next(std::string& out);

 private:
  void open_chunk(std::string& out);

  const Answer& answer_;
  const AnswerOptions& options_;
  std::string prefix_;  // `data: {"id":…,"model":…,` shared by every chunk
  int64_t step_ = 0;    // 0..n-1 content, n finish, n+1 usage, then [DONE]
};

// An OpenAI error object: {"error":{"message","type","param","code"}}.
std::string error_body(std::string_view message, std::string_view type, std::string_view code);

}  // namespace agora::mock
