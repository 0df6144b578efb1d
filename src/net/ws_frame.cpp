#include "net/ws_frame.h"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>

namespace agora::net::ws {

namespace {
bool known_control(uint8_t op) { return op == 8 || op == 9 || op == 10; }
}  // namespace

Event Reader::fail(uint16_t code, std::string what) {
  failed_ = true;
  error_ = Event{Event::Kind::error, Opcode::close, std::move(what), code};
  buf_.clear();
  pos_ = 0;
  message_.clear();
  return error_;
}

size_t Reader::wanted() const { return std::max<size_t>(need_, 1); }

void Reader::release() {
  if (!idle()) return;
  std::string().swap(buf_);
  std::string().swap(message_);
  pos_ = 0;
}

Event Reader::next() {
  // A loop, not recursion: a read may hold thousands of empty fragments.
  for (;;) {
    if (std::optional<Event> e = step()) return std::move(*e);
  }
}

std::optional<Event> Reader::step() {
  if (failed_) return error_;
  const size_t avail = buf_.size() - pos_;
  auto more = [&](size_t need) {
    need_ = need;
    // Keep the unparsed bytes at the front once the parsed ones dominate.
    if (pos_ > 0 && (pos_ == buf_.size() || pos_ >= buf_.size() / 2)) {
      buf_.erase(0, pos_);
      pos_ = 0;
    }
    return Event{};
  };
  if (avail < 2) return more(2 - avail);
  const auto* p = reinterpret_cast<const uint8_t*>(buf_.data() + pos_);
  const bool fin = (p[0] & 0x80) != 0;
  const uint8_t op = p[0] & 0x0F;
  if ((p[0] & 0x70) != 0) return fail(kCloseProtocolError, "reserved bits set (no extension was negotiated)");
  if ((p[1] & 0x80) == 0) return fail(kCloseProtocolError, "unmasked frame from the client");
  uint64_t len = p[1] & 0x7F;
  size_t header = 2 + (len == 126 ? 2 : len == 127 ? 8 : 0) + 4;
  if (avail < header) return more(header - avail);
  if (len == 126) {
    len = (uint64_t{p[2]} << 8) | p[3];
  } else if (len == 127) {
    len = 0;
    for (int i = 0; i < 8; ++i) len = (len << 8) | p[2 + i];
    if ((len >> 63) != 0) return fail(kCloseProtocolError, "frame length with the high bit set");
  }
  const bool control = (op & 0x08) != 0;
  if (control) {
    if (!known_control(op)) return fail(kCloseProtocolError, "unknown control opcode " + std::to_string(op));
    if (!fin) return fail(kCloseProtocolError, "fragmented control frame");
    if (len > 125) return fail(kCloseProtocolError, "control frame over 125 bytes");
  } else {
    if (op > 2) return fail(kCloseProtocolError, "unknown data opcode " + std::to_string(op));
    if (op == 0 && !in_message_) return fail(kCloseProtocolError, "continuation frame outside a message");
    if (op != 0 && in_message_) return fail(kCloseProtocolError, "new message inside a fragmented one");
    if (len > max_message_ || message_.size() + len > max_message_) {
      return fail(kCloseTooBig, "message over " + std::to_string(max_message_) + " bytes");
    }
  }
  if (avail - header < len) return more(header + len - avail);

  const uint8_t* mask = p + header - 4;
  const char* data = reinterpret_cast<const char*>(p + header);
  std::string payload;
  std::string* into = &payload;
  if (!control) {
    if (op != 0) {
      in_message_ = true;
      message_opcode_ = static_cast<Opcode>(op);
      message_.clear();
    }
    into = &message_;
  }
  const size_t start = into->size();
  into->append(data, static_cast<size_t>(len));
  char* out = into->data() + start;
  for (size_t i = 0; i < len; ++i) out[i] = static_cast<char>(out[i] ^ static_cast<char>(mask[i & 3]));
  pos_ += header + static_cast<size_t>(len);
  need_ = 2;
  if (pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  }

  if (control) {
    Event e;
    if (op == 9) e.kind = Event::Kind::ping;
    if (op == 10) e.kind = Event::Kind::pong;
    if (op == 8) {
      if (payload.size() == 1) return fail(kCloseProtocolError, "close frame with a 1-byte payload");
      e.kind = Event::Kind::close;
      e.opcode = Opcode::close;
      e.close_code = 1005;  // no status received
      if (payload.size() >= 2) {
        e.close_code = static_cast<uint16_t>((uint8_t(payload[0]) << 8) | uint8_t(payload[1]));
        payload.erase(0, 2);
      }
    } else {
      e.opcode = static_cast<Opcode>(op);
    }
    e.payload = std::move(payload);
    return e;
  }
  if (!fin) return std::nullopt;  // the message goes on (maybe already buffered)
  in_message_ = false;
  Event e{Event::Kind::message, message_opcode_, std::move(message_), 0};
  message_ = std::string();
  return e;
}

size_t frame_header(std::array<uint8_t, 10>& out, Opcode opcode, uint64_t size) {
  out[0] = static_cast<uint8_t>(0x80 | static_cast<uint8_t>(opcode));
  if (size < 126) {
    out[1] = static_cast<uint8_t>(size);
    return 2;
  }
  if (size <= 0xFFFF) {
    out[1] = 126;
    out[2] = static_cast<uint8_t>(size >> 8);
    out[3] = static_cast<uint8_t>(size);
    return 4;
  }
  out[1] = 127;
  for (int i = 0; i < 8; ++i) out[2 + i] = static_cast<uint8_t>(size >> (8 * (7 - i)));
  return 10;
}

std::string close_payload(uint16_t code, std::string_view reason) {
  std::string out;
  out.push_back(static_cast<char>(code >> 8));
  out.push_back(static_cast<char>(code & 0xFF));
  out.append(reason.substr(0, 123));
  return out;
}

Result<std::string> accept_response(std::string_view key, std::string_view server) {
  // 16 bytes in base64: 24 characters ending in "==".
  if (key.size() != 24 || key.substr(22) != "==") {
    return make_error(Errc::invalid_argument, "Sec-WebSocket-Key is not 16 bytes in base64");
  }
  unsigned char raw[18];
  if (EVP_DecodeBlock(raw, reinterpret_cast<const unsigned char*>(key.data()), 24) != 18) {
    return make_error(Errc::invalid_argument, "Sec-WebSocket-Key is not valid base64");
  }
  static constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  std::string text(key);
  text.append(kGuid);
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  unsigned char accept[32];
  const int n = EVP_EncodeBlock(accept, digest, SHA_DIGEST_LENGTH);
  std::string out = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ";
  out.append(reinterpret_cast<const char*>(accept), static_cast<size_t>(n));
  out.append("\r\nServer: ");
  out.append(server);
  out.append("\r\n\r\n");
  return out;
}

}  // namespace agora::net::ws
