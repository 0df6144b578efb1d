// The protocol codec's JSON field readers and small shared helpers
// (internal to src/protocol: messages.cpp and request_json.cpp).
#pragma once

#include <boost/json.hpp>

#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "crypto/encoding.h"

namespace agora::protocol::detail {
namespace json = boost::json;

// A SHA-256 digest as the protocol writes it: 64 lower-case hex digits.
inline bool is_digest(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

inline Error bad(std::string what) { return make_error(Errc::invalid_argument, "protocol: " + std::move(what)); }

// Longest duration a Done frame may report (about 115 days).
constexpr double kMaxTimingMs = 1e10;

// A finite double that converts to float without overflow (converting one
// outside float's range is undefined behaviour).
inline bool fits_float(double d) { return std::isfinite(d) && std::fabs(d) <= std::numeric_limits<float>::max(); }

// Field readers: each returns false (and sets `err`) when the field is
// missing or has the wrong type; optional readers leave `out` alone when the
// field is absent.
class Reader {
 public:
  Reader(const json::object& o, std::string where) : o_(o), where_(std::move(where)) {}

  bool str(std::string_view key, std::string& out, bool required = true) {
    auto* v = o_.if_contains(key);
    if (!v) return !required || fail(key, "is missing");
    if (!v->is_string()) return fail(key, "must be a string");
    out.assign(v->get_string().data(), v->get_string().size());
    return true;
  }
  template <class Int>
  bool integer(std::string_view key, Int& out, bool required = true) {
    auto* v = o_.if_contains(key);
    if (!v) return !required || fail(key, "is missing");
    int64_t x;
    if (v->is_int64()) x = v->get_int64();
    else if (v->is_uint64() && v->get_uint64() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      x = static_cast<int64_t>(v->get_uint64());
    else return fail(key, "must be an integer");
    if constexpr (std::is_unsigned_v<Int>) {
      if (x < 0) return fail(key, "must not be negative");
      if (static_cast<uint64_t>(x) > std::numeric_limits<Int>::max()) return fail(key, "is out of range");
    } else {
      if (x < std::numeric_limits<Int>::min() || x > std::numeric_limits<Int>::max()) return fail(key, "is out of range");
    }
    out = static_cast<Int>(x);
    return true;
  }
  bool number(std::string_view key, double& out, bool required = true) {
    auto* v = o_.if_contains(key);
    if (!v) return !required || fail(key, "is missing");
    if (!v->is_number()) return fail(key, "must be a number");
    // JSON has no infinities, but an overflowing literal (1e400) parses as one.
    const double d = v->to_number<double>();
    if (!std::isfinite(d)) return fail(key, "is out of range");
    out = d;
    return true;
  }
  bool number(std::string_view key, float& out, bool required = true) {
    double d = out;
    if (!number(key, d, required)) return false;
    if (!fits_float(d)) return fail(key, "is out of range");
    out = static_cast<float>(d);
    return true;
  }
  bool boolean(std::string_view key, bool& out, bool required = true) {
    auto* v = o_.if_contains(key);
    if (!v) return !required || fail(key, "is missing");
    if (!v->is_bool()) return fail(key, "must be a boolean");
    out = v->get_bool();
    return true;
  }
  const json::array* array(std::string_view key, bool required = true) {
    auto* v = o_.if_contains(key);
    if (!v) {
      if (required) fail(key, "is missing");
      return nullptr;
    }
    if (!v->is_array()) {
      fail(key, "must be an array");
      return nullptr;
    }
    return &v->get_array();
  }
  const json::object* object(std::string_view key, bool required = true) {
    auto* v = o_.if_contains(key);
    if (!v) {
      if (required) fail(key, "is missing");
      return nullptr;
    }
    if (!v->is_object()) {
      fail(key, "must be an object");
      return nullptr;
    }
    return &v->get_object();
  }
  bool fail(std::string_view key, std::string_view why) {
    if (!err_) err_ = bad(where_ + "." + std::string(key) + " " + std::string(why));
    return false;
  }
  bool ok() const { return !err_; }
  Error error() const { return *err_; }
  const std::string& where() const { return where_; }

 private:
  const json::object& o_;
  std::string where_;
  std::optional<Error> err_;
};

// A base64 field into raw bytes.
inline bool b64(Reader& r, std::string_view key, std::string& out) {
  std::string text;
  if (!r.str(key, text)) return false;
  auto raw = crypto::from_base64(text);
  if (!raw) return r.fail(key, "must be base64");
  out = std::move(*raw);
  return true;
}

// A frame or request (`what`) as a JSON object, within the size and depth
// limits. Errors: too_large, invalid_argument (not JSON, not an object).
inline Result<json::value> parse_object(std::string_view text, std::string_view what, size_t max_bytes,
                                        unsigned max_depth) {
  const std::string w(what);
  if (text.size() > max_bytes) return make_error(Errc::too_large, "protocol: " + w + " too large");
  json::parse_options opts;
  opts.max_depth = max_depth;
  boost::system::error_code ec;
  json::value v = json::parse(text, ec, {}, opts);
  if (ec) return bad(w + " is not valid JSON: " + ec.message());
  if (!v.is_object()) return bad(w + " must be a JSON object");
  return v;
}

}  // namespace agora::protocol::detail
