// HTTP/1.1 request reading as the gateway does it (http_session.cpp): one
// Beast request_parser per request with the gateway's limits, eager, fed from
// one buffer that holds pipelined requests, then check_request. The first
// input byte says how many bytes each socket read delivers (0: all at once).
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>

#include <cstring>

#include "fuzz_check.h"
#include "gateway/http_request.h"

namespace http = boost::beast::http;
using namespace agora;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t step = data[0] == 0 ? size : data[0];
  const std::string_view input = fuzz::as_text(data + 1, size - 1);
  // The gateway's header limit; a body limit the fuzzer can reach.
  const gateway::HttpLimits limits{16u << 10, 32u << 10};
  boost::beast::flat_buffer buffer;
  size_t fed = 0;
  for (int n = 0; n < 256; ++n) {
    gateway::RequestParser parser;
    gateway::apply_limits(parser, limits);
    parser.eager(true);  // as http::async_read sets it
    boost::system::error_code ec;
    while (!parser.is_done()) {
      if (buffer.size() > 0) {
        const size_t used = parser.put(buffer.data(), ec);
        buffer.consume(used);
        if (!ec) continue;
        if (ec != http::error::need_more) break;
        ec = {};
      }
      if (fed == input.size()) {  // the client closed: as http::read does
        if (!parser.got_some()) return 0;
        parser.put_eof(ec);
        break;
      }
      const size_t take = std::min(step, input.size() - fed);
      auto dst = buffer.prepare(take);
      std::memcpy(dst.data(), input.data() + fed, take);
      buffer.commit(take);
      fed += take;
    }
    if (ec || !parser.is_done()) return 0;
    const gateway::HttpRequest req = parser.release();
    FUZZ_CHECK(req.body().size() <= limits.max_body_bytes, "a body over the limit was accepted");
    if (gateway::check_request(req)) return 0;  // answered 400, connection closed
    // What the gateway routes has one valid Host (HTTP/1.1) and a body whose
    // end is known: chunked last, or Content-Length, or none.
    const auto hosts = req.count(http::field::host);
    FUZZ_CHECK(hosts <= 1 && (req.version() < 11 || hosts == 1), "a routed request has exactly one Host");
    FUZZ_CHECK(req.count(http::field::transfer_encoding) == 0 || req.chunked(), "a routed body ends in chunked");
    if (!req.keep_alive()) return 0;
  }
  return 0;
}
