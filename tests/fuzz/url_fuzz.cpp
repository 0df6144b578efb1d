// URLs (net::parse_url), listen addresses (net::parse_host_port) and query
// strings (net::parse_query). What parses must format back to itself.
#include "fuzz_check.h"
#include "net/url.h"

using namespace agora;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = fuzz::as_text(data, size);
  if (auto u = net::parse_url(text)) {
    FUZZ_CHECK(u->port != 0, "a URL has a port");
    FUZZ_CHECK(!u->host.empty(), "a URL has a host");
    FUZZ_CHECK(!u->target.empty() && u->target[0] == '/', "a target starts with /");
  }
  if (auto hp = net::parse_host_port(text, 8443)) {
    const std::string formatted = net::format_host_port(hp->host, hp->port);
    auto back = net::parse_host_port(formatted, 8443);
    FUZZ_CHECK(back.ok(), "a formatted address must parse");
    FUZZ_CHECK(back->host == hp->host && back->port == hp->port, "host:port must round-trip");
  }
  if (auto q = net::parse_query(text)) {
    for (const auto& [k, v] : *q) {
      for (char c : k + v) FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f, "no control characters");
    }
  }
  return 0;
}
