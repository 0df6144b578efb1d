#include "protocol/request_json.h"

#include <iterator>

#include "protocol/messages.h"

namespace agora::protocol {
namespace detail {
namespace {

constexpr std::string_view kToolChoiceNames[] = {"auto", "none", "required", "named"};
constexpr std::string_view kFormatNames[] = {"text", "json_object", "json_schema"};

// Tools travel with their schemas as JSON text, so the frame's depth limit
// never refuses a deep schema.
void tools_to_json(const GenerationRequest& r, json::object& o) {
  if (!r.tools.empty()) {
    json::array tools;
    for (const auto& t : r.tools) {
      json::object to{{"name", t.name}, {"description", t.description}, {"parameters", t.parameters}};
      if (t.strict) to["strict"] = true;
      tools.push_back(std::move(to));
    }
    o["tools"] = std::move(tools);
  }
  if (r.tool_choice.mode != ToolChoiceMode::automatic) {
    json::object tc{{"mode", kToolChoiceNames[static_cast<size_t>(r.tool_choice.mode)]}};
    if (r.tool_choice.mode == ToolChoiceMode::named) tc["name"] = r.tool_choice.name;
    o["tool_choice"] = std::move(tc);
  }
  if (!r.parallel_tool_calls) o["parallel_tool_calls"] = false;
  const auto& f = r.response_format;
  if (f.type != ResponseFormat::Type::text) {
    json::object fo{{"type", kFormatNames[static_cast<size_t>(f.type)]}};
    if (f.type == ResponseFormat::Type::json_schema) {
      fo["name"] = f.name;
      fo["schema"] = f.schema;
      if (f.strict) fo["strict"] = true;
    }
    o["response_format"] = std::move(fo);
  }
}

template <size_t N>
bool name_index(std::string_view s, const std::string_view (&names)[N], size_t& out) {
  for (size_t i = 0; i < N; ++i) {
    if (names[i] == s) {
      out = i;
      return true;
    }
  }
  return false;
}

bool tool_calls_from_json(Reader& mr, ChatMessage& cm) {
  auto* calls = mr.array("tool_calls", false);
  if (!calls) return mr.ok();
  for (const auto& c : *calls) {
    if (!c.is_object()) return mr.fail("tool_calls", "entries must be objects");
    Reader cr(c.get_object(), mr.where() + ".tool_calls");
    ToolCall call;
    if (!cr.str("id", call.id) || !cr.str("name", call.name) || !cr.str("arguments", call.arguments)) {
      return mr.fail("tool_calls", cr.error().message);
    }
    cm.tool_calls.push_back(std::move(call));
  }
  return true;
}

bool tools_from_json(Reader& parent, Reader& rd, GenerationRequest& r) {
  if (auto* tools = rd.array("tools", false)) {
    for (const auto& t : *tools) {
      if (!t.is_object()) return parent.fail("request", "tools must be objects");
      Reader tr(t.get_object(), rd.where() + ".tools");
      ToolDef def;
      if (!tr.str("name", def.name) || !tr.str("description", def.description, false) ||
          !tr.str("parameters", def.parameters, false) || !tr.boolean("strict", def.strict, false)) {
        return parent.fail("request", tr.error().message);
      }
      r.tools.push_back(std::move(def));
    }
  }
  if (!rd.ok()) return parent.fail("request", rd.error().message);
  if (auto* tc = rd.object("tool_choice", false)) {
    Reader cr(*tc, rd.where() + ".tool_choice");
    std::string mode;
    size_t i = 0;
    if (!cr.str("mode", mode) || !cr.str("name", r.tool_choice.name, false)) return parent.fail("request", cr.error().message);
    if (!name_index(mode, kToolChoiceNames, i)) return parent.fail("request", "tool_choice.mode is not one of auto, none, required, named");
    r.tool_choice.mode = static_cast<ToolChoiceMode>(i);
  }
  if (!rd.ok() || !rd.boolean("parallel_tool_calls", r.parallel_tool_calls, false)) {
    return parent.fail("request", rd.error().message);
  }
  if (auto* rf = rd.object("response_format", false)) {
    Reader fr(*rf, rd.where() + ".response_format");
    std::string type;
    size_t i = 0;
    auto& f = r.response_format;
    if (!fr.str("type", type) || !fr.str("name", f.name, false) || !fr.str("schema", f.schema, false) ||
        !fr.boolean("strict", f.strict, false)) {
      return parent.fail("request", fr.error().message);
    }
    if (!name_index(type, kFormatNames, i)) return parent.fail("request", "response_format.type is not one of text, json_object, json_schema");
    f.type = static_cast<ResponseFormat::Type>(i);
  }
  return rd.ok() || parent.fail("request", rd.error().message);
}

}  // namespace

json::object request_to_json(const GenerationRequest& r) {
  json::object o;
  if (r.prompt) {
    o["prompt"] = *r.prompt;
  } else {
    json::array msgs;
    msgs.reserve(r.messages.size());
    for (const auto& m : r.messages) {
      json::object mo{{"role", m.role}, {"content", m.content}};
      if (!m.tool_calls.empty()) {
        json::array calls;
        for (const auto& c : m.tool_calls) {
          calls.push_back(json::object{{"id", c.id}, {"name", c.name}, {"arguments", c.arguments}});
        }
        mo["tool_calls"] = std::move(calls);
      }
      if (!m.tool_call_id.empty()) mo["tool_call_id"] = m.tool_call_id;
      msgs.push_back(std::move(mo));
    }
    o["messages"] = std::move(msgs);
  }
  tools_to_json(r, o);
  o["max_tokens"] = r.max_tokens;
  const auto& s = r.sampling;
  o["temperature"] = s.temperature;
  o["top_p"] = s.top_p;
  if (s.top_k) o["top_k"] = s.top_k;
  if (s.min_p != 0) o["min_p"] = s.min_p;
  if (s.seed) o["seed"] = *s.seed;
  if (s.presence_penalty != 0) o["presence_penalty"] = s.presence_penalty;
  if (s.frequency_penalty != 0) o["frequency_penalty"] = s.frequency_penalty;
  if (!s.logit_bias.empty()) {
    json::array lb;
    for (const auto& [tok, bias] : s.logit_bias) lb.push_back(json::array{tok, bias});
    o["logit_bias"] = std::move(lb);
  }
  if (!r.stop.empty()) {
    json::array st;
    for (const auto& x : r.stop) st.push_back(json::string(x));
    o["stop"] = std::move(st);
  }
  if (r.logprobs) o["logprobs"] = true;
  if (r.top_logprobs) o["top_logprobs"] = r.top_logprobs;
  if (r.ignore_eos) o["ignore_eos"] = true;
  return o;
}

bool request_from_json(Reader& parent, const json::object& o, GenerationRequest& r) {
  Reader rd(o, parent.where() + ".request");
  auto fail_with = [&] { return parent.fail("request", rd.error().message.substr(10)); };
  if (o.contains("prompt")) {
    std::string p;
    if (!rd.str("prompt", p)) return fail_with();
    r.prompt = std::move(p);
  } else {
    auto* msgs = rd.array("messages");
    if (!msgs) return fail_with();
    r.messages.reserve(msgs->size());
    for (const auto& m : *msgs) {
      if (!m.is_object()) return parent.fail("request", "messages must be objects");
      Reader mr(m.get_object(), rd.where() + ".messages");
      ChatMessage cm;
      if (!mr.str("role", cm.role) || !mr.str("content", cm.content) || !tool_calls_from_json(mr, cm) ||
          !mr.str("tool_call_id", cm.tool_call_id, false)) {
        return parent.fail("request", mr.error().message);
      }
      r.messages.push_back(std::move(cm));
    }
  }
  if (!tools_from_json(parent, rd, r)) return false;
  auto& s = r.sampling;
  uint32_t seed = 0;
  if (!rd.integer("max_tokens", r.max_tokens) || !rd.number("temperature", s.temperature, false) ||
      !rd.number("top_p", s.top_p, false) || !rd.integer("top_k", s.top_k, false) ||
      !rd.number("min_p", s.min_p, false) || !rd.number("presence_penalty", s.presence_penalty, false) ||
      !rd.number("frequency_penalty", s.frequency_penalty, false) || !rd.boolean("logprobs", r.logprobs, false) ||
      !rd.integer("top_logprobs", r.top_logprobs, false) || !rd.boolean("ignore_eos", r.ignore_eos, false)) {
    return fail_with();
  }
  if (o.contains("seed")) {
    if (!rd.integer("seed", seed)) return fail_with();
    s.seed = seed;
  }
  if (auto* lb = rd.array("logit_bias", false)) {
    for (const auto& e : *lb) {
      const json::array* pair = e.if_array();
      if (!pair || pair->size() != 2 || !(*pair)[0].is_int64() || !(*pair)[1].is_number()) {
        return parent.fail("request", "logit_bias entries must be [token, bias]");
      }
      const int64_t token = (*pair)[0].get_int64();
      const double bias = (*pair)[1].to_number<double>();
      if (token < 0 || token > std::numeric_limits<TokenId>::max() || !fits_float(bias)) {
        return parent.fail("request", "logit_bias entries must be [token id, finite bias]");
      }
      s.logit_bias.emplace_back(static_cast<TokenId>(token), static_cast<float>(bias));
    }
  }
  if (auto* st = rd.array("stop", false)) {
    for (const auto& e : *st) {
      if (!e.is_string()) return parent.fail("request", "stop entries must be strings");
      r.stop.emplace_back(e.get_string().data(), e.get_string().size());
    }
  }
  return rd.ok() || fail_with();
}

}  // namespace detail

namespace json = boost::json;
using detail::Reader;

std::string encode_request(const GenerationRequest& r) { return json::serialize(detail::request_to_json(r)); }

Result<GenerationRequest> decode_request(std::string_view text) {
  auto v = detail::parse_object(text, "request", kMaxFrameBytes, kMaxJsonDepth);
  if (!v) return v.error();
  json::object holder;
  Reader r(holder, "request");
  GenerationRequest out;
  if (!detail::request_from_json(r, v->get_object(), out)) return r.error();
  return out;
}

}  // namespace agora::protocol
