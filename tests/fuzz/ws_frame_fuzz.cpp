// The gateway's WebSocket frame reader (net/ws_frame.h): client frames in
// arbitrary splits (the first input byte is the read size, 0: all at once),
// with a small message limit so the fuzzer reaches it. After an error every
// next() repeats it; messages never exceed the limit.
#include "fuzz_check.h"
#include "net/ws_frame.h"

using namespace agora;
using Kind = net::ws::Event::Kind;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t step = data[0] == 0 ? size : data[0];
  const std::string_view input = fuzz::as_text(data + 1, size - 1);
  constexpr size_t kMaxMessage = 4096;
  net::ws::Reader reader(kMaxMessage);
  for (size_t fed = 0; fed < input.size();) {
    const size_t take = std::min(step, input.size() - fed);
    reader.feed(input.substr(fed, take));
    fed += take;
    for (;;) {
      FUZZ_CHECK(reader.wanted() >= 1, "wanted() is at least one byte");
      net::ws::Event e = reader.next();
      if (e.kind == Kind::none) break;
      if (e.kind == Kind::message) FUZZ_CHECK(e.payload.size() <= kMaxMessage, "a message over the limit");
      if (e.kind == Kind::ping || e.kind == Kind::pong) FUZZ_CHECK(e.payload.size() <= 125, "a control frame over 125");
      if (e.kind == Kind::error) {
        FUZZ_CHECK(e.close_code >= 1000, "an error names a close code");
        net::ws::Event again = reader.next();
        FUZZ_CHECK(again.kind == Kind::error && again.close_code == e.close_code, "errors are sticky");
        return 0;
      }
      if (e.kind == Kind::close) return 0;
      if (reader.idle()) reader.release();
    }
  }
  return 0;
}
