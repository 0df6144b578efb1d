#include "gateway/http_request.h"

#include <cstring>
#include <iterator>

namespace agora::gateway {
namespace http = boost::beast::http;

void apply_limits(RequestParser& parser, const HttpLimits& limits) {
  parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
  parser.body_limit(limits.max_body_bytes);
}

namespace {

bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// unreserved / sub-delims / pct-encoded (RFC 3986 reg-name; IPv4 is a subset).
bool valid_reg_name(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) continue;
    if (c != '\0' && std::strchr("-._~!$&'()*+,;=", c) != nullptr) continue;
    if (c == '%' && i + 2 < s.size() && is_hex(s[i + 1]) && is_hex(s[i + 2])) {
      i += 2;
      continue;
    }
    return false;
  }
  return true;
}

// The inside of "[…]": an IPv6 address (hex, ':' and a trailing dotted IPv4)
// or an IPvFuture ("v" HEX "." …); checked for its alphabet only.
bool valid_ip_literal(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!is_hex(c) && c != ':' && c != '.' && c != 'v' && c != 'V') return false;
  }
  return true;
}

}  // namespace

bool valid_host(std::string_view v) {
  std::string_view host = v;
  std::string_view port;
  if (!v.empty() && v.front() == '[') {
    const size_t close = v.find(']');
    if (close == std::string_view::npos || !valid_ip_literal(v.substr(1, close - 1))) return false;
    host = {};
    std::string_view rest = v.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      port = rest.substr(1);
    }
  } else if (const size_t colon = v.rfind(':'); colon != std::string_view::npos) {
    host = v.substr(0, colon);
    port = v.substr(colon + 1);
  }
  for (char c : port) {
    if (c < '0' || c > '9') return false;
  }
  return valid_reg_name(host);
}

std::optional<ApiError> check_request(const HttpRequest& req) {
  auto hosts = req.equal_range(http::field::host);
  const auto count = std::distance(hosts.first, hosts.second);
  auto bad = [](std::string message) {
    ApiError e;
    e.status = 400;
    e.code = "bad_request";
    e.message = std::move(message);
    return e;
  };
  if (count == 0 && req.version() >= 11) return bad("An HTTP/1.1 request must have a Host header (RFC 9112 §3.2)");
  if (count > 1) return bad("A request must have exactly one Host header (RFC 9112 §3.2)");
  if (count == 1 && !valid_host(hosts.first->value())) return bad("The Host header is not a valid host[:port]");
  // RFC 9112 §6.3: a Transfer-Encoding whose last coding is not chunked
  // leaves the body's length unknown (Beast would read it as empty and the
  // body as the next request); §6.1: HTTP/1.0 has no Transfer-Encoding.
  if (req.count(http::field::transfer_encoding) > 0 && (req.version() < 11 || !req.chunked())) {
    return bad("Transfer-Encoding must be chunked, last, on HTTP/1.1 (RFC 9112 §6.1, §6.3)");
  }
  return std::nullopt;
}

}  // namespace agora::gateway
