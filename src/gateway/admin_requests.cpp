#include "gateway/admin_requests.h"

#include <boost/json.hpp>
#include <optional>

namespace agora::gateway {
namespace json = boost::json;

ApiError admin_error(int status, std::string code, std::string message, std::string param) {
  ApiError e;
  e.status = status;
  e.type = status >= 500 ? "server_error" : "invalid_request_error";
  e.code = std::move(code);
  e.param = std::move(param);
  e.message = std::move(message);
  return e;
}

std::string key_spec_field(const std::string& message) {
  // validate_key_spec's messages start with the field's name.
  std::string param = message.substr(0, message.find(':'));
  if (param.find(' ') != std::string::npos) param.clear();
  return param;
}

namespace {

constexpr unsigned kMaxBodyDepth = 8;

// A limit from JSON: absent → default, null → none (0), positive integer.
std::optional<std::string> read_limit(const json::object& o, const char* name, store::Limit& out) {
  const auto* v = o.if_contains(name);
  if (!v) return std::nullopt;
  if (v->is_null()) {
    out = 0;
    return std::nullopt;
  }
  if (v->is_int64() && v->as_int64() >= 1) {
    out = v->as_int64();
    return std::nullopt;
  }
  return std::string(name) + ": must be a positive integer or null (no limit)";
}

ApiError bad_spec(std::string message, std::string param) {
  return admin_error(400, "invalid_key_request", std::move(message), std::move(param));
}

}  // namespace

std::variant<store::KeySpec, ApiError> parse_key_spec(std::string_view body, int64_t now_ms) {
  boost::system::error_code ec;
  json::parse_options opts;
  opts.max_depth = kMaxBodyDepth;
  json::value v = json::parse(body, ec, {}, opts);
  if (ec || !v.is_object()) return admin_error(400, "invalid_json", "The body must be a JSON object");
  const auto& o = v.as_object();
  store::KeySpec spec;
  const auto* name = o.if_contains("name");
  if (!name || !name->is_string()) return bad_spec("name: required string", "name");
  spec.name = std::string(name->as_string());
  for (const char* f : {"rpm", "tpm", "max_concurrent"}) {
    store::Limit& l = f == std::string_view("rpm") ? spec.rpm : f == std::string_view("tpm") ? spec.tpm : spec.max_concurrent;
    if (auto err = read_limit(o, f, l)) return bad_spec(*err, f);
  }
  if (const auto* e = o.if_contains("expires_in"); e && !e->is_null()) {
    if (!e->is_string()) return bad_spec("expires_in: a duration such as \"30d\"", "expires_in");
    auto d = store::parse_duration_ms(std::string(e->as_string()));
    if (!d || *d <= 0) return bad_spec("expires_in: a positive duration such as \"30d\"", "expires_in");
    spec.expires_ms = now_ms + *d;
  }
  if (const auto* m = o.if_contains("models"); m && !m->is_null()) {
    if (!m->is_array()) return bad_spec("models: an array of model names", "models");
    for (const auto& item : m->as_array()) {
      if (!item.is_string()) return bad_spec("models: an array of model names", "models");
      spec.models.emplace_back(item.as_string());
    }
  }
  if (Status st = store::validate_key_spec(spec, now_ms); !st) {
    return bad_spec(st.error().message, key_spec_field(st.error().message));
  }
  return spec;
}

std::variant<int64_t, ApiError> parse_rotate_grace(std::string_view body) {
  if (body.empty()) return kDefaultRotateGraceMs;
  boost::system::error_code ec;
  json::parse_options opts;
  opts.max_depth = kMaxBodyDepth;
  json::value v = json::parse(body, ec, {}, opts);
  const json::value* g = !ec && v.is_object() ? v.as_object().if_contains("grace") : nullptr;
  if (ec || !v.is_object() || (g && !g->is_string())) {
    return bad_spec("The body must be a JSON object such as {\"grace\": \"24h\"}", "grace");
  }
  if (!g) return kDefaultRotateGraceMs;
  auto d = store::parse_duration_ms(std::string(g->as_string()));
  if (!d) return bad_spec("grace: " + d.error().message, "grace");
  return *d;
}

}  // namespace agora::gateway
