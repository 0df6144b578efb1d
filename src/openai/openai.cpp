#include "openai/openai.h"

#include <boost/json.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include "common/json_text.h"
#include "common/utf8.h"
#include "crypto/encoding.h"
#include "openai/tools.h"
#include "protocol/schema_rules.h"

namespace agora::openai {
namespace json = boost::json;

namespace {

const char* type_name(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null: return "null";
    case json::kind::bool_: return "a boolean";
    case json::kind::int64:
    case json::kind::uint64: return "an integer";
    case json::kind::double_: return "a number";
    case json::kind::string: return "a string";
    case json::kind::array: return "an array";
    case json::kind::object: return "an object";
  }
  return "a value";
}

ApiError wrong_type(const std::string& param, const char* want, const json::value& got) {
  return invalid_request(param, "'" + param + "' must be " + want + ", not " + type_name(got));
}

// Present and not null.
const json::value* field(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  return (v && !v->is_null()) ? v : nullptr;
}

std::optional<ApiError> get_number(const json::object& o, std::string_view key, float& out) {
  auto* v = field(o, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) return wrong_type(std::string(key), "a number", *v);
  double d = v->to_number<double>();
  if (!std::isfinite(d) || std::fabs(d) > 1e6) return invalid_request(std::string(key), "'" + std::string(key) + "' is out of range");
  out = static_cast<float>(d);
  return std::nullopt;
}

std::optional<ApiError> get_int(const json::object& o, std::string_view key, std::optional<int64_t>& out) {
  auto* v = field(o, key);
  if (!v) return std::nullopt;
  if (v->is_int64()) out = v->get_int64();
  else if (v->is_uint64()) out = std::numeric_limits<int64_t>::max();
  else if (v->is_double() && std::trunc(v->get_double()) == v->get_double() && std::fabs(v->get_double()) < 9e15)
    out = static_cast<int64_t>(v->get_double());
  else return wrong_type(std::string(key), "an integer", *v);
  return std::nullopt;
}

std::optional<ApiError> get_bool(const json::object& o, std::string_view key, bool& out) {
  auto* v = field(o, key);
  if (!v) return std::nullopt;
  if (!v->is_bool()) return wrong_type(std::string(key), "a boolean", *v);
  out = v->get_bool();
  return std::nullopt;
}

std::optional<ApiError> parse_content(const json::value& c, const std::string& param, std::string& out) {
  if (c.is_string()) {
    out.assign(c.get_string().data(), c.get_string().size());
    return std::nullopt;
  }
  if (c.is_array()) {
    size_t i = 0;
    for (const auto& part : c.get_array()) {
      const std::string p = param + "[" + std::to_string(i++) + "]";
      if (!part.is_object()) return wrong_type(p, "an object", part);
      const auto& po = part.get_object();
      auto* type = po.if_contains("type");
      if (!type || !type->is_string()) return invalid_request(p + ".type", "'" + p + ".type' is required");
      if (type->get_string() != "text") {
        return invalid_request(p + ".type", "content parts of type '" + std::string(type->get_string()) +
                                                "' are not supported; only 'text' is");
      }
      auto* text = po.if_contains("text");
      if (!text || !text->is_string()) return invalid_request(p + ".text", "'" + p + ".text' must be a string");
      out.append(text->get_string().data(), text->get_string().size());
    }
    return std::nullopt;
  }
  return wrong_type(param, "a string or an array of content parts", c);
}

std::optional<ApiError> parse_messages(const json::object& o, const RequestLimits& limits,
                                       std::vector<protocol::ChatMessage>& out) {
  auto* v = o.if_contains("messages");
  if (!v || v->is_null()) return invalid_request("messages", "'messages' is required");
  if (!v->is_array()) return wrong_type("messages", "an array", *v);
  const auto& arr = v->get_array();
  if (arr.empty()) return invalid_request("messages", "'messages' must contain at least one message");
  if (arr.size() > limits.max_messages) {
    return invalid_request("messages", "'messages' has " + std::to_string(arr.size()) + " entries; the limit is " +
                                           std::to_string(limits.max_messages));
  }
  out.reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i) {
    const std::string p = "messages[" + std::to_string(i) + "]";
    if (!arr[i].is_object()) return wrong_type(p, "an object", arr[i]);
    const auto& m = arr[i].get_object();
    auto* role = m.if_contains("role");
    if (!role || !role->is_string()) return invalid_request(p + ".role", "'" + p + ".role' must be a string");
    protocol::ChatMessage cm;
    std::string_view r = role->get_string();
    if (r == "system" || r == "developer") cm.role = "system";
    else if (r == "user" || r == "assistant" || r == "tool") cm.role = std::string(r);
    else if (r == "function") {
      return invalid_request(p + ".role", "the deprecated 'function' role is not supported; answer calls with 'tool' messages");
    } else {
      return invalid_request(p + ".role", "'" + std::string(r) +
                                              "' is not a valid role (system, developer, user, assistant or tool)");
    }
    if (auto* tc = field(m, "tool_calls")) {
      if (cm.role != "assistant") {
        return invalid_request(p + ".tool_calls", "'" + p + ".tool_calls' is only for assistant messages");
      }
      if (auto e = detail::parse_message_tool_calls(*tc, p + ".tool_calls", cm.tool_calls)) return e;
    }
    if (auto* id = field(m, "tool_call_id")) {
      if (!id->is_string()) return wrong_type(p + ".tool_call_id", "a string", *id);
      cm.tool_call_id = std::string(id->get_string());
    }
    if (cm.role == "tool" && cm.tool_call_id.empty()) {
      return invalid_request(p + ".tool_call_id", "'" + p + ".tool_call_id' is required for tool messages");
    }
    auto* content = m.if_contains("content");
    if (!content || content->is_null()) {
      // An assistant turn may be only calls (content null), as OpenAI sends it.
      if (cm.role != "assistant") return invalid_request(p + ".content", "'" + p + ".content' is required");
    } else if (auto e = parse_content(*content, p + ".content", cm.content)) {
      return e;
    }
    if (!is_valid_utf8(cm.content)) return invalid_request(p + ".content", "is not valid UTF-8");
    out.push_back(std::move(cm));
  }
  return std::nullopt;
}

