// The rules a generation request must follow, for whichever struct carries
// it: the engine's (engine/engine.h) and the wire's (protocol/wire.h) are
// separate types on purpose (a change to one never silently changes the
// other), but they obey one set of rules, written once here.
#pragma once

#include <cmath>
#include <set>
#include <string>
#include <string_view>

#include "common/result.h"
#include "common/utf8.h"

namespace agora {

inline constexpr int kMaxStopSequences = 16;
inline constexpr int kMaxTopLogprobs = 20;
// Function calling bounds (OpenAI's own limit is 128 tools).
inline constexpr size_t kMaxTools = 128;
inline constexpr size_t kMaxToolDefinitionBytes = 64u << 10;  // names + descriptions + schemas
inline constexpr size_t kMaxToolCallsPerMessage = 128;
inline constexpr size_t kMaxSchemaBytes = 64u << 10;          // response_format's schema
inline constexpr unsigned kMaxSchemaDepth = 16;

namespace detail {
inline Error invalid(const std::string& param, const std::string& what) {
  return make_error(Errc::invalid_argument, "'" + param + "' " + what);
}
inline bool in_range(float v, float lo, float hi) { return std::isfinite(v) && v >= lo && v <= hi; }
}  // namespace detail

// OpenAI's function names: 1-64 characters of [A-Za-z0-9_-].
inline bool valid_function_name(std::string_view n) {
  if (n.empty() || n.size() > 64) return false;
  for (char c : n) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// The tool part of a request: definitions and their bounds, tool_choice,
// and a conversation in which every tool message answers an earlier call.
template <class Request>
Status check_tool_rules(const Request& r) {
  using detail::invalid;
  using Mode = decltype(r.tool_choice.mode);
  if (r.tools.size() > kMaxTools) return invalid("tools", "has more than " + std::to_string(kMaxTools) + " tools");
  size_t bytes = 0;
  std::set<std::string_view> names;
  for (size_t i = 0; i < r.tools.size(); ++i) {
    const auto& t = r.tools[i];
    const std::string where = "tools[" + std::to_string(i) + "].function";
    if (!valid_function_name(t.name)) {
      return invalid(where + ".name", "must be 1-64 characters of a-z, A-Z, 0-9, _ and -");
    }
    if (!names.insert(t.name).second) return invalid(where + ".name", "'" + t.name + "' is defined twice");
    if (!is_valid_utf8(t.description)) return invalid(where + ".description", "is not valid UTF-8");
    if (!is_valid_utf8(t.parameters)) return invalid(where + ".parameters", "is not valid UTF-8");
    bytes += t.name.size() + t.description.size() + t.parameters.size();
  }
  if (bytes > kMaxToolDefinitionBytes) {
    return invalid("tools", "definitions exceed " + std::to_string(kMaxToolDefinitionBytes >> 10) + " KiB");
  }
  if (r.tool_choice.mode == Mode::named && !names.contains(r.tool_choice.name)) {
    return invalid("tool_choice", "names the function '" + r.tool_choice.name + "', which is not in 'tools'");
  }
  if (r.tool_choice.mode == Mode::required && r.tools.empty()) {
    return invalid("tool_choice", "is 'required' but no 'tools' are given");
  }
  std::set<std::string_view> calls;  // ids of calls made so far
  for (size_t i = 0; i < r.messages.size(); ++i) {
    const auto& m = r.messages[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.tool_calls.empty() && m.role != "assistant") return invalid(where + ".tool_calls", "is only for assistant messages");
    if (m.tool_calls.size() > kMaxToolCallsPerMessage) return invalid(where + ".tool_calls", "has too many calls");
    for (size_t k = 0; k < m.tool_calls.size(); ++k) {
      const auto& c = m.tool_calls[k];
      const std::string cw = where + ".tool_calls[" + std::to_string(k) + "]";
      if (c.id.empty() || c.id.size() > 256 || !is_valid_utf8(c.id)) return invalid(cw + ".id", "must be 1-256 bytes of UTF-8");
      if (!valid_function_name(c.name)) return invalid(cw + ".function.name", "must be 1-64 characters of a-z, A-Z, 0-9, _ and -");
      if (!is_valid_utf8(c.arguments)) return invalid(cw + ".function.arguments", "is not valid UTF-8");
      calls.insert(c.id);
    }
    if (m.role == "tool") {
      if (m.tool_call_id.empty()) return invalid(where + ".tool_call_id", "is required for tool messages");
      if (!calls.contains(m.tool_call_id)) {
        return invalid(where + ".tool_call_id", "'" + m.tool_call_id + "' answers no earlier assistant tool call");
      }
    } else if (!m.tool_call_id.empty()) {
      return invalid(where + ".tool_call_id", "is only for tool messages");
    }
  }
  if (r.response_format.schema.size() > kMaxSchemaBytes) {
    return invalid("response_format.json_schema.schema", "exceeds " + std::to_string(kMaxSchemaBytes >> 10) + " KiB");
  }
  if (!is_valid_utf8(r.response_format.schema)) return invalid("response_format.json_schema.schema", "is not valid UTF-8");
  if (r.prompt && !r.tools.empty()) return invalid("tools", "needs chat messages, not a raw prompt");
  if (r.prompt && r.response_format.type != decltype(r.response_format.type){}) {
    return invalid("response_format", "needs chat messages, not a raw prompt");
  }
  return ok_status();
}

// Errors: invalid_argument naming the parameter ("'top_p' must be …").
template <class Request>
Status check_generation_request(const Request& r) {
  using detail::invalid;
  using detail::in_range;
  if (r.prompt.has_value() == !r.messages.empty()) {
    return invalid("messages", "must be given (and not together with a raw prompt)");
  }
  for (size_t i = 0; i < r.messages.size(); ++i) {
    const auto& m = r.messages[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (m.role != "system" && m.role != "user" && m.role != "assistant" && m.role != "tool") {
      return invalid(where + ".role", "must be one of system, user, assistant, tool (got '" + m.role + "')");
    }
    if (!is_valid_utf8(m.content)) return invalid(where + ".content", "is not valid UTF-8");
  }
  if (r.prompt && !is_valid_utf8(*r.prompt)) return invalid("prompt", "is not valid UTF-8");
  const auto& s = r.sampling;
  if (!in_range(s.temperature, 0.0f, 2.0f)) return invalid("temperature", "must be between 0 and 2");
  if (!in_range(s.top_p, 0.0f, 1.0f) || s.top_p == 0.0f) {
    return invalid("top_p", "must be greater than 0 and at most 1");
  }
  if (s.top_k < 0) return invalid("top_k", "must be 0 (off) or positive");
  if (!in_range(s.min_p, 0.0f, 1.0f)) return invalid("min_p", "must be between 0 and 1");
  if (!in_range(s.presence_penalty, -2.0f, 2.0f)) {
    return invalid("presence_penalty", "must be between -2 and 2");
  }
  if (!in_range(s.frequency_penalty, -2.0f, 2.0f)) {
    return invalid("frequency_penalty", "must be between -2 and 2");
  }
  for (const auto& [token, bias] : s.logit_bias) {
    if (token < 0) return invalid("logit_bias", "has a negative token id");
    if (!in_range(bias, -100.0f, 100.0f)) return invalid("logit_bias", "values must be between -100 and 100");
  }
  if (r.max_tokens < 1) return invalid("max_tokens", "must be at least 1");
  if (r.stop.size() > static_cast<size_t>(kMaxStopSequences)) {
    return invalid("stop", "has more than " + std::to_string(kMaxStopSequences) + " sequences");
  }
  for (const auto& st : r.stop) {
    if (st.empty()) return invalid("stop", "sequences must not be empty");
    if (st.size() > 256) return invalid("stop", "sequences must be at most 256 bytes");
    if (!is_valid_utf8(st)) return invalid("stop", "sequences must be valid UTF-8");
  }
  if (r.top_logprobs < 0 || r.top_logprobs > kMaxTopLogprobs) {
    return invalid("top_logprobs", "must be between 0 and " + std::to_string(kMaxTopLogprobs));
  }
  if (r.top_logprobs > 0 && !r.logprobs) return invalid("top_logprobs", "requires 'logprobs' to be true");
  return check_tool_rules(r);
}

}  // namespace agora
