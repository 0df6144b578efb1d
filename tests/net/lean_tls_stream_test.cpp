// LeanTlsStream (the gateway's server-side TLS stream) against
// asio::ssl::stream, the reference implementation, over loopback: data both
// ways at once, record coalescing, held plaintext read while the peer is
// silent (pipelining), close_notify and truncation, timeouts and
// cancellation through the tcp_stream, a failed handshake, and a WebSocket
// session with keep-alive pings and a close handshake.
#include "net/lean_tls_stream.h"

#include <gtest/gtest.h>

#include <array>
#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <functional>
#include <random>
#include <string>

#include "net/tls.h"
#include "support/test_models.h"

namespace agora::net {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = boost::asio::ssl;
namespace websocket = beast::websocket;
using asio::awaitable;
using boost::system::error_code;
using tcp = asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);
using Client = ssl::stream<beast::tcp_stream>;

std::string pattern(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

class LeanTlsStreamTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto files = ensure_self_signed_tls(agora::testing::temp_dir() / "lean-tls");
    ASSERT_TRUE(files) << files.error().to_string();
    files_ = *files;
  }

  void SetUp() override {
    auto server = make_server_tls_context(files_.cert, files_.key);
    ASSERT_TRUE(server) << server.error().to_string();
    server_ctx_ = *server;
    client_options_.ca_file = files_.ca_cert;
    auto client = make_client_tls_context(client_options_);
    ASSERT_TRUE(client) << client.error().to_string();
    client_ctx_ = *client;
    acceptor_.emplace(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  }

  // Runs the coroutine `test` on the loop; fails when it does not finish
  // within 20 s or throws.
  void run(const std::function<awaitable<void>()>& test) {
    bool done = false;
    std::exception_ptr error;
    asio::co_spawn(io_, test(), [&](std::exception_ptr e) {
      error = e;
      done = true;
    });
    io_.run_for(std::chrono::seconds(20));
    ASSERT_TRUE(done) << "the test did not finish in time";
    if (error) std::rethrow_exception(error);
  }

  // TCP connect + accept, then both TLS handshakes at once.
  awaitable<void> connect(std::unique_ptr<LeanTlsStream>& server, std::unique_ptr<Client>& client,
                          ssl::context* client_ctx = nullptr, error_code* server_ec = nullptr,
                          error_code* client_ec = nullptr) {
    client = std::make_unique<Client>(io_, client_ctx != nullptr ? *client_ctx : *client_ctx_);
    EXPECT_TRUE(prepare_client_stream(*client, "127.0.0.1", client_options_));
    auto accept = [&]() -> awaitable<tcp::socket> {
      auto [ec, socket] = co_await acceptor_->async_accept(kAwait);
      EXPECT_FALSE(ec) << ec.message();
      co_return std::move(socket);
    };
    auto dial = [&]() -> awaitable<void> {
      auto [ec] = co_await client->next_layer().async_connect(acceptor_->local_endpoint(), kAwait);
      EXPECT_FALSE(ec) << ec.message();
    };
    auto tcp_both = accept() && dial();
    tcp::socket socket = co_await std::move(tcp_both);
    server = std::make_unique<LeanTlsStream>(beast::tcp_stream(std::move(socket)), *server_ctx_);
    auto server_hs = [&]() -> awaitable<error_code> {
      auto [ec] = co_await server->async_handshake(ssl::stream_base::server, kAwait);
      co_return ec;
    };
    auto client_hs = [&]() -> awaitable<error_code> {
      auto [ec] = co_await client->async_handshake(ssl::stream_base::client, kAwait);
      co_return ec;
    };
    auto tls_both = server_hs() && client_hs();
    auto [sec, cec] = co_await std::move(tls_both);
    if (server_ec != nullptr) *server_ec = sec;
    if (client_ec != nullptr) *client_ec = cec;
    if (server_ec == nullptr) {
      EXPECT_FALSE(sec) << describe_tls_error(sec, server->native_handle());
    }
    if (client_ec == nullptr) {
      EXPECT_FALSE(cec) << describe_tls_error(cec, *client);
    }
  }

  static TlsFiles files_;
  asio::io_context io_;
  std::shared_ptr<ssl::context> server_ctx_, client_ctx_;
  ClientTlsOptions client_options_;
  std::optional<tcp::acceptor> acceptor_;
};