std::optional<ApiError> parse_stop(const json::object& o, const RequestLimits& limits, std::vector<std::string>& out) {
  auto* v = field(o, "stop");
  if (!v) return std::nullopt;
  if (v->is_string()) {
    out.emplace_back(v->get_string().data(), v->get_string().size());
  } else if (v->is_array()) {
    if (v->get_array().size() > limits.max_stop) {
      return invalid_request("stop", "'stop' may hold at most " + std::to_string(limits.max_stop) + " sequences");
    }
    for (const auto& s : v->get_array()) {
      if (!s.is_string()) return invalid_request("stop", "'stop' must be a string or an array of strings");
      out.emplace_back(s.get_string().data(), s.get_string().size());
    }
  } else {
    return wrong_type("stop", "a string or an array of strings", *v);
  }
  for (const auto& s : out) {
    if (s.empty()) return invalid_request("stop", "stop sequences must not be empty");
  }
  return std::nullopt;
}

std::optional<ApiError> parse_logit_bias(const json::object& o, protocol::SamplingParams& s) {
  auto* v = field(o, "logit_bias");
  if (!v) return std::nullopt;
  if (!v->is_object()) return wrong_type("logit_bias", "an object mapping token ids to biases", *v);
  if (v->get_object().size() > 1024) return invalid_request("logit_bias", "'logit_bias' may hold at most 1024 entries");
  for (const auto& [k, b] : v->get_object()) {
    int64_t tok = -1;
    auto [ptr, ec] = std::from_chars(k.data(), k.data() + k.size(), tok);
    if (ec != std::errc{} || ptr != k.data() + k.size() || tok < 0 || tok > std::numeric_limits<int32_t>::max()) {
      return invalid_request("logit_bias", "'logit_bias' keys must be token ids (non-negative integers), not '" +
                                               std::string(k) + "'");
    }
    if (!b.is_number()) return invalid_request("logit_bias", "'logit_bias' values must be numbers");
    const double bias = b.to_number<double>();
    if (!(bias >= -100 && bias <= 100)) return invalid_request("logit_bias", "'logit_bias' values must be between -100 and 100");
    s.logit_bias.emplace_back(static_cast<protocol::TokenId>(tok), static_cast<float>(bias));
  }
  return std::nullopt;
}

