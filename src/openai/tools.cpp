#include "openai/tools.h"

#include <boost/json.hpp>

#include "common/generation_rules.h"
#include "common/json_text.h"

namespace agora::openai::detail {
namespace json = boost::json;

namespace {

// Present and not null.
const json::value* field(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  return (v && !v->is_null()) ? v : nullptr;
}

ApiError must_be(const std::string& param, std::string_view what) {
  return invalid_request(param, "'" + param + "' must be " + std::string(what));
}

std::optional<ApiError> get_string(const json::object& o, std::string_view key, const std::string& param,
                                   std::string& out, bool required) {
  auto* v = field(o, key);
  if (!v) return required ? std::optional(invalid_request(param, "'" + param + "' is required")) : std::nullopt;
  if (!v->is_string()) return must_be(param, "a string");
  out.assign(v->get_string().data(), v->get_string().size());
  return std::nullopt;
}

std::optional<ApiError> get_bool(const json::object& o, std::string_view key, const std::string& param, bool& out) {
  auto* v = field(o, key);
  if (!v) return std::nullopt;
  if (!v->is_bool()) return must_be(param, "a boolean");
  out = v->get_bool();
  return std::nullopt;
}

// A schema object as JSON text (the wire carries it so; the node parses it).
std::optional<ApiError> get_schema(const json::object& o, std::string_view key, const std::string& param,
                                   std::string& out) {
  auto* v = field(o, key);
  if (!v) return std::nullopt;
  if (!v->is_object()) return must_be(param, "a JSON Schema object");
  out = json::serialize(*v);
  return std::nullopt;
}

std::optional<ApiError> parse_tools(const json::value& v, std::vector<protocol::ToolDef>& out) {
  if (!v.is_array()) return must_be("tools", "an array of tools");
  const auto& arr = v.get_array();
  if (arr.size() > kMaxTools) {
    return invalid_request("tools", "'tools' has " + std::to_string(arr.size()) + " entries; the limit is " +
                                        std::to_string(kMaxTools));
  }
  for (size_t i = 0; i < arr.size(); ++i) {
    const std::string p = "tools[" + std::to_string(i) + "]";
    if (!arr[i].is_object()) return must_be(p, "an object");
    const auto& t = arr[i].get_object();
    std::string type;
    if (auto e = get_string(t, "type", p + ".type", type, true)) return e;
    if (type != "function") {
      return invalid_request(p + ".type", "tools of type '" + type + "' are not supported; only 'function' is");
    }
    auto* f = field(t, "function");
    if (!f || !f->is_object()) return must_be(p + ".function", "an object with the function's 'name'");
    const auto& fo = f->get_object();
    protocol::ToolDef def;
    if (auto e = get_string(fo, "name", p + ".function.name", def.name, true)) return e;
    if (auto e = get_string(fo, "description", p + ".function.description", def.description, false)) return e;
    if (auto e = get_schema(fo, "parameters", p + ".function.parameters", def.parameters)) return e;
    if (auto e = get_bool(fo, "strict", p + ".function.strict", def.strict)) return e;
    out.push_back(std::move(def));
  }
  return std::nullopt;
}

std::optional<ApiError> parse_tool_choice(const json::value& v, protocol::ToolChoice& out) {
  using Mode = protocol::ToolChoiceMode;
  if (v.is_string()) {
    const std::string_view s = v.get_string();
    if (s == "auto") out.mode = Mode::automatic;
    else if (s == "none") out.mode = Mode::none;
    else if (s == "required") out.mode = Mode::required;
    else return must_be("tool_choice", "\"none\", \"auto\", \"required\" or {\"type\":\"function\",\"function\":{\"name\":…}}");
    return std::nullopt;
  }
  const json::object* o = v.if_object();
  const json::value* type = o ? o->if_contains("type") : nullptr;
  const json::value* f = o ? o->if_contains("function") : nullptr;
  if (!type || !type->is_string() || type->get_string() != "function" || !f || !f->is_object()) {
    return must_be("tool_choice", "\"none\", \"auto\", \"required\" or {\"type\":\"function\",\"function\":{\"name\":…}}");
  }
  out.mode = Mode::named;
  return get_string(f->get_object(), "name", "tool_choice.function.name", out.name, true);
}

std::optional<ApiError> parse_response_format(const json::value& v, protocol::ResponseFormat& out) {
  using Type = protocol::ResponseFormat::Type;
  const json::object* o = v.if_object();
  const json::value* t = o ? o->if_contains("type") : nullptr;
  if (!t || !t->is_string()) return must_be("response_format", "an object with a 'type'");
  const std::string_view type = t->get_string();
  if (type == "text") {
    out.type = Type::text;
    return std::nullopt;
  }
  if (type == "json_object") {
    out.type = Type::json_object;
    return std::nullopt;
  }
  if (type != "json_schema") {
    return invalid_request("response_format.type", "response_format '" + std::string(type) +
                                                       "' is not supported; use 'text', 'json_object' or 'json_schema'");
  }
  out.type = Type::json_schema;
  auto* js = field(*o, "json_schema");
  if (!js || !js->is_object()) {
    return must_be("response_format.json_schema", "an object with the schema's 'name' and 'schema'");
  }
  const auto& jo = js->get_object();
  if (auto e = get_string(jo, "name", "response_format.json_schema.name", out.name, true)) return e;
  if (!valid_function_name(out.name)) {
    return must_be("response_format.json_schema.name", "1-64 characters of a-z, A-Z, 0-9, _ and -");
  }
  if (auto e = get_schema(jo, "schema", "response_format.json_schema.schema", out.schema)) return e;
  if (out.schema.empty()) return invalid_request("response_format.json_schema.schema", "'response_format.json_schema.schema' is required");
  return get_bool(jo, "strict", "response_format.json_schema.strict", out.strict);
}

}  // namespace

std::optional<ApiError> parse_tool_fields(const json::object& o, protocol::GenerationRequest& g) {
  if (field(o, "functions") || field(o, "function_call")) {
    return invalid_request(field(o, "functions") ? "functions" : "function_call",
                           "the deprecated 'functions' and 'function_call' are not supported; use 'tools' and 'tool_choice'");
  }
  if (auto* v = field(o, "tools")) {
    if (auto e = parse_tools(*v, g.tools)) return e;
  }
  if (auto* v = field(o, "tool_choice")) {
    if (auto e = parse_tool_choice(*v, g.tool_choice)) return e;
  }
  if (auto e = get_bool(o, "parallel_tool_calls", "parallel_tool_calls", g.parallel_tool_calls)) return e;
  if (auto* v = field(o, "response_format")) {
    if (auto e = parse_response_format(*v, g.response_format)) return e;
  }
  // Without tools, "none", "auto" and parallel_tool_calls are accepted and
  // mean nothing (clients send them by default); "required" and a named
  // function are refused by the request rules.
  return std::nullopt;
}

std::optional<ApiError> parse_message_tool_calls(const json::value& v, const std::string& param,
                                                 std::vector<protocol::ToolCall>& out) {
  if (!v.is_array() || v.get_array().empty()) return must_be(param, "a non-empty array of tool calls");
  if (v.get_array().size() > kMaxToolCallsPerMessage) {
    return invalid_request(param, "'" + param + "' may hold at most " + std::to_string(kMaxToolCallsPerMessage) + " calls");
  }
  size_t i = 0;
  for (const auto& c : v.get_array()) {
    const std::string p = param + "[" + std::to_string(i++) + "]";
    if (!c.is_object()) return must_be(p, "an object");
    const auto& co = c.get_object();
    protocol::ToolCall call;
    if (auto e = get_string(co, "id", p + ".id", call.id, true)) return e;
    std::string type = "function";
    if (auto e = get_string(co, "type", p + ".type", type, false)) return e;
    if (type != "function") return invalid_request(p + ".type", "tool calls of type '" + type + "' are not supported");
    auto* f = field(co, "function");
    if (!f || !f->is_object()) return must_be(p + ".function", "an object with 'name' and 'arguments'");
    if (auto e = get_string(f->get_object(), "name", p + ".function.name", call.name, true)) return e;
    if (auto e = get_string(f->get_object(), "arguments", p + ".function.arguments", call.arguments, true)) return e;
    out.push_back(std::move(call));
  }
  return std::nullopt;
}

void append_message_tool_calls(std::string& out, const std::vector<protocol::ToolCallDelta>& calls) {
  out += "\"tool_calls\":[";
  for (size_t i = 0; i < calls.size(); ++i) {
    if (i) out += ',';
    out += "{\"id\":";
    append_json_string(out, calls[i].id);
    out += ",\"type\":\"function\",\"function\":{\"name\":";
    append_json_string(out, calls[i].name);
    out += ",\"arguments\":";
    append_json_string(out, calls[i].arguments);
    out += "}}";
  }
  out += ']';
}

void append_delta_tool_calls(std::string& out, const std::vector<protocol::ToolCallDelta>& calls) {
  out += "\"tool_calls\":[";
  for (size_t i = 0; i < calls.size(); ++i) {
    const auto& c = calls[i];
    if (i) out += ',';
    out += "{\"index\":";
    append_json_number(out, int64_t{c.index});
    if (!c.id.empty() || !c.name.empty()) {
      // A call's first fragment: OpenAI sends id, type and name with it.
      out += ",\"id\":";
      append_json_string(out, c.id);
      out += ",\"type\":\"function\",\"function\":{\"name\":";
      append_json_string(out, c.name);
      out += ",\"arguments\":";
    } else {
      out += ",\"function\":{\"arguments\":";
    }
    append_json_string(out, c.arguments);
    out += "}}";
  }
  out += ']';
}

}  // namespace agora::openai::detail
