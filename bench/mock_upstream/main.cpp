// agora-mock-openai: a small, fast OpenAI-compatible upstream for benchmarking
// a peer gateway (bench/peer/portkey). Plain HTTP/1.1 keep-alive on
// 127.0.0.1; `POST /v1/chat/completions` answers at once, with no model work,
// in the shape of `agora node --engine fake` (mock_openai.h). One thread by
// default, so it takes one core at most on a 2-core benchmark machine.
//
// Prints "agora-mock-openai listening on http://127.0.0.1:PORT" (stdout,
// flushed) once it accepts connections; stops on SIGINT/SIGTERM.
#include <CLI/CLI.hpp>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdio>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

#include "mock_openai.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);
constexpr uint64_t kMaxBodyBytes = 1 << 20;
constexpr uint32_t kMaxHeaderBytes = 16 << 10;
constexpr auto kIdleTimeout = std::chrono::seconds(120);  // between requests
constexpr auto kIoTimeout = std::chrono::seconds(30);     // reading one request, writing one answer
constexpr std::string_view kServer = "agora-mock-openai";

struct Server {
  agora::mock::AnswerOptions answer;
  std::atomic<uint64_t> next_id{0};
};

Response json_response(const Request& req, http::status status, std::string body) {
  Response res{status, req.version()};
  res.set(http::field::server, kServer);
  res.set(http::field::content_type, "application/json");
  res.keep_alive(req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

Response error_response(const Request& req, http::status status, std::string_view message,
                        std::string_view code) {
  return json_response(req, status, agora::mock::error_body(message, "invalid_request_error", code));
}

// Writes a streamed answer: headers, one HTTP chunk per SSE event, the last chunk.
asio::awaitable<bool> write_stream(beast::tcp_stream& stream, const Request& req,
                                   const agora::mock::Answer& answer, const agora::mock::AnswerOptions& options) {
  http::response<http::empty_body> res{http::status::ok, req.version()};
  res.set(http::field::server, kServer);
  res.set(http::field::content_type, "text/event-stream; charset=utf-8");
  res.set(http::field::cache_control, "no-cache");
  res.keep_alive(req.keep_alive());
  res.chunked(true);
  http::response_serializer<http::empty_body> sr{res};
  auto [hec, hn] = co_await http::async_write_header(stream, sr, kAwait);
  if (hec) co_return false;
  agora::mock::StreamRenderer renderer(answer, options);
  std::string event;
  while (renderer.next(event)) {
    const auto chunk = http::make_chunk(asio::buffer(event));
    auto [ec, n] = co_await asio::async_write(stream, chunk, kAwait);
    if (ec) co_return false;
    event.clear();
  }
  const auto last = http::make_chunk_last();
  auto [lec, ln] = co_await asio::async_write(stream, last, kAwait);
  co_return !lec && req.keep_alive();
}

// Answers one request; returns whether the connection stays open.
asio::awaitable<bool> handle(beast::tcp_stream& stream, Server& server, const Request& req) {
  Response res;
  if (req.target() != "/v1/chat/completions") {
    res = error_response(req, http::status::not_found, "no such endpoint: " + std::string(req.target()),
                         "not_found");
  } else if (req.method() != http::verb::post) {
    res = error_response(req, http::status::method_not_allowed, "use POST", "method_not_allowed");
  } else if (auto parsed = agora::mock::parse_chat_request(req.body()); !parsed) {
    res = error_response(req, http::status::bad_request, parsed.error().message, "invalid_request");
  } else {
    const uint64_t n = server.next_id.fetch_add(1, std::memory_order_relaxed) + 1;
    const auto answer = agora::mock::make_answer("chatcmpl-mock-" + std::to_string(n),
                                                 static_cast<int64_t>(std::time(nullptr)),
                                                 std::move(*parsed), server.answer);
    if (answer.request.stream) co_return co_await write_stream(stream, req, answer, server.answer);
    res = json_response(req, http::status::ok, agora::mock::completion_body(answer, server.answer));
  }
  auto [ec, n] = co_await http::async_write(stream, res, kAwait);
  co_return !ec && res.keep_alive();
}

asio::awaitable<void> session(tcp::socket socket, Server& server) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (;;) {
    // Between requests: the first byte within the idle timeout.
    if (buffer.size() == 0) {
      stream.expires_after(kIdleTimeout);
      auto [ec, n] = co_await stream.async_read_some(buffer.prepare(16 * 1024), kAwait);
      if (ec) break;
      buffer.commit(n);
    }
    http::request_parser<http::string_body> parser;
    parser.header_limit(kMaxHeaderBytes);
    parser.body_limit(kMaxBodyBytes);
    stream.expires_after(kIoTimeout);
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, kAwait);
    if (ec == http::error::body_limit || ec == http::error::header_limit) {
      const Request& head = parser.get();
      Response res = error_response(head, http::status::payload_too_large, "the request is too large",
                                    "request_too_large");
      res.keep_alive(false);
      co_await http::async_write(stream, res, kAwait);
      break;
    }
    if (ec) break;
    const Request req = parser.release();
    const bool keep = co_await handle(stream, server, req);
    if (!keep) break;
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, Server& server) {
  auto on_exit = [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      std::fprintf(stderr, "agora-mock-openai: session error: %s\n", ex.what());
    }
  };
  for (;;) {
    auto strand = asio::make_strand(acceptor.get_executor());
    auto [ec, socket] = co_await acceptor.async_accept(strand, kAwait);
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) continue;  // e.g. out of file descriptors: keep serving the open ones
    socket.set_option(tcp::no_delay(true), ec);
    auto task = session(std::move(socket), server);
    asio::co_spawn(strand, std::move(task), on_exit);
  }
}

}  // namespace

int main(int argc, char** argv) {
  uint16_t port = 0;
  unsigned threads = 1;
  Server server;
  CLI::App app{"agora-mock-openai: an OpenAI-compatible mock upstream (plain HTTP on 127.0.0.1) that\n"
               "answers POST /v1/chat/completions at once, in the shape of `agora node --engine fake`"};
  app.add_option("--port", port, "TCP port on 127.0.0.1 (0: an ephemeral one, printed)")->capture_default_str();
  app.add_option("--tokens", server.answer.tokens, "Completion tokens per answer (fewer when max_tokens is lower)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20))
      ->capture_default_str();
  app.add_option("--token-text", server.answer.token_text, "Every token's text")->capture_default_str();
  app.add_option("--threads", threads, "I/O threads")->check(CLI::Range(1u, 64u))->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    asio::io_context ioc(static_cast<int>(threads));
    tcp::acceptor acceptor(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    asio::signal_set signals(ioc, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code&, int) { ioc.stop(); });
    asio::co_spawn(ioc, accept_loop(acceptor, server), asio::detached);
    std::printf("agora-mock-openai listening on http://127.0.0.1:%u\n",
                static_cast<unsigned>(acceptor.local_endpoint().port()));
    std::fflush(stdout);
    std::vector<std::thread> extra;
    for (unsigned i = 1; i < threads; ++i) extra.emplace_back([&ioc] { ioc.run(); });
    ioc.run();
    for (auto& t : extra) t.join();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "agora-mock-openai: %s\n", e.what());
    return 1;
  }
  return 0;
}