std::optional<ApiError> parse_routing(const json::object& o, RoutingPreferences& r) {
  if (auto* c = field(o, "confidential")) {
    if (!c->is_bool()) return wrong_type("confidential", "a boolean", *c);
    r.confidential = c->get_bool();
  }
  auto* v = field(o, "routing_preferences");
  if (!v) return std::nullopt;
  if (!v->is_object()) return wrong_type("routing_preferences", "an object", *v);
  const auto& rp = v->get_object();
  if (auto* p = field(rp, "privacyLevel")) {
    if (!p->is_string() || (p->get_string() != "standard" && p->get_string() != "verified")) {
      return invalid_request("routing_preferences.privacyLevel", "'privacyLevel' must be \"standard\" or \"verified\"");
    }
    r.privacy_level = std::string(p->get_string());
  }
  if (auto* reg = field(rp, "region")) {
    if (reg->is_string()) {
      r.regions.emplace_back(reg->get_string().data(), reg->get_string().size());
    } else if (reg->is_array() && reg->get_array().size() <= 64) {
      for (const auto& x : reg->get_array()) {
        if (!x.is_string()) return invalid_request("routing_preferences.region", "'region' must list region names");
        r.regions.emplace_back(x.get_string().data(), x.get_string().size());
      }
    } else {
      return invalid_request("routing_preferences.region", "'region' must be a string or an array of at most 64 strings");
    }
  }
  return std::nullopt;
}

