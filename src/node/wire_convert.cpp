#include "node/wire_convert.h"

namespace agora::node {

// The enums below convert by value: same members, same order.
static_assert(static_cast<int>(engine::ToolChoiceMode::named) == static_cast<int>(protocol::ToolChoiceMode::named));
static_assert(static_cast<int>(engine::ToolChoiceMode::required) == static_cast<int>(protocol::ToolChoiceMode::required));
static_assert(static_cast<int>(engine::ResponseFormat::Type::json_schema) ==
              static_cast<int>(protocol::ResponseFormat::Type::json_schema));

engine::GenerationRequest to_engine(protocol::GenerationRequest r) {
  engine::GenerationRequest out;
  out.messages.reserve(r.messages.size());
  for (auto& m : r.messages) {
    engine::ChatMessage em{std::move(m.role), std::move(m.content), {}, std::move(m.tool_call_id)};
    for (auto& c : m.tool_calls) em.tool_calls.push_back({std::move(c.id), std::move(c.name), std::move(c.arguments)});
    out.messages.push_back(std::move(em));
  }
  out.prompt = std::move(r.prompt);
  const auto& s = r.sampling;
  auto& o = out.sampling;
  o.temperature = s.temperature;
  o.top_p = s.top_p;
  o.top_k = s.top_k;
  o.min_p = s.min_p;
  o.seed = s.seed;
  o.presence_penalty = s.presence_penalty;
  o.frequency_penalty = s.frequency_penalty;
  o.logit_bias.reserve(s.logit_bias.size());
  for (const auto& [token, bias] : s.logit_bias) o.logit_bias.emplace_back(static_cast<engine::TokenId>(token), bias);
  out.max_tokens = r.max_tokens;
  out.stop = std::move(r.stop);
  out.logprobs = r.logprobs;
  out.top_logprobs = r.top_logprobs;
  out.ignore_eos = r.ignore_eos;
  for (auto& t : r.tools) out.tools.push_back({std::move(t.name), std::move(t.description), std::move(t.parameters), t.strict});
  out.tool_choice = {static_cast<engine::ToolChoiceMode>(r.tool_choice.mode), std::move(r.tool_choice.name)};
  out.parallel_tool_calls = r.parallel_tool_calls;
  const auto& f = r.response_format;
  out.response_format = {static_cast<engine::ResponseFormat::Type>(f.type), f.name, f.schema, f.strict};
  return out;
}

protocol::FinishReason to_wire(engine::FinishReason f) {
  switch (f) {
    case engine::FinishReason::stop: return protocol::FinishReason::stop;
    case engine::FinishReason::length: return protocol::FinishReason::length;
    case engine::FinishReason::cancelled: return protocol::FinishReason::cancelled;
    case engine::FinishReason::error: return protocol::FinishReason::error;
    case engine::FinishReason::tool_calls: return protocol::FinishReason::tool_calls;
  }
  return protocol::FinishReason::error;
}

protocol::Usage to_wire(const engine::Usage& u) {
  return protocol::Usage{u.prompt_tokens, u.completion_tokens, u.cached_prompt_tokens};
}

protocol::Timings to_wire(const engine::Timings& t) { return protocol::Timings{t.queued_ms, t.prompt_ms, t.decode_ms}; }

std::vector<protocol::TokenLogprob> to_wire(const std::vector<engine::TokenLogprob>& lps) {
  std::vector<protocol::TokenLogprob> out;
  out.reserve(lps.size());
  for (const auto& lp : lps) {
    protocol::TokenLogprob w{lp.token, lp.text, lp.logprob, {}};
    w.top.reserve(lp.top.size());
    for (const auto& t : lp.top) w.top.push_back(protocol::TopLogprob{t.token, t.text, t.logprob});
    out.push_back(std::move(w));
  }
  return out;
}

std::vector<protocol::ToolCallDelta> to_wire(const std::vector<engine::ToolCallDelta>& calls) {
  std::vector<protocol::ToolCallDelta> out;
  out.reserve(calls.size());
  // One entry per call and event, as OpenAI streams them: a call's opening
  // fragment and its first arguments travel together.
  for (const auto& c : calls) protocol::append_tool_call_fragment(out, {c.index, c.id, c.name, c.arguments});
  return out;
}

}  // namespace agora::node
