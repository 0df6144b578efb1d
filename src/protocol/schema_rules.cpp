#include "protocol/schema_rules.h"

#include <boost/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <optional>

namespace agora::protocol {
namespace {

namespace json = boost::json;

Error invalid(const std::string& param, const std::string& what) {
  return make_error(Errc::invalid_argument, "'" + param + "' " + what);
}

// Keywords that describe without constraining: always allowed.
constexpr std::array kAnnotations = {"title", "description", "$schema", "$id", "$comment", "examples",
                                     "default", "deprecated", "readOnly", "writeOnly"};
// Keywords the grammar enforces (numeric bounds only for integers, below).
constexpr std::array kEnforced = {"type", "properties", "required", "additionalProperties", "items",
                                  "prefixItems", "minItems", "maxItems", "enum", "const", "anyOf",
                                  "allOf", "$ref", "$defs", "definitions", "minLength",
                                  "maxLength", "format", "pattern", "minimum", "maximum",
                                  "exclusiveMinimum", "exclusiveMaximum"};
constexpr std::array kFormats = {"date", "time", "date-time", "uuid"};
// Keywords that may stand beside $ref or anyOf (the converter drops the rest there).
constexpr std::array kBesideComposite = {"$defs", "definitions"};
// Largest length or item count a schema may ask for (the converter expands
// counts into repetitions).
constexpr int64_t kMaxCount = 10000;
// Integer bounds must be exact in a double and an int64.
constexpr int64_t kMaxIntegerBound = int64_t{1} << 53;
// The converter copies a schema once per entry of a `type` list, so lists
// nested in lists multiply: their product along a path is bounded.
constexpr uint64_t kMaxTypeFanout = 16;

template <size_t N>
bool in(const std::array<const char*, N>& set, std::string_view k) {
  for (const char* s : set) {
    if (k == s) return true;
  }
  return false;
}

bool is_type(const json::object& o, std::string_view t) {
  const auto* v = o.if_contains("type");
  if (!v) return false;
  if (v->is_string()) return v->as_string() == t;
  if (v->is_array()) {
    for (const auto& e : v->as_array()) {
      if (e.is_string() && e.as_string() == t) return true;
    }
  }
  return false;
}

class Checker {
 public:
  explicit Checker(const std::string& param) : param_(param) {}

  Status schema(const json::value& v, const std::string& at, unsigned depth, uint64_t fanout = 1) {
    if (depth > kMaxSchemaDepth) return invalid(param_, "nests deeper than " + std::to_string(kMaxSchemaDepth) + " levels");
    if (v.is_bool()) return ok_status();
    if (!v.is_object()) return invalid(param_, "has a schema that is not an object at " + where(at));
    const auto& o = v.as_object();
    if (auto st = combination(o, at, fanout); !st) return st;
    for (const auto& [key, value] : o) {
      const std::string_view k = key;
      if (in(kAnnotations, k)) continue;
      if (k == "oneOf") {
        return invalid(param_, "uses 'oneOf' at " + where(at) + ", which this node cannot enforce exactly (use 'anyOf')");
      }
      if (!in(kEnforced, k)) {
        return invalid(param_, "uses the keyword '" + std::string(k) + "' at " + where(at) +
                                   ", which this node cannot enforce (supported: type, properties, required, "
                                   "additionalProperties, items, prefixItems, minItems, maxItems, enum, const, "
                                   "anyOf, oneOf, allOf, $ref, $defs, minLength, maxLength, format, anchored "
                                   "pattern, integer minimum/maximum)");
      }
      if (auto st = keyword(o, k, value, at, depth, fanout); !st) return st;
    }
    return ok_status();
  }

 private:
  std::string where(const std::string& at) const { return at.empty() ? "the root" : at; }

  // Keyword combinations the converter silently ignores part of, counts
  // and bounds it would mangle, and `type` lists that multiply.
  Status combination(const json::object& o, const std::string& at, uint64_t& fanout) {
    for (const char* composite : {"$ref", "anyOf"}) {
      if (!o.contains(composite)) continue;
      for (const auto& [key, value] : o) {
        const std::string_view k = key;
        if (k == composite || in(kAnnotations, k) || in(kBesideComposite, k)) continue;
        return invalid(param_, "has '" + std::string(k) + "' beside '" + composite + "' at " + where(at) +
                                   ", which this node cannot enforce (move it into the referenced or listed schemas)");
      }
    }
    if (o.contains("prefixItems") && (o.contains("items") || o.contains("minItems") || o.contains("maxItems"))) {
      return invalid(param_, "combines 'prefixItems' with 'items', 'minItems' or 'maxItems' at " + where(at) +
                                 ", which this node cannot enforce");
    }
    for (const char* k : {"minLength", "maxLength", "minItems", "maxItems"}) {
      const auto* v = o.if_contains(k);
      if (!v) continue;
      const bool ok = (v->is_int64() && v->as_int64() >= 0 && v->as_int64() <= kMaxCount) ||
                      (v->is_uint64() && v->as_uint64() <= static_cast<uint64_t>(kMaxCount));
      if (!ok) return invalid(param_, "'" + std::string(k) + "' at " + where(at) + " must be an integer from 0 to " + std::to_string(kMaxCount));
    }
    auto count = [&](const char* k) -> int64_t {
      const auto* v = o.if_contains(k);
      return v && v->is_int64() ? v->as_int64() : (v && v->is_uint64() ? static_cast<int64_t>(v->as_uint64()) : -1);
    };
    if (count("minLength") > count("maxLength") && count("maxLength") >= 0) {
      return invalid(param_, "has 'minLength' above 'maxLength' at " + where(at));
    }
    if (count("minItems") > count("maxItems") && count("maxItems") >= 0) {
      return invalid(param_, "has 'minItems' above 'maxItems' at " + where(at));
    }
    std::optional<double> lo, hi;
    for (const char* k : {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}) {
      const auto* v = o.if_contains(k);
      if (!v || !v->is_number()) continue;
      const double d = v->to_number<double>();
      if (!(d >= -static_cast<double>(kMaxIntegerBound) && d <= static_cast<double>(kMaxIntegerBound)) || d != std::floor(d)) {
        return invalid(param_, "'" + std::string(k) + "' at " + where(at) + " must be an integer within ±2^53");
      }
      const bool exclusive = k[0] == 'e';
      if (std::string_view(k).find("inimum") != std::string_view::npos) {
        lo = std::max(lo.value_or(d), exclusive ? d + 1 : d);
      } else {
        hi = std::min(hi.value_or(d), exclusive ? d - 1 : d);
      }
    }
    if (lo && hi && *lo > *hi) return invalid(param_, "has no integer between its bounds at " + where(at));
    if (const auto* t = o.if_contains("type"); t && t->is_array()) {
      const auto& list = t->as_array();
      for (size_t i = 0; i < list.size(); ++i) {
        for (size_t j = 0; j < i; ++j) {
          if (list[i] == list[j]) return invalid(param_, "lists a type twice in 'type' at " + where(at));
        }
      }
      fanout *= std::max<size_t>(list.size(), 1);
      if (fanout > kMaxTypeFanout) {
        return invalid(param_, "nests 'type' lists that multiply beyond " + std::to_string(kMaxTypeFanout) +
                                   " alternatives at " + where(at));
      }
    }
    return ok_status();
  }

