// Server-side WebSocket framing (RFC 6455) without I/O: the gateway's node
// sessions read and write frames with it over net::LeanTlsStream instead of
// boost::beast::websocket::stream, whose per-connection state (an inline
// 1.5 KiB read buffer, a timer per stream) dominated what an idle node costs
// the gateway once TLS was lean (docs/BENCHMARKS.md).
//
// Reader: feed it bytes as they arrive; next() yields whole messages (text
// or binary, fragments joined), pings, pongs and the peer's close, or the
// first protocol error (then the session must end: send close_code() and
// close). Client frames must be masked; RSV bits, unknown opcodes,
// fragmented or oversized control frames and messages over the limit are
// errors. Between messages it holds no buffer (release()).
//
// Writer: frame_header() gives the unmasked server header for a payload.
// The opening handshake's response: accept_response().
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace agora::net::ws {

enum class Opcode : uint8_t { continuation = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10 };

// Close codes used here (RFC 6455 §7.4.1).
inline constexpr uint16_t kCloseNormal = 1000;
inline constexpr uint16_t kCloseGoingAway = 1001;
inline constexpr uint16_t kCloseProtocolError = 1002;
inline constexpr uint16_t kClosePolicy = 1008;
inline constexpr uint16_t kCloseTooBig = 1009;

struct Event {
  enum class Kind { none, message, ping, pong, close, error } kind = Kind::none;
  Opcode opcode = Opcode::text;  // message: text or binary
  std::string payload;           // message, ping/pong data, close reason; error: what was wrong
  uint16_t close_code = 0;       // close: the peer's code (1005 when none); error: the code to send
};

class Reader {
 public:
  explicit Reader(size_t max_message) : max_message_(max_message) {}

  void feed(std::string_view bytes) { buf_.append(bytes); }
  // The next complete event, or Kind::none when more bytes are needed.
  // After an error, every call returns that error again.
  Event next();
  // Bytes still needed, at least, before next() can return more (≥ 1).
  size_t wanted() const;
  // True when nothing is buffered: no partial frame, no partial message.
  bool idle() const { return buf_.size() == pos_ && !in_message_; }
  // Frees the buffers' memory when idle.
  void release();

 private:
  // One frame: its event, Kind::none for more bytes, or nullopt after a
  // data fragment that does not end its message.
  std::optional<Event> step();
  Event fail(uint16_t code, std::string what);

  size_t max_message_;
  std::string buf_;  // received, unparsed from pos_
  size_t pos_ = 0;
  std::string message_;  // data fragments so far
  bool in_message_ = false;
  Opcode message_opcode_ = Opcode::text;
  size_t need_ = 2;  // for wanted()
  bool failed_ = false;
  Event error_;
};

// The server frame header (FIN set, unmasked) for `size` payload bytes:
// returns the header length (2, 4 or 10).
size_t frame_header(std::array<uint8_t, 10>& out, Opcode opcode, uint64_t size);

// A close frame's payload: the code, then a reason (truncated to fit 125).
std::string close_payload(uint16_t code, std::string_view reason = {});

// The 101 response to a WebSocket upgrade with this Sec-WebSocket-Key.
// Errors: invalid_argument (the key is not 16 bytes in base64).
Result<std::string> accept_response(std::string_view sec_websocket_key, std::string_view server);

}  // namespace agora::net::ws
