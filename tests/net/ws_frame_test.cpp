// Server-side WebSocket framing: RFC 6455 examples, fragmentation, every
// length encoding, byte-at-a-time delivery and each protocol error.
#include "net/ws_frame.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace agora::net::ws {
namespace {

// A client frame: masked with `mask`.
std::string client_frame(uint8_t opcode, std::string_view payload, bool fin = true,
                         std::array<uint8_t, 4> mask = {0x37, 0xfa, 0x21, 0x3d}, uint8_t extra_b0 = 0) {
  std::string f;
  f.push_back(static_cast<char>((fin ? 0x80 : 0) | extra_b0 | opcode));
  const uint64_t n = payload.size();
  if (n < 126) {
    f.push_back(static_cast<char>(0x80 | n));
  } else if (n <= 0xFFFF) {
    f.push_back(static_cast<char>(0x80 | 126));
    f.push_back(static_cast<char>(n >> 8));
    f.push_back(static_cast<char>(n & 0xFF));
  } else {
    f.push_back(static_cast<char>(0x80 | 127));
    for (int i = 7; i >= 0; --i) f.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
  }
  for (uint8_t m : mask) f.push_back(static_cast<char>(m));
  for (size_t i = 0; i < n; ++i) f.push_back(static_cast<char>(payload[i] ^ static_cast<char>(mask[i & 3])));
  return f;
}

std::vector<Event> all(Reader& r) {
  std::vector<Event> out;
  for (;;) {
    Event e = r.next();
    if (e.kind == Event::Kind::none) return out;
    out.push_back(e);
    if (e.kind == Event::Kind::error) return out;
  }
}

TEST(WsFrame, Rfc6455MaskedHello) {
  Reader r(1024);
  const unsigned char bytes[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
  r.feed(std::string_view(reinterpret_cast<const char*>(bytes), sizeof bytes));
  auto ev = all(r);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].kind, Event::Kind::message);
  EXPECT_EQ(ev[0].opcode, Opcode::text);
  EXPECT_EQ(ev[0].payload, "Hello");
  EXPECT_TRUE(r.idle());
}

TEST(WsFrame, FragmentsJoinAndControlFramesMayInterleave) {
  Reader r(1024);
  r.feed(client_frame(1, "Hel", false) + client_frame(9, "are you there") + client_frame(0, "lo", false) +
         client_frame(0, ", world") + client_frame(10, "pong!"));
  auto ev = all(r);
  ASSERT_EQ(ev.size(), 3u);
  EXPECT_EQ(ev[0].kind, Event::Kind::ping);
  EXPECT_EQ(ev[0].payload, "are you there");
  EXPECT_EQ(ev[1].kind, Event::Kind::message);
  EXPECT_EQ(ev[1].payload, "Hello, world");
  EXPECT_EQ(ev[2].kind, Event::Kind::pong);
  EXPECT_TRUE(r.idle());
}

// Found in review: next() recursed once per buffered non-final fragment, so
// one read full of empty fragments (6 bytes each) could overflow the stack.
TEST(WsFrame, HundredsOfThousandsOfBufferedFragmentsAreOneMessage) {
  Reader r(1024);
  const std::string empty = client_frame(0, "", false);
  std::string bytes = client_frame(1, "a", false);
  bytes.reserve(bytes.size() + 300000 * empty.size() + 16);
  for (int i = 0; i < 300000; ++i) bytes += empty;
  bytes += client_frame(0, "b");
  r.feed(bytes);
  auto ev = all(r);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].kind, Event::Kind::message);
  EXPECT_EQ(ev[0].payload, "ab");
  EXPECT_TRUE(r.idle());
}

TEST(WsFrame, EveryLengthEncodingAndByteAtATimeDelivery) {
  const std::string small(125, 'a'), medium(300, 'b'), large(70000, 'c');
  const std::string wire = client_frame(1, small) + client_frame(2, medium) + client_frame(1, large) +
                           client_frame(1, "");
  Reader r(1 << 20);
  std::vector<Event> ev;
  for (char c : wire) {
    EXPECT_GE(r.wanted(), 1u);
    r.feed(std::string_view(&c, 1));
    for (auto& e : all(r)) ev.push_back(std::move(e));
  }
  ASSERT_EQ(ev.size(), 4u);
  EXPECT_EQ(ev[0].payload, small);
  EXPECT_EQ(ev[1].payload, medium);
  EXPECT_EQ(ev[1].opcode, Opcode::binary);
  EXPECT_EQ(ev[2].payload, large);
  EXPECT_EQ(ev[3].payload, "");
  EXPECT_TRUE(r.idle());
}

TEST(WsFrame, WantedCountsTheRestOfAFrame) {
  Reader r(1024);
  const std::string f = client_frame(1, std::string(100, 'x'));
  r.feed(f.substr(0, 10));
  EXPECT_EQ(r.next().kind, Event::Kind::none);
  EXPECT_EQ(r.wanted(), f.size() - 10);
  EXPECT_FALSE(r.idle());
}

