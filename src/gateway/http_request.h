// Reading HTTP/1.1 requests as the gateway does: Beast's parser with the
// gateway's header and body limits, plus the checks Beast leaves to the
// server (RFC 9112 §3.2: exactly one Host, and a valid one). Pure: the
// session (http_session.cpp) and the fuzz target (tests/fuzz) share it.
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "gateway/openai_names.h"

namespace agora::gateway {

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;
using RequestParser = boost::beast::http::request_parser<boost::beast::http::string_body>;

struct HttpLimits {
  size_t max_header_bytes = 16u << 10;
  size_t max_body_bytes = 4u << 20;
};

// Sets the limits on a fresh parser (one parser per request).
void apply_limits(RequestParser& parser, const HttpLimits& limits);

// A Host field value is "uri-host [ ':' port ]" (RFC 9110 §7.2, RFC 3986
// §3.2.2): a reg-name of unreserved, sub-delims and %XX, an IPv4 address,
// or a bracketed IPv6 literal; the port all digits. Empty is allowed (a
// target with no authority).
bool valid_host(std::string_view value);

// What a request Beast parsed may still get wrong: an HTTP/1.1 request
// without Host, any request with more than one Host, or an invalid Host;
// a Transfer-Encoding that does not end in chunked, or one on HTTP/1.0.
// Returns the 400 to answer (the connection then closes), or nullopt.
std::optional<ApiError> check_request(const HttpRequest& req);

}  // namespace agora::gateway