TlsFiles LeanTlsStreamTest::files_;

TEST_F(LeanTlsStreamTest, ExchangesDataBothWaysAtOnce) {
  run([&]() -> awaitable<void> {
    std::unique_ptr<LeanTlsStream> server;
    std::unique_ptr<Client> client;
    co_await connect(server, client);
    const std::string up = pattern(1 << 20, 1);    // client -> server
    const std::string down = pattern(1 << 20, 2);  // server -> client

    // The server reads in odd small sizes (OpenSSL keeps the rest of each
    // record) while it writes in three-part buffer sequences.
    auto server_read = [&]() -> awaitable<std::string> {
      std::string got;
      std::array<char, 777> chunk{};
      while (got.size() < up.size()) {
        auto [ec, n] = co_await server->async_read_some(asio::buffer(chunk), kAwait);
        if (ec) {
          ADD_FAILURE() << "server read: " << ec.message();
          break;
        }
        got.append(chunk.data(), n);
      }
      co_return got;
    };
    auto server_write = [&]() -> awaitable<void> {
      for (size_t at = 0; at < down.size();) {
        const size_t n = std::min<size_t>(down.size() - at, 5000);
        const std::array<asio::const_buffer, 3> parts{asio::buffer(down.data() + at, 1),
                                                      asio::buffer(down.data() + at + 1, n / 2),
                                                      asio::buffer(down.data() + at + 1 + n / 2, n - 1 - n / 2)};
        auto [ec, written] = co_await asio::async_write(*server, parts, kAwait);
        EXPECT_FALSE(ec) << ec.message();
        EXPECT_EQ(written, n);
        if (ec) co_return;
        at += n;
      }
    };
    auto client_write = [&]() -> awaitable<void> {
      auto [ec, n] = co_await asio::async_write(*client, asio::buffer(up), kAwait);
      EXPECT_FALSE(ec) << ec.message();
      EXPECT_EQ(n, up.size());
    };
    auto client_read = [&]() -> awaitable<std::string> {
      std::string got(down.size(), '\0');
      auto [ec, n] = co_await asio::async_read(*client, asio::buffer(got), kAwait);
      EXPECT_FALSE(ec) << ec.message();
      got.resize(n);
      co_return got;
    };
    auto all = server_read() && server_write() && client_write() && client_read();
    auto [server_got, client_got] = co_await std::move(all);
    EXPECT_TRUE(server_got == up) << "server received " << server_got.size() << " bytes, not what was sent";
    EXPECT_TRUE(client_got == down) << "client received " << client_got.size() << " bytes, not what was sent";
  });
}

