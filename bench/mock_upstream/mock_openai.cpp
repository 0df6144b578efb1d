#include "mock_openai.h"

#include <algorithm>
#include <boost/json.hpp>

#include "common/json_text.h"

namespace agora::mock {
namespace {

namespace json = boost::json;

constexpr std::string_view kAssistantOpen = "<|assistant|>";
constexpr int64_t kBytesPerToken = 4;

Error invalid(std::string message) { return make_error(Errc::invalid_argument, std::move(message)); }

// Bytes of a message's text: a string, or the "text" of an array of parts.
int64_t content_bytes(const json::value& content) {
  if (const auto* s = content.if_string()) return static_cast<int64_t>(s->size());
  int64_t n = 0;
  if (const auto* parts = content.if_array()) {
    for (const auto& part : *parts) {
      const auto* o = part.if_object();
      const json::value* text = o ? o->if_contains("text") : nullptr;
      if (text && text->is_string()) n += static_cast<int64_t>(text->get_string().size());
    }
  }
  return n;
}

Result<int64_t> get_count(const json::object& o, std::string_view key) {
  const json::value& v = o.at(key);
  if (const auto* i = v.if_int64(); i && *i >= 0) return *i;
  if (const auto* u = v.if_uint64()) return static_cast<int64_t>(std::min<uint64_t>(*u, INT64_MAX));
  std::string message = "'";  // (not one `+` chain: GCC 12 warns -Wrestrict on it)
  message.append(key).append("' must be a non-negative integer");
  return invalid(std::move(message));
}

}  // namespace

Result<ChatRequest> parse_chat_request(std::string_view body) {
  json::parse_options popt;
  popt.max_depth = 32;
  boost::system::error_code ec;
  json::value doc = json::parse(body, ec, {}, popt);
  if (ec) return invalid("the body is not valid JSON: " + ec.message());
  const auto* o = doc.if_object();
  if (!o) return invalid("the body must be a JSON object");

  ChatRequest req;
  if (const auto* m = o->if_contains("model")) {
    if (!m->is_string()) return invalid("'model' must be a string");
    req.model = m->get_string();
  }
  const auto* messages = o->if_contains("messages");
  if (!messages || !messages->is_array() || messages->get_array().empty()) {
    return invalid("'messages' must be a non-empty array");
  }
  int64_t bytes = static_cast<int64_t>(kAssistantOpen.size());
  for (const auto& m : messages->get_array()) {
    const auto* mo = m.if_object();
    const json::value* role = mo ? mo->if_contains("role") : nullptr;
    if (!role || !role->is_string()) return invalid("each message must be an object with a string 'role'");
    const json::value* content = mo->if_contains("content");
    bytes += 2 + static_cast<int64_t>(role->get_string().size()) + 2 + (content ? content_bytes(*content) : 0) + 1;
  }
  req.prompt_tokens = (bytes + kBytesPerToken - 1) / kBytesPerToken;

  if (const auto* s = o->if_contains("stream"); s && !s->is_null()) {
    if (!s->is_bool()) return invalid("'stream' must be a boolean");
    req.stream = s->get_bool();
  }
  if (const auto* so = o->if_contains("stream_options"); so && !so->is_null()) {
    const auto* sop = so->if_object();
    if (!sop) return invalid("'stream_options' must be an object");
    if (const auto* iu = sop->if_contains("include_usage"); iu && !iu->is_null()) {
      if (!iu->is_bool()) return invalid("'stream_options.include_usage' must be a boolean");
      req.include_usage = iu->get_bool();
    }
  }
  for (std::string_view key : {"max_tokens", "max_completion_tokens"}) {
    const auto* v = o->if_contains(key);
    if (!v || v->is_null()) continue;
    auto n = get_count(*o, key);
    if (!n) return n.error();
    req.max_tokens = std::min(req.max_tokens, *n);
  }
  return req;
}

Answer make_answer(std::string id, int64_t created, ChatRequest request, const AnswerOptions& options) {
  Answer a;
  a.id = std::move(id);
  a.created = created;
  a.truncated = options.tokens > request.max_tokens;
  a.n_tokens = a.truncated ? request.max_tokens : options.tokens;
  a.request = std::move(request);
  return a;
}

namespace {

void append_usage(std::string& out, const Answer& a) {
  out += "{\"prompt_tokens\":";
  append_json_number(out, a.request.prompt_tokens);
  out += ",\"completion_tokens\":";
  append_json_number(out, a.n_tokens);
  out += ",\"total_tokens\":";
  append_json_number(out, a.request.prompt_tokens + a.n_tokens);
  out += ",\"prompt_tokens_details\":{\"cached_tokens\":0}}";
}

const char* finish_reason(const Answer& a) { return a.truncated ? "length" : "stop"; }

}  // namespace

std::string completion_body(const Answer& a, const AnswerOptions& options) {
  std::string text;
  text.reserve(static_cast<size_t>(a.n_tokens) * options.token_text.size());
  for (int64_t k = 0; k < a.n_tokens; ++k) text += options.token_text;
  std::string out;
  out.reserve(320 + text.size() + a.request.model.size());
  out += "{\"id\":";
  append_json_string(out, a.id);
  out += ",\"object\":\"chat.completion\",\"created\":";
  append_json_number(out, a.created);
  out += ",\"model\":";
  append_json_string(out, a.request.model);
  out += ",\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":";
  append_json_string(out, text);
  out += ",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"";
  out += finish_reason(a);
  out += "\"}],\"usage\":";
  append_usage(out, a);
  out += '}';
  return out;
}

StreamRenderer::StreamRenderer(const Answer& answer, const AnswerOptions& options)
    : answer_(answer), options_(options) {
  prefix_ = "data: {\"id\":";
  append_json_string(prefix_, answer.id);
  prefix_ += ",\"object\":\"chat.completion.chunk\",\"created\":";
  append_json_number(prefix_, answer.created);
  prefix_ += ",\"model\":";
  append_json_string(prefix_, answer.request.model);
  prefix_ += ",\"system_fingerprint\":null,";
}

void StreamRenderer::open_chunk(std::string& out) {
  out += prefix_;
  out += "\"choices\":[{\"index\":0,\"delta\":{";
  if (step_ == 0) out += "\"role\":\"assistant\",";
}

bool StreamRenderer::next(std::string& out) {
  const int64_t n = answer_.n_tokens;
  const char* usage_null = answer_.request.include_usage ? ",\"usage\":null" : "";
  if (step_ < n) {
    open_chunk(out);
    out += "\"content\":";
    append_json_string(out, options_.token_text);
    out += "},\"logprobs\":null,\"finish_reason\":null}]";
    out += usage_null;
    out += "}\n\n";
  } else if (step_ == n) {
    open_chunk(out);
    if (n == 0) out += "\"content\":\"\"";  // the only chunk: role and empty content
    out += "},\"logprobs\":null,\"finish_reason\":\"";
    out += finish_reason(answer_);
    out += "\"}]";
    out += usage_null;
    out += "}\n\n";
    if (!answer_.request.include_usage) ++step_;  // no usage chunk
  } else if (step_ == n + 1) {
    out += prefix_;
    out += "\"choices\":[],\"usage\":";
    append_usage(out, answer_);
    out += "}\n\n";
  } else if (step_ == n + 2) {
    out += "data: [DONE]\n\n";
  } else {
    return false;
  }
  ++step_;
  return true;
}

std::string error_body(std::string_view message, std::string_view type, std::string_view code) {
  std::string out = "{\"error\":{\"message\":";
  append_json_string(out, message);
  out += ",\"type\":";
  append_json_string(out, type);
  out += ",\"param\":null,\"code\":";
  append_json_string(out, code);
  out += "}}";
  return out;
}

}  // namespace agora::mock