// The rest of a sealed request: what the gateway needs in plaintext, the
// sealed object, and nothing that belongs inside it.
std::variant<ChatRequest, ApiError> parse_sealed(const json::object& o, const json::value& sv, ChatRequest req) {
  for (const char* k : {"messages", "prompt", "temperature", "top_p", "top_k", "min_p", "presence_penalty",
                        "frequency_penalty", "seed", "logit_bias", "stop", "logprobs", "top_logprobs", "tools",
                        "tool_choice", "parallel_tool_calls", "functions", "function_call", "response_format",
                        "conversation_id", "conversation_ttl", "ignore_eos"}) {
    if (o.contains(k)) {
      return invalid_request(k, std::string("'") + k + "' belongs inside the sealed payload of an agora_sealed request");
    }
  }
  std::optional<int64_t> max_tokens, n;
  if (auto e = get_int(o, "max_tokens", max_tokens)) return *e;
  std::optional<int64_t> max_completion;
  if (auto e = get_int(o, "max_completion_tokens", max_completion)) return *e;
  if (max_completion) max_tokens = max_completion;
  if (!max_tokens || *max_tokens < 1) {
    return invalid_request("max_tokens", "a sealed request needs 'max_tokens' (at least 1) in plaintext");
  }
  req.generation.max_tokens = static_cast<int32_t>(std::min<int64_t>(*max_tokens, std::numeric_limits<int32_t>::max()));
  req.max_tokens_given = true;
  if (auto e = get_int(o, "n", n)) return *e;
  if (n && *n != 1) return invalid_request("n", "only n=1 is supported");
  if (auto e = get_bool(o, "stream", req.stream)) return *e;
  if (auto* so = field(o, "stream_options")) {
    if (!so->is_object()) return wrong_type("stream_options", "an object", *so);
    if (auto e = get_bool(so->get_object(), "include_usage", req.include_usage)) return *e;
  }
  if (auto e = parse_routing(o, req.routing)) return *e;

  auto bad = [](std::string what) { return invalid_request("agora_sealed", "agora_sealed: " + std::move(what)); };
  if (!sv.is_object()) return bad("must be an object");
  const auto& so = sv.get_object();
  auto str = [&](const char* k) -> const json::string* {
    auto* v = so.if_contains(k);
    return v && v->is_string() ? &v->get_string() : nullptr;
  };
  auto* ver = so.if_contains("v");
  if (!ver || !ver->is_int64() || ver->get_int64() != 1) return bad("'v' must be 1");
  if (auto* suite = str("suite"); !suite || *suite != protocol::sealed::kSuite) {
    return bad("'suite' must be \"" + std::string(protocol::sealed::kSuite) + "\"");
  }
  auto* issued = so.if_contains("issued_ms");
  if (!issued || !issued->is_int64() || issued->get_int64() < 0) return bad("'issued_ms' must be a Unix time in ms");
  auto* ct = str("ciphertext");
  auto ct_raw = ct ? crypto::from_base64(*ct) : std::nullopt;
  if (!ct_raw || ct_raw->size() < crypto::kAeadTagBytes) return bad("'ciphertext' must be base64 of the sealed payload");
  auto* rs = so.if_contains("recipients");
  if (!rs || !rs->is_array() || rs->get_array().empty() || rs->get_array().size() > protocol::sealed::kMaxRecipients) {
    return bad("'recipients' must list 1 to " + std::to_string(protocol::sealed::kMaxRecipients) + " nodes");
  }
  protocol::sealed::SealedRequest sr;
  sr.header.model = req.model;
  sr.header.max_tokens = req.generation.max_tokens;
  sr.header.stream = req.stream;
  sr.header.issued_ms = issued->get_int64();
  for (const auto& rv : rs->get_array()) {
    const json::object* r = rv.is_object() ? &rv.get_object() : nullptr;
    const json::value* id = r ? r->if_contains("node_id") : nullptr;
    const json::value* enc = r ? r->if_contains("enc") : nullptr;
    const json::value* key = r ? r->if_contains("key") : nullptr;
    if (!id || !id->is_string() || id->get_string().empty() || id->get_string().size() > 128 || !enc ||
        !enc->is_string() || !key || !key->is_string()) {
      return bad("each recipient needs 'node_id', 'enc' and 'key'");
    }
    auto enc_raw = crypto::from_base64(enc->get_string());
    auto key_raw = crypto::from_base64(key->get_string());
    if (!enc_raw || enc_raw->size() != crypto::hpke::kPublicKeyBytes || !key_raw ||
        key_raw->size() != 32 + crypto::kAeadTagBytes) {
      return bad("a recipient's 'enc' (32 bytes) or 'key' (48 bytes) is not valid base64 of its size");
    }
    std::string node_id(id->get_string());
    if (std::find(sr.header.recipients.begin(), sr.header.recipients.end(), node_id) != sr.header.recipients.end()) {
      return bad("node '" + node_id + "' is listed twice");
    }
    sr.header.recipients.push_back(node_id);
    sr.keys.push_back(protocol::sealed::WrappedKey{std::move(node_id), std::move(*enc_raw), std::move(*key_raw)});
  }
  sr.ciphertext = std::move(*ct_raw);
  req.routing.node_ids = sr.header.recipients;
  req.sealed = std::move(sr);
  return req;
}

}  // namespace

