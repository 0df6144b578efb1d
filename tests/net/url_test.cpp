#include "net/url.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace agora::net {
namespace {

using ::testing::HasSubstr;

Url must_parse(std::string_view text) {
  auto url = parse_url(text);
  if (!url) {
    ADD_FAILURE() << text << ": " << url.error().to_string();
    return {};
  }
  return *url;
}

void expect_url(std::string_view text, const std::string& scheme, const std::string& host,
                uint16_t port, const std::string& target) {
  SCOPED_TRACE(std::string(text));
  const Url url = must_parse(text);
  EXPECT_EQ(url.scheme, scheme);
  EXPECT_EQ(url.host, host);
  EXPECT_EQ(url.port, port);
  EXPECT_EQ(url.target, target);
}

TEST(ParseUrl, SchemesAndDefaultPorts) {
  expect_url("http://example.com", "http", "example.com", 80, "/");
  expect_url("https://example.com", "https", "example.com", 443, "/");
  expect_url("ws://example.com/v1/node", "ws", "example.com", 80, "/v1/node");
  expect_url("wss://example.com/v1/node", "wss", "example.com", 443, "/v1/node");
  expect_url("HTTPS://Gateway.Example.COM/Path", "https", "gateway.example.com", 443, "/Path");
  EXPECT_TRUE(must_parse("wss://a").is_tls());
  EXPECT_TRUE(must_parse("https://a").is_tls());
  EXPECT_FALSE(must_parse("ws://a").is_tls());
  EXPECT_FALSE(must_parse("http://a").is_tls());
}

TEST(ParseUrl, PortsTargetsAndFragments) {
  expect_url("https://127.0.0.1:8443/v1/chat/completions", "https", "127.0.0.1", 8443,
             "/v1/chat/completions");
  expect_url("http://localhost:8080", "http", "localhost", 8080, "/");
  expect_url("http://localhost:65535/", "http", "localhost", 65535, "/");
  expect_url("https://h/models?x=1&y=2", "https", "h", 443, "/models?x=1&y=2");
  expect_url("https://h?x=1", "https", "h", 443, "/?x=1");
  expect_url("https://h:1/p#frag", "https", "h", 1, "/p");
  expect_url("https://h#frag", "https", "h", 443, "/");
  expect_url("wss://my_host.internal:443/ws", "wss", "my_host.internal", 443, "/ws");
}

TEST(ParseUrl, Ipv6Literals) {
  expect_url("https://[::1]:8443/v1", "https", "::1", 8443, "/v1");
  expect_url("wss://[2001:DB8::1]/node", "wss", "2001:db8::1", 443, "/node");
  expect_url("http://[fe80::1]", "http", "fe80::1", 80, "/");
}

TEST(ParseUrl, Errors) {
  struct Case {
    const char* url;
    const char* message;
  };
  for (const Case& c : {
           Case{"ftp://example.com/", "unsupported URL scheme 'ftp'"},
           Case{"example.com/path", "no scheme"},
           Case{"https://user:pass@example.com/", "user info"},
           Case{"https://user@example.com/", "user info"},
           Case{"https:///path", "no host"},
           Case{"https://", "no host"},
           Case{"https://:8443/", "no host"},
           Case{"https://example.com:99999/", "bad port '99999'"},
           Case{"https://example.com:0/", "bad port '0'"},
           Case{"https://example.com:http/", "bad port 'http'"},
           Case{"https://example.com:/", "bad port ''"},
           Case{"https://example.com:-1/", "bad port '-1'"},
           Case{"https://[::1/", "missing ']'"},
           Case{"https://[::1]x/", "after ']'"},
           Case{"https://[not-v6]/", "not an IPv6 address"},
           Case{"https://::1/", "brackets"},
           Case{"https://exa mple.com/", "whitespace"},
           Case{"https://example.com/a\r\nHost: evil", "control"},
           Case{"https://exa%41mple.com/", "bad host"},
       }) {
    auto r = parse_url(c.url);
    ASSERT_FALSE(r) << c.url;
    EXPECT_EQ(r.error().code, Errc::invalid_argument) << c.url;
    EXPECT_THAT(r.error().message, HasSubstr(c.message)) << c.url;
  }
  EXPECT_FALSE(parse_url("https://h/" + std::string(kMaxUrlLength, 'a')));
}

TEST(ParseHostPort, ListenAddresses) {
  struct Case {
    const char* text;
    const char* host;
    uint16_t port;
  };
  for (const Case& c : {
           Case{"127.0.0.1:8443", "127.0.0.1", 8443},
           Case{"[::1]:0", "::1", 0},
           Case{"0.0.0.0:443", "0.0.0.0", 443},
           Case{":8443", "0.0.0.0", 8443},
           Case{"localhost:8080", "localhost", 8080},
           Case{"Gateway.Example", "gateway.example", 7000},
           Case{"[::]:443", "::", 443},
           Case{"[::1]", "::1", 7000},
           Case{"::1", "::1", 7000},
           Case{"::", "::", 7000},
           Case{"10.0.0.1", "10.0.0.1", 7000},
       }) {
    auto r = parse_host_port(c.text, 7000);
    ASSERT_TRUE(r) << c.text << ": " << r.error().to_string();
    EXPECT_EQ(r->host, c.host) << c.text;
    EXPECT_EQ(r->port, c.port) << c.text;
  }
}

TEST(ParseHostPort, Errors) {
  struct Case {
    const char* text;
    const char* message;
  };
  for (const Case& c : {
           Case{"", "empty"},
           Case{"127.0.0.1:65536", "bad port '65536'"},
           Case{"127.0.0.1:x", "bad port 'x'"},
           Case{":", "bad port ''"},
           Case{"[::1]:", "bad port ''"},
           Case{"[::1", "missing ']'"},
           Case{"fe80::1:zz:8443", "brackets"},
           Case{"host name:80", "whitespace"},
           Case{"ho/st:80", "bad host"},
           // Found by fuzzing (tests/fuzz/corpus/url/regress_ipv6_zone.txt):
           // Asio took any zone text, so "::%]" parsed and then could not be
           // formatted back. Zones are refused.
           Case{"::%]", "brackets"},
           Case{"[fe80::1%eth0]:8443", "not an IPv6 address"},
       }) {
    auto r = parse_host_port(c.text, 443);
    ASSERT_FALSE(r) << c.text;
    EXPECT_EQ(r.error().code, Errc::invalid_argument) << c.text;
    EXPECT_THAT(r.error().message, HasSubstr(c.message)) << c.text;
  }
}

TEST(FormatHostPort, BracketsIpv6Only) {
  EXPECT_EQ(format_host_port("127.0.0.1", 8443), "127.0.0.1:8443");
  EXPECT_EQ(format_host_port("localhost", 80), "localhost:80");
  EXPECT_EQ(format_host_port("::1", 0), "[::1]:0");
  EXPECT_EQ(format_host_port("[::1]", 443), "[::1]:443");
  EXPECT_EQ(format_host_port("2001:db8::1", 443), "[2001:db8::1]:443");
}

TEST(FormatHostPort, RoundTripsThroughParseHostPort) {
  for (const char* host : {"127.0.0.1", "::1", "gateway.example", "fd00::7"}) {
    auto r = parse_host_port(format_host_port(host, 8443), 0);
    ASSERT_TRUE(r) << host;
    EXPECT_EQ(r->host, host);
    EXPECT_EQ(r->port, 8443);
  }
}

}  // namespace
}  // namespace agora::net

namespace agora::net {
namespace {

TEST(ParseQuery, DecodesPairsInOrder) {
  auto q = parse_query("model=tiny&region=eu%2Dwest&region=us+east&flag&=x");
  ASSERT_TRUE(q) << q.error().message;
  ASSERT_EQ(q->size(), 5u);
  EXPECT_EQ((*q)[0], (std::pair<std::string, std::string>{"model", "tiny"}));
  EXPECT_EQ((*q)[1].second, "eu-west");
  EXPECT_EQ((*q)[2].second, "us east");
  EXPECT_EQ((*q)[3], (std::pair<std::string, std::string>{"flag", ""}));
  EXPECT_EQ((*q)[4].first, "");
  EXPECT_TRUE(parse_query("")->empty());
  EXPECT_FALSE(parse_query("a=%4"));
  EXPECT_FALSE(parse_query("a=%zz"));
  EXPECT_FALSE(parse_query("a=%00"));
  EXPECT_FALSE(parse_query("a=%0a"));
}

}  // namespace
}  // namespace agora::net
