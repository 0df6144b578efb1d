// Chat formatting for every chat request, plain, sealed or with tools: the
// model's own (Jinja) chat template rendered by llama.cpp's `common`
// library, with tools, tool messages and structured outputs; the grammar
// that constrains decoding (a required or named tool call, a JSON schema);
// and the parser that turns what the model wrote back into content and
// tool calls, incrementally while streaming.
//
// Special tokens: every message's text reaches the prompt as plain text
// only. The template is rendered with each message's content between
// markers that carry a per-render random nonce; the text between markers is
// tokenised with special-token parsing off, the template's own markup with
// it on. Tool definitions and call arguments (which templates re-encode as
// JSON, beyond the markers' reach) may not contain the text of any of the
// model's control tokens: such a request is refused.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "engine/engine.h"

struct llama_model;

namespace agora::engine {

// One piece of a rendered prompt.
struct PromptPiece {
  std::string text;
  bool markup = false;  // the template's own text: special tokens recognised
};

class ToolCallParser;

// What a chat request becomes before tokenisation.
struct ChatPlan {
  std::vector<PromptPiece> prompt;
  // GBNF constraining the answer; empty: unconstrained.
  std::string grammar;
  bool grammar_lazy = false;               // constrain only once a trigger appears
  std::vector<std::string> trigger_patterns;  // regular expressions (lazy grammars)
  std::vector<TokenId> trigger_tokens;
  std::string grammar_prefill;             // text the grammar consumes first (already in the prompt)
  std::vector<std::string> preserved_tokens;  // special tokens whose text the parser must see
  std::vector<std::string> stops;          // the template's extra stop strings
  // Set when the output is to be parsed (tools, structured output).
  std::shared_ptr<const ToolCallParser> parser;
};

class ChatFormat {
 public:
  // `model` gives the template (unless `template_override` is set), the BOS
  // and EOS tokens and the control tokens; it may be null with an override
  // (tests). `date` is the date the template sees (Llama 3.x prints it);
  // unset: the current UTC date at each render. Errors: unsupported (the
  // template does not parse).
  static Result<std::unique_ptr<ChatFormat>> create(
      const llama_model* model, const std::string& template_override = {},
      std::optional<std::chrono::system_clock::time_point> date = std::nullopt);
  ~ChatFormat();

  // Renders `r` (chat messages; validate_request() passed). Errors:
  // invalid_argument naming the parameter (control-token text in a tool
  // definition or call, a schema the grammar converter refuses),
  // unsupported (the template cannot render this conversation safely).
  // Thread-safe.
  Result<ChatPlan> plan(const GenerationRequest& r) const;

  ChatCapabilities capabilities() const;

 private:
  struct Impl;
  explicit ChatFormat(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Turns a model's raw output into content and tool calls as it streams: each
// push() releases the content and tool-call pieces that are now certain.
class ToolCallStream {
 public:
  explicit ToolCallStream(std::shared_ptr<const ToolCallParser> parser);
  ~ToolCallStream();

  // `raw`: newly generated text. Appends released content to `content` and
  // call pieces to `calls` (OpenAI's streaming order: a call's id and name,
  // then its argument fragments).
  void push(std::string_view raw, std::string& content, std::vector<ToolCallDelta>& calls);
  // The output ended: releases the rest.
  void finish(std::string& content, std::vector<ToolCallDelta>& calls);
  // The calls made so far (the final parse's after finish()).
  const std::vector<ToolCall>& calls() const { return calls_; }
  // After finish(): there are calls and every one's arguments are JSON (not
  // cut short by max_tokens or a stop sequence).
  bool calls_complete() const;

 private:
  void release(bool final, std::string& content, std::vector<ToolCallDelta>& calls);
  std::shared_ptr<const ToolCallParser> parser_;
  std::string raw_;
  std::string content_sent_;
  std::vector<ToolCall> calls_;       // as released: id, full name, arguments sent so far
  std::vector<bool> header_sent_;
};

// "call_" and 24 random letters and digits.
std::string new_tool_call_id();

}  // namespace agora::engine
