// The rules a generation request must follow, for whichever struct carries
// it: the engine's (engine/engine.h) and the wire's (protocol/wire.h) are
// separate types on purpose (a change to one never silently changes the
// other), but they obey one set of rules, written once here.
#pragma once

#include <cmath>
#include <string>

#include "common/result.h"
#include "common/utf8.h"

namespace agora {

inline constexpr int kMaxStopSequences = 16;
inline constexpr int kMaxTopLogprobs = 20;

namespace detail {
inline Error invalid(const std::string& param, const std::string& what) {
  return make_error(Errc::invalid_argument, "'" + param + "' " + what);
}
inline bool in_range(float v, float lo, float hi) { return std::isfinite(v) && v >= lo && v <= hi; }
}  // namespace detail

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
    if (m.role != "system" && m.role != "user" && m.role != "assistant") {
      return invalid(where + ".role", "must be one of system, user, assistant (got '" + m.role + "')");
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
  return ok_status();
}

}  // namespace agora
