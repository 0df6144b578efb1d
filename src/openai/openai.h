// The OpenAI-compatible surface as pure functions: parsing a
// /v1/chat/completions body into a generation request, and formatting
// responses, stream chunks and errors exactly as OpenAI clients expect.
// No I/O here; the gateway's HTTP shell and `agora proxy` call these. The
// requests it produces carry the wire's types (protocol/wire.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "openai/api_error.h"
#include "openai/routing.h"
#include "protocol/messages.h"
#include "protocol/sealed.h"

namespace agora::openai {


struct RequestLimits {
  size_t max_messages = 2048;
  // A tool schema may nest 16 schema levels (two JSON levels each) below
  // tools[i].function.parameters: 48 leaves room for that.
  unsigned max_json_depth = 48;
  size_t max_stop = 4;
};


struct ChatRequest {
  std::string model;
  protocol::GenerationRequest generation;
  bool max_tokens_given = false;  // else the gateway uses the node's context
  bool stream = false;
  bool include_usage = false;
  std::string user;
  RoutingPreferences routing;
  // Opt-in conversation memory: the gateway stores this conversation's
  // turns (encrypted) and prepends the earlier ones to each request.
  std::optional<std::string> conversation_id;
  std::optional<int64_t> conversation_ttl_s;  // sets the conversation's time to live
  // End to end: "agora_sealed" instead of messages and sampling parameters
  // (protocol/sealed.h); `generation` then holds max_tokens only.
  std::optional<protocol::sealed::SealedRequest> sealed;
};

inline constexpr int64_t kMaxConversationTtlS = 365LL * 24 * 3600;
// 1-128 characters of [A-Za-z0-9._:-].
bool valid_conversation_id(std::string_view id);

// Parses and validates a request body. Unknown fields are ignored; fields we
// cannot honour (n > 1, the deprecated functions, tools other than
// functions, schema keywords no grammar enforces) give a 400 naming the
// parameter.
std::variant<ChatRequest, ApiError> parse_chat_request(std::string_view body, const RequestLimits& limits);

// Provenance attached to every response (the "agora" extension object).
struct Provenance {
  std::string provider_id;
  std::string model_sha256;
  std::string generation_id;
  std::string attestation = "standard";
  // The gateway's own added time (end to end at the gateway minus the
  // node's reported time), microseconds; negative = not known (omitted).
  int64_t overhead_us = -1;
  // With conversation memory: earlier turns prepended / dropped to fit the
  // context; negative = no conversation (omitted).
  int32_t conversation_turns = -1;
  int32_t conversation_turns_dropped = 0;
  // A sealed request: the node that served it (the client opens the answer
  // with that node's context); empty otherwise (omitted).
  std::string node_id;
};

struct CompletionResult {
  // A sealed request's answer: the node's sealed chunks, in order (text
  // stays empty; content is null in the response).
  bool sealed = false;
  std::vector<protocol::SealedChunk> chunks;
  std::string text;
  std::vector<protocol::TokenLogprob> logprobs;
  bool logprobs_requested = false;
  // The calls the model made, assembled from the deltas (add_tool_call_deltas).
  std::vector<protocol::ToolCallDelta> tool_calls;
  protocol::FinishReason finish = protocol::FinishReason::stop;
  protocol::Usage usage;
};

// Joins streamed call fragments into whole calls: a fragment with a new
// index starts a call, one with a known index adds to its arguments.
void add_tool_call_deltas(std::vector<protocol::ToolCallDelta>& calls, const std::vector<protocol::ToolCallDelta>& deltas);

// The error answer to a sealed request whose node sealed the real reason:
// {"error":…,"agora_sealed":{"node_id":…,"chunks":[…]}} — every chunk of the
// answer so far, the error's (final) last; the client opens them in order.
std::string sealed_error_body(const ApiError& e, std::string_view node_id, const std::vector<protocol::SealedChunk>& chunks);

// The non-streaming chat.completion object.
std::string completion_body(const std::string& id, int64_t created, const std::string& model,
                            const CompletionResult& result, const Provenance& provenance);

// Builds the SSE "data: …\n\n" events of one streamed completion. All chunks
// share the id and created time; the first carries the assistant role.
class ChunkWriter {
 public:
  ChunkWriter(std::string id, int64_t created, std::string model, bool include_usage, bool logprobs);

  // A content chunk (finish_reason null). Appends the event to `out`.
  void content(std::string& out, std::string_view text, const std::vector<protocol::TokenLogprob>& logprobs);
  // A chunk of tool-call fragments (delta.tool_calls, finish_reason null).
  void tool_calls(std::string& out, const std::vector<protocol::ToolCallDelta>& calls);
  // The chunk that carries finish_reason, with any last text; without
  // include_usage it also carries the provenance object.
  void finish(std::string& out, std::string_view text, const std::vector<protocol::TokenLogprob>& logprobs,
              protocol::FinishReason reason, const Provenance& provenance);
  // A sealed response chunk: choices [], "agora_sealed": {node_id, seq,
  // final, ciphertext} (the node tells the client which context opens it).
  void sealed(std::string& out, const protocol::SealedChunk& chunk, std::string_view node_id);
  // With include_usage: the final chunk (choices: [], usage, provenance).
  void usage(std::string& out, const protocol::Usage& usage, const Provenance& provenance);
  // The terminal marker.
  static void done(std::string& out);
  // An error event after streaming began; the stream then closes.
  static void error(std::string& out, const ApiError& e);
  // The same for a sealed request whose node sealed the real reason: the
  // event carries sealed_error_body() with the final chunk.
  static void sealed_error(std::string& out, const ApiError& e, std::string_view node_id,
                           const protocol::SealedChunk& chunk);

 private:
  void open_chunk(std::string& out);
  std::string prefix_;  // `{"id":…,"object":…,"created":…,"model":…,` shared by every chunk
  bool include_usage_;
  bool logprobs_;
  bool first_ = true;
};

const char* openai_finish_reason(protocol::FinishReason r);
std::string usage_json(const protocol::Usage& u);
void append_logprobs_content(std::string& out, const std::vector<protocol::TokenLogprob>& lps);

}  // namespace agora::openai
