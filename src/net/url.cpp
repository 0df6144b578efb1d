#include "net/url.h"

#include <algorithm>
#include <boost/asio/ip/address_v6.hpp>
#include <cctype>
#include <charconv>
#include <optional>

namespace agora::net {
namespace {

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool is_control_or_space(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u <= 0x20 || u == 0x7F;
}

Error bad(std::string message) {
  return make_error(Errc::invalid_argument, std::move(message));
}

// A decimal port. `allow_zero` for listen addresses.
std::optional<uint16_t> parse_port(std::string_view text, bool allow_zero) {
  if (text.empty() || text.size() > 5 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  unsigned value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  if (value > 65535 || (value == 0 && !allow_zero)) return std::nullopt;
  return static_cast<uint16_t>(value);
}

// An IPv6 address without a zone ("%eth0": Asio would accept any text there,
// even "]", which a formatted "[host]:port" could not carry).
bool is_ipv6_literal(std::string_view text) {
  if (text.find('%') != std::string_view::npos) return false;
  boost::system::error_code ec;
  (void)boost::asio::ip::make_address_v6(std::string(text), ec);
  return !ec;
}

// A registered name or IPv4 literal: letters, digits, '-', '.', '_'.
bool is_reg_name(std::string_view host) {
  return !host.empty() && host.size() <= 253 && std::all_of(host.begin(), host.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
  });
}

struct Authority {
  std::string host;
  std::optional<std::string_view> port;  // the text after ':', when present
};

// Splits "host", "host:port", "[v6]", "[v6]:port". `what` names the input
// in errors ("URL", "listen address").
Result<Authority> split_authority(std::string_view text, std::string_view what) {
  Authority out;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) {
      return bad(std::string(what) + " '" + std::string(text) + "': missing ']'");
    }
    const std::string_view literal = text.substr(1, close - 1);
    if (!is_ipv6_literal(literal)) {
      return bad(std::string(what) + ": '" + std::string(literal) + "' is not an IPv6 address");
    }
    out.host = to_lower(literal);
    const std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        return bad(std::string(what) + " '" + std::string(text) + "': unexpected text after ']'");
      }
      out.port = rest.substr(1);
    }
    return out;
  }
  const size_t colon = text.find(':');
  if (colon != std::string_view::npos && text.find(':', colon + 1) != std::string_view::npos) {
    return bad(std::string(what) + " '" + std::string(text) +
               "': an IPv6 address must be in brackets, e.g. [::1]:8443");
  }
  const std::string_view host = text.substr(0, colon);
  if (colon != std::string_view::npos) out.port = text.substr(colon + 1);
  if (!host.empty() && !is_reg_name(host)) {
    return bad(std::string(what) + ": bad host '" + std::string(host) + "'");
  }
  out.host = to_lower(host);
  return out;
}

}  // namespace

Result<Url> parse_url(std::string_view text) {
  if (text.size() > kMaxUrlLength) {
    return bad("URL longer than " + std::to_string(kMaxUrlLength) + " characters");
  }
  if (std::any_of(text.begin(), text.end(), is_control_or_space)) {
    return bad("URL '" + std::string(text) + "' contains whitespace or control characters");
  }
  const size_t scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos) {
    return bad("URL '" + std::string(text) + "' has no scheme (expected http, https, ws or wss)");
  }
  Url url;
  url.scheme = to_lower(text.substr(0, scheme_end));
  if (url.scheme == "http" || url.scheme == "ws") {
    url.port = 80;
  } else if (url.scheme == "https" || url.scheme == "wss") {
    url.port = 443;
  } else {
    return bad("unsupported URL scheme '" + url.scheme + "' (expected http, https, ws or wss)");
  }

  std::string_view rest = text.substr(scheme_end + 3);
  if (const size_t hash = rest.find('#'); hash != std::string_view::npos) {
    rest = rest.substr(0, hash);
  }
  const size_t authority_end = rest.find_first_of("/?");
  const std::string_view authority = rest.substr(0, authority_end);
  if (authority.find('@') != std::string_view::npos) {
    return bad("URL '" + std::string(text) + "' must not contain user info (user@host)");
  }
  auto parts = split_authority(authority, "URL");
  if (!parts) return parts.error();
  if (parts->host.empty()) return bad("URL '" + std::string(text) + "' has no host");
  url.host = std::move(parts->host);
  if (parts->port) {
    const auto port = parse_port(*parts->port, /*allow_zero=*/false);
    if (!port) {
      return bad("bad port '" + std::string(*parts->port) + "' in URL '" + std::string(text) +
                 "' (expected 1-65535)");
    }
    url.port = *port;
  }

  if (authority_end == std::string_view::npos) {
    url.target = "/";
  } else {
    const std::string_view target = rest.substr(authority_end);
    url.target = target.front() == '?' ? "/" + std::string(target) : std::string(target);
  }
  return url;
}

Result<HostPort> parse_host_port(std::string_view text, uint16_t default_port) {
  if (text.empty()) return bad("empty listen address");
  if (std::any_of(text.begin(), text.end(), is_control_or_space)) {
    return bad("listen address '" + std::string(text) + "' contains whitespace");
  }
  // A bare IPv6 literal ("::1") carries no port.
  if (text.front() != '[' && is_ipv6_literal(text)) {
    return HostPort{to_lower(text), default_port};
  }
  auto parts = split_authority(text, "listen address");
  if (!parts) return parts.error();
  HostPort out{parts->host.empty() ? "0.0.0.0" : std::move(parts->host), default_port};
  if (parts->port) {
    const auto port = parse_port(*parts->port, /*allow_zero=*/true);
    if (!port) {
      return bad("bad port '" + std::string(*parts->port) + "' in listen address '" +
                 std::string(text) + "' (expected 0-65535)");
    }
    out.port = *port;
  }
  return out;
}

std::string format_host_port(std::string_view host, uint16_t port) {
  const bool brackets = host.find(':') != std::string_view::npos &&
                        !(host.size() >= 2 && host.front() == '[' && host.back() == ']');
  std::string out;
  if (brackets) out += '[';
  out += host;
  if (brackets) out += ']';
  out += ':';
  out += std::to_string(port);
  return out;
}

namespace {
Result<std::string> percent_decode(std::string_view in) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '+') {
      c = ' ';
    } else if (c == '%') {
      if (i + 2 >= in.size()) {
        return make_error(Errc::invalid_argument, "a malformed %-escape in the query");
      }
      const int hi = hex(in[i + 1]), lo = hex(in[i + 2]);
      if (hi < 0 || lo < 0) return make_error(Errc::invalid_argument, "a malformed %-escape in the query");
      c = static_cast<char>(hi << 4 | lo);
      i += 2;
    }
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return make_error(Errc::invalid_argument, "a control character in the query");
    }
    out += c;
  }
  return out;
}
}  // namespace

Result<std::vector<std::pair<std::string, std::string>>> parse_query(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t start = 0;
  while (start <= query.size()) {
    size_t end = query.find('&', start);
    if (end == std::string_view::npos) end = query.size();
    const std::string_view part = query.substr(start, end - start);
    if (!part.empty()) {
      const size_t eq = part.find('=');
      auto name = percent_decode(part.substr(0, eq));
      if (!name) return name.error();
      auto value = percent_decode(eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1));
      if (!value) return value.error();
      out.emplace_back(std::move(*name), std::move(*value));
    }
    start = end + 1;
  }
  return out;
}

}  // namespace agora::net
