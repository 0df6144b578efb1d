// The request checks Beast leaves to the server (RFC 9112 §3.2: Host), on
// requests parsed from wire bytes the way the session reads them, and the
// parser's limits (apply_limits).
#include "gateway/http_request.h"

#include <gtest/gtest.h>

#include <boost/asio/buffer.hpp>
#include <string>
#include <string_view>

namespace agora::gateway {
namespace {

namespace http = boost::beast::http;

// Parses `wire` (one whole request) with `limits`; the error Beast gave, if any.
boost::system::error_code parse(std::string_view wire, HttpRequest& out, HttpLimits limits = {}) {
  RequestParser parser;
  apply_limits(parser, limits);
  parser.eager(true);
  boost::system::error_code ec;
  const size_t used = parser.put(boost::asio::buffer(wire.data(), wire.size()), ec);
  if (!ec && (!parser.is_done() || used != wire.size())) return http::error::need_more;
  if (!ec) out = parser.release();
  return ec;
}

// The status check_request answers `wire` with: 0 when it lets it through.
int verdict(std::string_view wire) {
  HttpRequest req;
  const auto ec = parse(wire, req);
  EXPECT_FALSE(ec) << "Beast did not parse " << wire << ": " << ec.message();
  if (ec) return -1;
  const std::optional<ApiError> err = check_request(req);
  if (!err) return 0;
  EXPECT_EQ(err->type, "invalid_request_error");
  EXPECT_EQ(err->code, "bad_request");
  EXPECT_FALSE(err->message.empty());
  return err->status;
}

std::string with_host(std::string_view host) {
  return "GET /healthz HTTP/1.1\r\nHost: " + std::string(host) + "\r\n\r\n";
}

TEST(CheckRequest, Http11WithoutHostIs400) {
  EXPECT_EQ(verdict("GET /healthz HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(verdict("POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"), 400);
}

TEST(CheckRequest, Http10WithoutHostIsAccepted) {
  EXPECT_EQ(verdict("GET /healthz HTTP/1.0\r\n\r\n"), 0);
}

TEST(CheckRequest, MoreThanOneHostIs400) {
  EXPECT_EQ(verdict("GET /healthz HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
  EXPECT_EQ(verdict("GET /healthz HTTP/1.1\r\nHost: a\r\nX: y\r\nhost: b\r\n\r\n"), 400);
  // Also for HTTP/1.0, which may omit Host but not repeat it.
  EXPECT_EQ(verdict("GET /healthz HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
}

TEST(CheckRequest, ValidHostsAreAccepted) {
  for (std::string_view host : {"example.com", "example.com:8443", "[::1]:8443", "[::1]", "127.0.0.1",
                                "127.0.0.1:8443", "", "xn--bcher-kva.example", "a%2Db.example", "localhost:"}) {
    EXPECT_TRUE(valid_host(host)) << host;
    EXPECT_EQ(verdict(with_host(host)), 0) << host;
  }
}

TEST(CheckRequest, InvalidHostsAre400) {
  for (std::string_view host : {"exa mple", "a/b", "host:port", "[::1", "h@x", "[::1]x", "[]:80", "[::1]:8x",
                                "a:b:c", "%zz.example", "example.com:-1"}) {
    EXPECT_FALSE(valid_host(host)) << host;
    EXPECT_EQ(verdict(with_host(host)), 400) << host;
  }
}

TEST(CheckRequest, HostValueIsCheckedAsGiven) {
  // valid_host sees the field value without the optional whitespace around it.
  EXPECT_EQ(verdict("GET / HTTP/1.1\r\nHost:   example.com  \r\n\r\n"), 0);
  EXPECT_FALSE(valid_host(" example.com"));
}

// Found in review: Beast reads a request whose Transfer-Encoding does not
// end in chunked as having no body, so its body would be parsed as the next
// pipelined request (request smuggling). RFC 9112 §6.3: 400 and close.
TEST(CheckRequest, TransferEncodingMustEndInChunkedOnHttp11) {
  EXPECT_EQ(verdict("POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 0);
  EXPECT_EQ(verdict("POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                    "0\r\n\r\n"),
            0);
  EXPECT_EQ(verdict("POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n"), 400);
  EXPECT_EQ(verdict("POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            400);
  EXPECT_EQ(verdict("POST /v1/chat/completions HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 400);
}

TEST(ApplyLimits, HeaderAndBodyLimitsAreThoseGiven) {
  HttpRequest req;
  const HttpLimits small{1024, 8};
  const std::string big_header = "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(2000, 'x') + "\r\n\r\n";
  EXPECT_EQ(parse(big_header, req, small), http::error::header_limit);
  EXPECT_FALSE(parse(big_header, req, HttpLimits{4096, 8}));

  const std::string body9 = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\n123456789";
  EXPECT_EQ(parse(body9, req, small), http::error::body_limit);
  const std::string body8 = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 8\r\n\r\n12345678";
  EXPECT_FALSE(parse(body8, req, small));
  EXPECT_EQ(req.body(), "12345678");
}

}  // namespace
}  // namespace agora::gateway