std::variant<ChatRequest, ApiError> parse_chat_request(std::string_view body, const RequestLimits& limits) {
  json::parse_options opts;
  opts.max_depth = limits.max_json_depth;
  boost::system::error_code ec;
  json::monotonic_resource mr;
  json::value v = json::parse(body, ec, &mr, opts);
  if (ec) {
    if (ec == json::error::too_deep) {
      return invalid_request("", "the request body nests JSON deeper than " + std::to_string(limits.max_json_depth) +
                                     " levels");
    }
    return invalid_request("", "the request body is not valid JSON (" + ec.message() + ")");
  }
  if (!v.is_object()) return invalid_request("", "the request body must be a JSON object");
  const auto& o = v.get_object();
  ChatRequest req;
  auto& g = req.generation;

  auto* model = o.if_contains("model");
  if (!model || model->is_null()) return invalid_request("model", "'model' is required");
  if (!model->is_string()) return wrong_type("model", "a string", *model);
  if (model->get_string().empty() || model->get_string().size() > 256) {
    return invalid_request("model", "'model' must be 1 to 256 characters");
  }
  req.model = std::string(model->get_string());
  if (auto* sealed = field(o, "agora_sealed")) return parse_sealed(o, *sealed, std::move(req));

  if (auto e = parse_messages(o, limits, g.messages)) return *e;

  std::optional<int64_t> max_tokens, n, seed, top_logprobs;
  if (auto e = get_int(o, "max_tokens", max_tokens)) return *e;
  std::optional<int64_t> max_completion;
  if (auto e = get_int(o, "max_completion_tokens", max_completion)) return *e;
  if (max_completion) max_tokens = max_completion;
  if (max_tokens) {
    const std::string p = max_completion ? "max_completion_tokens" : "max_tokens";
    if (*max_tokens < 1) return invalid_request(p, "'" + p + "' must be at least 1");
    g.max_tokens = static_cast<int32_t>(std::min<int64_t>(*max_tokens, std::numeric_limits<int32_t>::max()));
    req.max_tokens_given = true;
  }
  if (auto e = get_int(o, "n", n)) return *e;
  if (n && *n != 1) return invalid_request("n", "only n=1 is supported");
  if (auto e = detail::parse_tool_fields(o, g)) return *e;

  auto& s = g.sampling;
  if (auto e = get_number(o, "temperature", s.temperature)) return *e;
  if (auto e = get_number(o, "top_p", s.top_p)) return *e;
  if (auto e = get_number(o, "presence_penalty", s.presence_penalty)) return *e;
  if (auto e = get_number(o, "frequency_penalty", s.frequency_penalty)) return *e;
  if (auto e = get_int(o, "seed", seed)) return *e;
  if (seed) s.seed = static_cast<uint32_t>(static_cast<uint64_t>(*seed) ^ (static_cast<uint64_t>(*seed) >> 32));
  if (auto e = parse_logit_bias(o, s)) return *e;
  if (auto e = parse_stop(o, limits, g.stop)) return *e;
  if (auto e = get_bool(o, "logprobs", g.logprobs)) return *e;
  if (auto e = get_int(o, "top_logprobs", top_logprobs)) return *e;
  if (top_logprobs) {
    if (*top_logprobs < 0 || *top_logprobs > kMaxTopLogprobs) {
      return invalid_request("top_logprobs", "'top_logprobs' must be between 0 and 20");
    }
    g.top_logprobs = static_cast<int32_t>(*top_logprobs);
  }
  // llama.cpp server's extension, for benchmarks: generate exactly max_tokens.
  if (auto e = get_bool(o, "ignore_eos", g.ignore_eos)) return *e;
  if (auto e = get_bool(o, "stream", req.stream)) return *e;
  if (auto* so = field(o, "stream_options")) {
    if (!so->is_object()) return wrong_type("stream_options", "an object", *so);
    if (!req.stream) return invalid_request("stream_options", "'stream_options' is only allowed when 'stream' is true");
    if (auto e = get_bool(so->get_object(), "include_usage", req.include_usage)) {
      e->param = "stream_options.include_usage";
      return *e;
    }
  }
  if (auto* u = field(o, "user")) {
    if (!u->is_string()) return wrong_type("user", "a string", *u);
    if (u->get_string().size() > 256) return invalid_request("user", "'user' must be at most 256 characters");
    req.user = std::string(u->get_string());
  }
  if (auto e = parse_routing(o, req.routing)) return *e;
  if (auto* c = field(o, "conversation_id")) {
    if (!c->is_string()) return wrong_type("conversation_id", "a string", *c);
    std::string id(c->get_string());
    if (!valid_conversation_id(id)) {
      return invalid_request("conversation_id",
                             "'conversation_id' must be 1 to 128 characters of letters, digits and . _ : -");
    }
    req.conversation_id = std::move(id);
  }
  if (auto e = get_int(o, "conversation_ttl", req.conversation_ttl_s)) return *e;
  if (req.conversation_ttl_s) {
    if (!req.conversation_id) {
      return invalid_request("conversation_ttl", "'conversation_ttl' is only allowed with 'conversation_id'");
    }
    if (*req.conversation_ttl_s < 1 || *req.conversation_ttl_s > kMaxConversationTtlS) {
      return invalid_request("conversation_ttl", "'conversation_ttl' must be between 1 and 31536000 seconds");
    }
  }

  // What the request needs of a node: its template's tools (for tool
  // definitions, calls or results in the conversation), grammars.
  req.routing.needs_tools = !g.tools.empty();
  for (const auto& m : g.messages) req.routing.needs_tools |= !m.tool_calls.empty() || m.role == "tool";
  if (req.conversation_id && req.routing.needs_tools) {
    return invalid_request("conversation_id", "conversation memory does not keep tool calls; send the whole "
                                              "conversation in 'messages' instead of 'conversation_id'");
  }
  req.routing.needs_grammar = g.response_format.type != protocol::ResponseFormat::Type::text;

  // Range checks shared with the engine, and the schema keywords the grammar
  // enforces (checked again on the node, which sealed requests reach
  // unseen); their messages name the parameter.
  Status st = protocol::validate_request(g);
  if (st) st = protocol::check_request_schemas(g);
  if (!st) {
    // The engine's messages start with the parameter in quotes: 'top_p' must …
    const std::string& msg = st.error().message;
    std::string param;
    if (msg.size() > 2 && msg[0] == '\'') {
      auto end = msg.find('\'', 1);
      if (end != std::string::npos) param = msg.substr(1, end - 1);
    }
    return invalid_request(param, msg);
  }
  return req;
}