  Status keyword(const json::object& o, std::string_view k, const json::value& value, const std::string& at,
                 unsigned depth, uint64_t fanout) {
    const std::string here = at + "/" + std::string(k);
    if (k == "properties" || k == "$defs" || k == "definitions") {
      if (!value.is_object()) return invalid(param_, "'" + std::string(k) + "' at " + where(at) + " must be an object");
      for (const auto& [name, sub] : value.as_object()) {
        if (auto st = schema(sub, here + "/" + std::string(name), depth + 1, fanout); !st) return st;
      }
    } else if (k == "additionalProperties" || k == "items") {
      if (auto st = schema(value, here, depth + 1, fanout); !st) return st;
    } else if (k == "prefixItems" || k == "anyOf" || k == "oneOf" || k == "allOf") {
      if (!value.is_array()) return invalid(param_, "'" + std::string(k) + "' at " + where(at) + " must be an array");
      for (size_t i = 0; i < value.as_array().size(); ++i) {
        if (auto st = schema(value.as_array()[i], here + "/" + std::to_string(i), depth + 1, fanout); !st) return st;
      }
    } else if (k == "$ref") {
      if (!value.is_string() || !value.as_string().starts_with("#")) {
        return invalid(param_, "has a '$ref' at " + where(at) + " that is not local ('#/...')");
      }
    } else if (k == "format") {
      if (!value.is_string() || !in(kFormats, value.as_string())) {
        return invalid(param_, "uses a 'format' at " + where(at) + " this node cannot enforce (supported: date, time, date-time, uuid)");
      }
    } else if (k == "pattern") {
      const auto* s = value.if_string();
      if (!s || !s->starts_with("^") || !s->ends_with("$")) {
        return invalid(param_, "has a 'pattern' at " + where(at) + " that is not anchored ('^...$'), which this node cannot enforce");
      }
    } else if (k == "minimum" || k == "maximum" || k == "exclusiveMinimum" || k == "exclusiveMaximum") {
      if (!is_type(o, "integer") || is_type(o, "number")) {
        return invalid(param_, "uses '" + std::string(k) + "' at " + where(at) +
                                   ", which this node enforces for integers only");
      }
      if (!value.is_number()) return invalid(param_, "'" + std::string(k) + "' at " + where(at) + " must be a number");
    } else if (k == "required" && !value.is_array()) {
      return invalid(param_, "'required' at " + where(at) + " must be an array");
    }
    return ok_status();
  }

  const std::string& param_;
};

}  // namespace

Status check_schema(std::string_view schema_json, const std::string& param) {
  json::parse_options opts;
  opts.max_depth = 2 * kMaxSchemaDepth + 8;  // each schema level is up to two JSON levels
  boost::system::error_code ec;
  json::monotonic_resource mr;
  const json::value v = json::parse(schema_json, ec, &mr, opts);
  if (ec) {
    if (ec == json::error::too_deep) return invalid(param, "nests deeper than " + std::to_string(kMaxSchemaDepth) + " levels");
    return invalid(param, "is not valid JSON (" + ec.message() + ")");
  }
  return Checker(param).schema(v, "", 1);
}

Status check_request_schemas(const GenerationRequest& r) {
  for (size_t i = 0; i < r.tools.size(); ++i) {
    if (r.tools[i].parameters.empty()) continue;
    if (auto st = check_schema(r.tools[i].parameters, "tools[" + std::to_string(i) + "].function.parameters"); !st) {
      return st;
    }
  }
  if (r.response_format.type == ResponseFormat::Type::json_schema) {
    if (r.response_format.schema.empty()) return invalid("response_format.json_schema.schema", "is required");
    return check_schema(r.response_format.schema, "response_format.json_schema.schema");
  }
  return ok_status();
}

}  // namespace agora::protocol