TEST_F(LeanTlsStreamTest, WriteSomeCoalescesABufferSequenceIntoOneRecord) {
  run([&]() -> awaitable<void> {
    std::unique_ptr<LeanTlsStream> server;
    std::unique_ptr<Client> client;
    co_await connect(server, client);
    const std::array<asio::const_buffer, 3> parts{asio::buffer("ab", 2), asio::buffer("cd", 2),
                                                  asio::buffer("ef", 2)};
    auto [wec, written] = co_await server->async_write_some(parts, kAwait);
    EXPECT_FALSE(wec) << wec.message();
    EXPECT_EQ(written, 6u);
    // One record: one read returns it whole.
    std::array<char, 64> got{};
    auto [rec, n] = co_await client->async_read_some(asio::buffer(got), kAwait);
    EXPECT_FALSE(rec) << rec.message();
    EXPECT_EQ(std::string(got.data(), n), "abcdef");

    // More than a record's worth: one write takes one record (16 KiB).
    const std::string big = pattern(40'000, 3);
    auto [bec, bn] = co_await server->async_write_some(asio::buffer(big), kAwait);
    EXPECT_FALSE(bec) << bec.message();
    EXPECT_EQ(bn, lean_tls::kMaxWrite);
  });
}

// What an HTTP server sees from a pipelining client: 40 KB (three records)
// in one write, then silence until everything is answered. The server reads
// in small pieces and answers each before reading on, so most reads find
// plaintext OpenSSL already holds (SSL_pending) and no new bytes on the
// socket: they must return it, not wait for the socket.
TEST_F(LeanTlsStreamTest, ReadsReturnHeldPlaintextWhileThePeerIsSilent) {
  run([&]() -> awaitable<void> {
    std::unique_ptr<LeanTlsStream> server;
    std::unique_ptr<Client> client;
    co_await connect(server, client);
    const std::string up = pattern(40 * 1024, 4);
    bool saw_pending = false;
    auto server_echo = [&]() -> awaitable<void> {
      std::array<char, 512> chunk{};
      for (size_t got = 0; got < up.size();) {
        // Bounded: a read that waits for bytes that never come times out.
        beast::get_lowest_layer(*server).expires_after(std::chrono::seconds(5));
        auto [rec, n] = co_await server->async_read_some(asio::buffer(chunk), kAwait);
        if (rec) {
          ADD_FAILURE() << "server read after " << got << " of " << up.size() << " bytes: " << rec.message();
          co_return;
        }
        got += n;
        saw_pending = saw_pending || SSL_pending(server->native_handle()) > 0;
        auto [wec, wn] = co_await asio::async_write(*server, asio::buffer(chunk.data(), n), kAwait);
        if (wec) {
          ADD_FAILURE() << "server write: " << wec.message();
          co_return;
        }
      }
      beast::get_lowest_layer(*server).expires_never();
    };
    auto client_side = [&]() -> awaitable<std::string> {
      auto [wec, wn] = co_await asio::async_write(*client, asio::buffer(up), kAwait);
      EXPECT_FALSE(wec) << wec.message();
      std::string back(up.size(), '\0');
      auto [rec, rn] = co_await asio::async_read(*client, asio::buffer(back), kAwait);
      EXPECT_FALSE(rec) << rec.message();
      back.resize(rn);
      co_return back;
    };
    auto both = server_echo() && client_side();
    const std::string back = co_await std::move(both);
    EXPECT_TRUE(back == up) << "the client got " << back.size() << " of " << up.size() << " bytes back";
    EXPECT_TRUE(saw_pending) << "no read left plaintext in OpenSSL: the test did not test that";
  });
}

TEST_F(LeanTlsStreamTest, CloseNotifyReadsAsEofAndShutdownCompletes) {
  run([&]() -> awaitable<void> {
    std::unique_ptr<LeanTlsStream> server;
    std::unique_ptr<Client> client;
    co_await connect(server, client);
    // The server reads the client's close_notify as eof, then sends its own,
    // which completes the client's shutdown.
    auto server_side = [&]() -> awaitable<void> {
      std::array<char, 16> buf{};
      auto [rec, n] = co_await server->async_read_some(asio::buffer(buf), kAwait);
      EXPECT_EQ(rec, asio::error::eof) << rec.message();
      auto [sec] = co_await server->async_shutdown(kAwait);
      EXPECT_FALSE(sec) << sec.message();
    };
    auto client_side = [&]() -> awaitable<void> { co_await client->async_shutdown(kAwait); };
    auto both = server_side() && client_side();
    co_await std::move(both);
  });
}

TEST_F(LeanTlsStreamTest, TcpCloseWithoutCloseNotifyIsStreamTruncated) {
  run([&]() -> awaitable<void> {
    std::unique_ptr<LeanTlsStream> server;
    std::unique_ptr<Client> client;
    co_await connect(server, client);
    // The client reads first (the session tickets too), so that its close
    // is a FIN, not a reset for unread data.
    auto [wec, wn] = co_await server->async_write_some(asio::buffer("x", 1), kAwait);
    EXPECT_FALSE(wec) << wec.message();
    std::array<char, 16> buf{};
    auto [rec, rn] = co_await client->async_read_some(asio::buffer(buf), kAwait);
    EXPECT_FALSE(rec) << rec.message();
    client->next_layer().close();
    auto [ec, n] = co_await server->async_read_some(asio::buffer(buf), kAwait);
    EXPECT_EQ(ec, ssl::error::stream_truncated) << ec.message();
    EXPECT_EQ(n, 0u);
  });
}

TEST_F(LeanTlsStreamTest, ReadTimesOutAndCancelsThroughTheTcpStream) {
  run([&]() -> awaitable<void> {
    std::unique_ptr<LeanTlsStream> server;
    std::unique_ptr<Client> client;
    co_await connect(server, client);
    std::array<char, 16> buf{};
    // cancel(): the pending read ends with operation_aborted.
    asio::post(io_, [&] { beast::get_lowest_layer(*server).cancel(); });
    auto [cec, cn] = co_await server->async_read_some(asio::buffer(buf), kAwait);
    EXPECT_EQ(cec, asio::error::operation_aborted) << cec.message();
    // A timeout set on the tcp_stream applies (and closes the socket).
    beast::get_lowest_layer(*server).expires_after(std::chrono::milliseconds(50));
    auto [tec, tn] = co_await server->async_read_some(asio::buffer(buf), kAwait);
    EXPECT_EQ(tec, beast::error::timeout) << tec.message();
  });
}

TEST_F(LeanTlsStreamTest, AFailedHandshakeIsAnError) {
  auto other = ensure_self_signed_tls(agora::testing::temp_dir() / "lean-tls-other");
  ASSERT_TRUE(other) << other.error().to_string();
  ClientTlsOptions options;
  options.ca_file = other->ca_cert;  // trusts another CA: the client refuses
  auto ctx = make_client_tls_context(options);
  ASSERT_TRUE(ctx);
  client_options_ = options;
  run([&]() -> awaitable<void> {
    std::unique_ptr<LeanTlsStream> server;
    std::unique_ptr<Client> client;
    error_code server_ec, client_ec;
    co_await connect(server, client, ctx->get(), &server_ec, &client_ec);
    EXPECT_TRUE(client_ec);
    EXPECT_TRUE(server_ec);
    EXPECT_EQ(server_ec.category(), asio::error::get_ssl_category()) << server_ec.message();
  });
}

TEST_F(LeanTlsStreamTest, WebSocketPingsMessagesAndCloseHandshake) {
  run([&]() -> awaitable<void> {
    std::unique_ptr<LeanTlsStream> server_tls;
    std::unique_ptr<Client> client_tls;
    co_await connect(server_tls, client_tls);
    websocket::stream<LeanTlsStream, false> server(std::move(*server_tls));
    websocket::stream<Client> client(std::move(*client_tls));
    websocket::stream_base::timeout to{};
    to.handshake_timeout = std::chrono::seconds(5);
    to.idle_timeout = std::chrono::milliseconds(200);  // pings after 100 ms of silence
    to.keep_alive_pings = true;
    server.set_option(to);
    int pings = 0;
    client.control_callback([&](websocket::frame_type kind, beast::string_view) {
      if (kind == websocket::frame_type::ping) ++pings;
    });
    auto accept = [&]() -> awaitable<void> {
      auto [ec] = co_await server.async_accept(kAwait);
      EXPECT_FALSE(ec) << ec.message();
    };
    auto handshake = [&]() -> awaitable<void> {
      auto [ec] = co_await client.async_handshake("127.0.0.1", "/v1/node", kAwait);
      EXPECT_FALSE(ec) << ec.message();
    };
    auto both = accept() && handshake();
    co_await std::move(both);

    // Both reads stay pending (the client's answers the pings, the
    // server's takes the pongs) until three pings went by; then a message,
    // then a close from the server: the client's read ends with `closed`.
    beast::flat_buffer server_buf, client_buf;
    auto server_side = [&]() -> awaitable<void> {
      auto [rec, n] = co_await server.async_read(server_buf, kAwait);
      EXPECT_FALSE(rec) << rec.message();
      EXPECT_EQ(beast::buffers_to_string(server_buf.data()), "hello over lean TLS");
      auto [cec] = co_await server.async_close(websocket::close_code::going_away, kAwait);
      EXPECT_FALSE(cec) << cec.message();
    };
    auto client_side = [&]() -> awaitable<void> {
      auto [rec, n] = co_await client.async_read(client_buf, kAwait);
      EXPECT_EQ(rec, websocket::error::closed) << rec.message();
    };
    auto script = [&]() -> awaitable<void> {
      asio::steady_timer t(io_);
      for (int i = 0; i < 500 && pings < 3; ++i) {
        t.expires_after(std::chrono::milliseconds(10));
        co_await t.async_wait(kAwait);
      }
      EXPECT_GE(pings, 3);
      const std::string hello = "hello over lean TLS";
      auto [wec, wn] = co_await client.async_write(asio::buffer(hello), kAwait);
      EXPECT_FALSE(wec) << wec.message();
    };
    auto all = server_side() && client_side() && script();
    co_await std::move(all);
  });
}

}  // namespace
}  // namespace agora::net
