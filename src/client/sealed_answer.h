// Opening a sealed answer, sans-I/O: what `agora proxy` does with the
// gateway's response to a sealed request, unary or streamed, as pure
// functions of the bytes the gateway sent (fuzzed: tests/fuzz,
// sealed_answer). The gateway is not trusted here: everything it relays is
// checked — chunks open under the answering node's context, in order, from
// one node, up to the node's final chunk — and anything else is an error,
// never partial plaintext passed off as complete.
//
// What the node sealed: its deltas (text, logprobs, tool-call fragments),
// then one final chunk — its done (the real finish reason and usage) or,
// for a request it refused after opening it, its failed (the real code and
// message, which the gateway only sees as generic).
#pragma once

#include <boost/json/fwd.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "openai/openai.h"
#include "protocol/sealed.h"

namespace agora::client {

// What the answer is rendered for: the client's model name and options.
struct AnswerShape {
  std::string model;
  bool include_usage = false;
  bool logprobs = false;
};

// The gateway's 200 body for a unary sealed request -> the client's
// chat.completion body (pass `refused` its reason: a 502
// sealed_response_invalid), or the node's own error when it sealed one.
struct Refused {
  std::string why;
};
std::variant<std::string, openai::ApiError, Refused> open_unary(const protocol::sealed::ClientSeal& seal,
                                                                 const AnswerShape& shape, std::string_view body);

// A non-200 gateway body: the node's sealed error when it carries one
// ({"error":…,"agora_sealed":{"node_id","chunks"}}), Refused when that does
// not open, nullopt when the body has none (relay the gateway's error).
std::optional<std::variant<openai::ApiError, Refused>> open_error(const protocol::sealed::ClientSeal& seal,
                                                                  std::string_view body);

// A streamed answer, one SSE event's data at a time (after "data: ").
class SealedStream {
 public:
  SealedStream(const protocol::sealed::ClientSeal& seal, AnswerShape shape);

  enum class Step {
    more,    // go on
    done,    // [DONE] after a complete answer: `out` ends the client's stream
    failed,  // `out` holds an error event; the stream ends (why(): for the log)
  };
  // Appends what the client gets for this event to `out`.
  Step event(std::string_view data, std::string& out);
  // The gateway's stream ended (or broke: `why`) before [DONE].
  void cut_off(std::string_view why, std::string& out);
  const std::string& why() const { return why_; }

 private:
  Step refuse(std::string why, std::string& out);
  const char* bind(std::string_view node);
  Step on_sealed(const boost::json::object& chunk, std::string& out);
  Step on_error(const boost::json::object& event, std::string& out);
  Step on_plain(const boost::json::object& event, std::string& out);

  const protocol::sealed::ClientSeal& seal_;
  AnswerShape shape_;
  std::optional<openai::ChunkWriter> writer_;
  std::optional<protocol::sealed::ResponseOpener> opener_;
  std::string node_;
  std::optional<protocol::Done> done_;
  bool finish_written_ = false;
  std::string why_;
};

}  // namespace agora::client