TEST(WsFrame, CloseCarriesCodeAndReason) {
  Reader r(1024);
  r.feed(client_frame(8, close_payload(kCloseGoingAway, "bye")) );
  auto ev = all(r);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].kind, Event::Kind::close);
  EXPECT_EQ(ev[0].close_code, kCloseGoingAway);
  EXPECT_EQ(ev[0].payload, "bye");

  Reader empty(1024);
  empty.feed(client_frame(8, ""));
  EXPECT_EQ(empty.next().close_code, 1005);
}

TEST(WsFrame, ReleaseFreesBuffersBetweenMessages) {
  Reader r(1 << 20);
  r.feed(client_frame(1, std::string(50000, 'z')));
  ASSERT_EQ(r.next().kind, Event::Kind::message);
  ASSERT_TRUE(r.idle());
  r.release();
  r.feed(client_frame(1, "after"));
  EXPECT_EQ(r.next().payload, "after");
}

struct BadCase {
  const char* what;
  std::string wire;
  uint16_t code;
};

TEST(WsFrame, ProtocolErrorsEndTheSession) {
  std::string unmasked = client_frame(1, "hi");
  unmasked[1] = static_cast<char>(unmasked[1] & 0x7F);
  std::string high_len;
  high_len.push_back(static_cast<char>(0x82));
  high_len.push_back(static_cast<char>(0x80 | 127));
  high_len.push_back(static_cast<char>(0x80));
  high_len.append(7, '\0');
  high_len.append(4, '\1');
  const std::vector<BadCase> cases = {
      {"unmasked", unmasked, kCloseProtocolError},
      {"rsv1", client_frame(1, "x", true, {1, 2, 3, 4}, 0x40), kCloseProtocolError},
      {"data opcode 3", client_frame(3, "x"), kCloseProtocolError},
      {"control opcode 11", client_frame(11, "x"), kCloseProtocolError},
      {"fragmented ping", client_frame(9, "x", false), kCloseProtocolError},
      {"ping over 125", client_frame(9, std::string(126, 'p')), kCloseProtocolError},
      {"lone continuation", client_frame(0, "x"), kCloseProtocolError},
      {"text inside a fragmented message", client_frame(1, "a", false) + client_frame(1, "b"), kCloseProtocolError},
      {"too big in one frame", client_frame(1, std::string(65, 'y')), kCloseTooBig},
      {"too big across fragments", client_frame(1, std::string(40, 'y'), false) + client_frame(0, std::string(40, 'y')),
       kCloseTooBig},
      {"close with 1 byte", client_frame(8, "x"), kCloseProtocolError},
      {"length high bit", high_len, kCloseProtocolError},
  };
  for (const auto& c : cases) {
    Reader r(64);
    r.feed(c.wire);
    auto ev = all(r);
    ASSERT_FALSE(ev.empty()) << c.what;
    EXPECT_EQ(ev.back().kind, Event::Kind::error) << c.what;
    EXPECT_EQ(ev.back().close_code, c.code) << c.what;
    EXPECT_FALSE(ev.back().payload.empty()) << c.what;
    // It stays failed.
    r.feed(client_frame(1, "ok"));
    EXPECT_EQ(r.next().kind, Event::Kind::error) << c.what;
  }
}

TEST(WsFrame, ServerHeaders) {
  std::array<uint8_t, 10> h{};
  ASSERT_EQ(frame_header(h, Opcode::text, 5), 2u);
  EXPECT_EQ(h[0], 0x81);
  EXPECT_EQ(h[1], 5);
  ASSERT_EQ(frame_header(h, Opcode::ping, 126), 4u);
  EXPECT_EQ(h[0], 0x89);
  EXPECT_EQ(h[1], 126);
  EXPECT_EQ((h[2] << 8) | h[3], 126);
  ASSERT_EQ(frame_header(h, Opcode::binary, 70000), 10u);
  EXPECT_EQ(h[1], 127);
  uint64_t n = 0;
  for (int i = 2; i < 10; ++i) n = (n << 8) | h[static_cast<size_t>(i)];
  EXPECT_EQ(n, 70000u);
}

TEST(WsFrame, AcceptResponseRfc6455Example) {
  auto r = accept_response("dGhlIHNhbXBsZSBub25jZQ==", "agora-gateway");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_NE(r->find("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), std::string::npos) << *r;
  EXPECT_EQ(r->rfind("HTTP/1.1 101 Switching Protocols\r\n", 0), 0u);
  EXPECT_TRUE(r->ends_with("\r\n\r\n"));
  EXPECT_FALSE(accept_response("short", "x"));
  EXPECT_FALSE(accept_response("!!!!!!!!!!!!!!!!!!!!!!==", "x"));
}

}  // namespace
}  // namespace agora::net::ws