bool valid_conversation_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char ch : id) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
                    ch == '_' || ch == ':' || ch == '-';
    if (!ok) return false;
  }
  return true;
}

const char* openai_finish_reason(protocol::FinishReason r) {
  switch (r) {
    case protocol::FinishReason::length: return "length";
    case protocol::FinishReason::tool_calls: return "tool_calls";
    default: return "stop";
  }
}

std::string usage_json(const protocol::Usage& u) {
  std::string out = "{\"prompt_tokens\":";
  append_json_number(out, int64_t{u.prompt_tokens});
  out += ",\"completion_tokens\":";
  append_json_number(out, int64_t{u.completion_tokens});
  out += ",\"total_tokens\":";
  append_json_number(out, int64_t{u.prompt_tokens} + u.completion_tokens);
  out += ",\"prompt_tokens_details\":{\"cached_tokens\":";
  append_json_number(out, int64_t{u.cached_prompt_tokens});
  out += "}}";
  return out;
}

namespace {

// {"seq","final","ciphertext"[,"node_id"]}
void append_sealed_chunk(std::string& out, const protocol::SealedChunk& c, std::string_view node_id = {}) {
  out += "{\"seq\":";
  append_json_number(out, static_cast<int64_t>(c.seq));
  out += c.final ? ",\"final\":true,\"ciphertext\":\"" : ",\"final\":false,\"ciphertext\":\"";
  out += crypto::to_base64(c.ciphertext);
  out += '"';
  if (!node_id.empty()) {
    out += ",\"node_id\":";
    append_json_string(out, node_id);
  }
  out += '}';
}

void append_provenance(std::string& out, const Provenance& p) {
  out += "\"agora\":{\"provider_id\":";
  append_json_string(out, p.provider_id);
  out += ",\"model_sha256\":";
  append_json_string(out, p.model_sha256);
  out += ",\"generation_id\":";
  append_json_string(out, p.generation_id);
  out += ",\"attestation\":";
  append_json_string(out, p.attestation);
  if (p.overhead_us >= 0) {
    out += ",\"overhead_us\":";
    append_json_number(out, p.overhead_us);
  }
  if (!p.node_id.empty()) {
    out += ",\"node_id\":";
    append_json_string(out, p.node_id);
  }
  if (p.conversation_turns >= 0) {
    out += ",\"conversation\":{\"turns_used\":";
    append_json_number(out, int64_t{p.conversation_turns});
    out += ",\"turns_dropped\":";
    append_json_number(out, int64_t{p.conversation_turns_dropped});
    out += '}';
  }
  out += '}';
}

}  // namespace

