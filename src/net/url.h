// URLs and listen addresses: the gateway URL a node or client connects to
// ("wss://gw.example:8443/v1/node") and the address a server binds
// ("127.0.0.1:8443", "[::1]:0"). Pure functions, no I/O, no DNS.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"

namespace agora::net {

// URLs longer than this are refused.
inline constexpr size_t kMaxUrlLength = 8192;

struct Url {
  std::string scheme;  // "http", "https", "ws" or "wss" (lower case)
  std::string host;    // lower case; an IPv6 literal without its brackets
  uint16_t port = 0;   // explicit, or 80 (http, ws) / 443 (https, wss)
  std::string target;  // path and query, "/" when the URL has neither

  // https and wss.
  bool is_tls() const { return scheme == "https" || scheme == "wss"; }
};

// Parses an absolute http/https/ws/wss URL. The scheme and host are
// case-insensitive (returned in lower case); IPv6 literals must be in
// brackets ("https://[::1]:8443/"); a "#fragment" is dropped.
// Errors (invalid_argument, naming the problem): another scheme, user info
// ("user:pass@host"), an empty or malformed host, a bad port ("bad port
// '99999'": not 1-65535), whitespace or control characters, longer than
// kMaxUrlLength.
Result<Url> parse_url(std::string_view text);

struct HostPort {
  std::string host;  // an IPv6 literal without brackets
  uint16_t port = 0;
};

// Parses a listen address: "127.0.0.1:8443", "[::1]:0", "0.0.0.0:443",
// "localhost:8080", ":8443" (empty host → "0.0.0.0"), "[::1]" or "::1" or
// "localhost" (no port → `default_port`). Port 0 is allowed (any free
// port). Errors (invalid_argument): a bad port (named), a malformed host.
Result<HostPort> parse_host_port(std::string_view text, uint16_t default_port);

// A query string ("model=tiny&region=eu%2Dwest", without the "?") as
// name/value pairs in order, '+' and %XX decoded. Errors (invalid_argument):
// a malformed %-escape, a decoded NUL or control character.
Result<std::vector<std::pair<std::string, std::string>>> parse_query(std::string_view query);

// "host:port", with brackets around an IPv6 literal ("[::1]:8443").
std::string format_host_port(std::string_view host, uint16_t port);

}  // namespace agora::net