void append_logprobs_content(std::string& out, const std::vector<protocol::TokenLogprob>& lps) {
  out += "{\"content\":[";
  for (size_t i = 0; i < lps.size(); ++i) {
    const auto& lp = lps[i];
    if (i) out += ',';
    out += "{\"token\":";
    append_json_string(out, lp.text);
    out += ",\"logprob\":";
    append_json_number(out, double{lp.logprob});
    out += ",\"bytes\":";
    append_json_bytes(out, lp.text);
    out += ",\"top_logprobs\":[";
    for (size_t k = 0; k < lp.top.size(); ++k) {
      if (k) out += ',';
      out += "{\"token\":";
      append_json_string(out, lp.top[k].text);
      out += ",\"logprob\":";
      append_json_number(out, double{lp.top[k].logprob});
      out += ",\"bytes\":";
      append_json_bytes(out, lp.top[k].text);
      out += '}';
    }
    out += "]}";
  }
  out += "],\"refusal\":null}";
}

std::string completion_body(const std::string& id, int64_t created, const std::string& model,
                            const CompletionResult& r, const Provenance& provenance) {
  std::string out;
  out.reserve(256 + r.text.size());
  out += "{\"id\":";
  append_json_string(out, id);
  out += ",\"object\":\"chat.completion\",\"created\":";
  append_json_number(out, created);
  out += ",\"model\":";
  append_json_string(out, model);
  out += ",\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":";
  // Only calls: content is null, as OpenAI answers.
  if (r.sealed || (r.text.empty() && !r.tool_calls.empty())) out += "null";
  else append_json_string(out, r.text);
  out += ",\"refusal\":null";
  if (!r.tool_calls.empty()) {
    out += ',';
    detail::append_message_tool_calls(out, r.tool_calls);
  }
  out += "},\"logprobs\":";
  if (r.logprobs_requested) append_logprobs_content(out, r.logprobs);
  else out += "null";
  out += ",\"finish_reason\":\"";
  out += openai_finish_reason(r.finish);
  out += "\"}],\"usage\":";
  out += usage_json(r.usage);
  out += ',';
  append_provenance(out, provenance);
  if (r.sealed) {
    out += ",\"agora_sealed\":{\"chunks\":[";
    for (size_t i = 0; i < r.chunks.size(); ++i) {
      if (i) out += ',';
      append_sealed_chunk(out, r.chunks[i]);
    }
    out += "]}";
  }
  out += '}';
  return out;
}

ChunkWriter::ChunkWriter(std::string id, int64_t created, std::string model, bool include_usage, bool logprobs)
    : include_usage_(include_usage), logprobs_(logprobs) {
  prefix_ = "data: {\"id\":";
  append_json_string(prefix_, id);
  prefix_ += ",\"object\":\"chat.completion.chunk\",\"created\":";
  append_json_number(prefix_, created);
  prefix_ += ",\"model\":";
  append_json_string(prefix_, model);
  prefix_ += ",\"system_fingerprint\":null,";
}

void ChunkWriter::sealed(std::string& out, const protocol::SealedChunk& chunk, std::string_view node_id) {
  out += prefix_;
  out += "\"choices\":[],\"agora_sealed\":";
  append_sealed_chunk(out, chunk, node_id);
  out += "}\n\n";
}

void ChunkWriter::open_chunk(std::string& out) {
  out += prefix_;
  out += "\"choices\":[{\"index\":0,\"delta\":{";
  if (first_) {
    out += "\"role\":\"assistant\",";
    first_ = false;
  }
}

void ChunkWriter::content(std::string& out, std::string_view text, const std::vector<protocol::TokenLogprob>& lps) {
  open_chunk(out);
  out += "\"content\":";
  append_json_string(out, text);
  out += "},\"logprobs\":";
  if (logprobs_) append_logprobs_content(out, lps);
  else out += "null";
  out += ",\"finish_reason\":null}]";
  if (include_usage_) out += ",\"usage\":null";
  out += "}\n\n";
}

void ChunkWriter::tool_calls(std::string& out, const std::vector<protocol::ToolCallDelta>& calls) {
  open_chunk(out);
  detail::append_delta_tool_calls(out, calls);
  out += "},\"logprobs\":null,\"finish_reason\":null}]";
  if (include_usage_) out += ",\"usage\":null";
  out += "}\n\n";
}

void ChunkWriter::finish(std::string& out, std::string_view text, const std::vector<protocol::TokenLogprob>& lps,
                         protocol::FinishReason reason, const Provenance& provenance) {
  open_chunk(out);
  if (!text.empty() || out.ends_with(",")) {
    // Either real text, or the first chunk (role only): keep content present.
    out += "\"content\":";
    append_json_string(out, text);
  }
  out += "},\"logprobs\":";
  if (logprobs_ && !lps.empty()) append_logprobs_content(out, lps);
  else out += "null";
  out += ",\"finish_reason\":\"";
  out += openai_finish_reason(reason);
  out += "\"}]";
  if (include_usage_) {
    out += ",\"usage\":null}\n\n";
  } else {
    out += ',';
    append_provenance(out, provenance);
    out += "}\n\n";
  }
}

void ChunkWriter::usage(std::string& out, const protocol::Usage& u, const Provenance& provenance) {
  out += prefix_;
  out += "\"choices\":[],\"usage\":";
  out += usage_json(u);
  out += ',';
  append_provenance(out, provenance);
  out += "}\n\n";
}

void ChunkWriter::done(std::string& out) { out += "data: [DONE]\n\n"; }

void ChunkWriter::error(std::string& out, const ApiError& e) {
  out += "data: ";
  out += error_body(e);
  out += "\n\n";
}

void ChunkWriter::sealed_error(std::string& out, const ApiError& e, std::string_view node_id,
                               const protocol::SealedChunk& chunk) {
  out += "data: ";
  out += sealed_error_body(e, node_id, {chunk});
  out += "\n\n";
}

std::string sealed_error_body(const ApiError& e, std::string_view node_id, const std::vector<protocol::SealedChunk>& chunks) {
  std::string out = error_body(e);
  out.pop_back();  // the closing brace
  out += ",\"agora_sealed\":{\"node_id\":";
  append_json_string(out, node_id);
  out += ",\"chunks\":[";
  for (size_t i = 0; i < chunks.size(); ++i) {
    if (i) out += ',';
    append_sealed_chunk(out, chunks[i]);
  }
  out += "]}}";
  return out;
}

void add_tool_call_deltas(std::vector<protocol::ToolCallDelta>& calls, const std::vector<protocol::ToolCallDelta>& deltas) {
  for (const auto& d : deltas) {
    auto it = std::find_if(calls.begin(), calls.end(), [&](const auto& c) { return c.index == d.index; });
    if (it == calls.end()) {
      calls.push_back(d);
      continue;
    }
    if (it->id.empty()) it->id = d.id;
    if (it->name.empty()) it->name = d.name;
    it->arguments += d.arguments;
  }
}

}  // namespace agora::openai
