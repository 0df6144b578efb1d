#include "load_runner.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <deque>
#include <memory>
#include <vector>

#include "net/tls.h"
#include "net/url.h"

namespace agora::load {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using TlsStream = asio::ssl::stream<beast::tcp_stream>;

constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);
// Largest response body read (a non-streamed completion).
constexpr uint64_t kBodyLimit = 16 << 20;

int64_t micros_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration_cast<std::chrono::microseconds>(to - from).count();
}

// One scheduled request.
struct Job {
  Clock::time_point scheduled;
  bool measured = false;
};

// How one request ended.
struct Outcome {
  bool ok = false;
  std::string error_kind;     // when !ok: connect, timeout, http_<status>, io, protocol
  std::string error_message;  // when !ok
  bool retryable = false;     // failed before any response byte on a reused connection
  bool keep_alive = false;
  std::optional<int64_t> ttft_us;
  std::optional<int64_t> overhead_us;
  uint64_t chunks = 0;
};

Outcome failure(std::string kind, std::string message) {
  Outcome o;
  o.error_kind = std::move(kind);
  o.error_message = std::move(message);
  return o;
}

std::string io_kind(const boost::system::error_code& ec) {
  return ec == beast::error::timeout ? "timeout" : "io";
}

// A pooled connection: TLS or plain, opened lazily, reopened after errors.
struct Connection {
  std::unique_ptr<TlsStream> tls;
  std::unique_ptr<beast::tcp_stream> plain;
  beast::flat_buffer buffer;
  bool used = false;  // has carried a request since it was opened

  bool is_open() const { return tls || plain; }
  void close() {
    if (tls) beast::get_lowest_layer(*tls).close();
    if (plain) plain->close();
    tls.reset();
    plain.reset();
    buffer.clear();
    used = false;
  }
};

class LoadRun {
 public:
  LoadRun(const LoadOptions& options, net::Url url, std::shared_ptr<asio::ssl::context> tls_context,
          net::ClientTlsOptions tls_options, tcp::resolver::results_type endpoints,
          asio::io_context& ioc)
      : opt_(options),
        url_(std::move(url)),
        tls_context_(std::move(tls_context)),
        tls_options_(std::move(tls_options)),
        endpoints_(std::move(endpoints)),
        ioc_(ioc),
        timeout_(std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(options.timeout_s))) {
    build_request();
  }

  LoadResults run() {
    const double period_ns = 1e9 / opt_.rate;
    warmup_count_ = static_cast<uint64_t>(std::llround(opt_.warmup_s * opt_.rate));
    const uint64_t measured = opt_.requests ? *opt_.requests
                                            : static_cast<uint64_t>(std::llround(opt_.duration_s * opt_.rate));
    total_ = warmup_count_ + measured;
    t0_ = Clock::now() + std::chrono::milliseconds(1);
    window_start_ = t0_ + std::chrono::nanoseconds(
                              static_cast<int64_t>(static_cast<double>(warmup_count_) * period_ns));
    results_.target_rate = opt_.rate;
    last_done_ = window_start_;

    auto on_exit = [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        std::fprintf(stderr, "agora-load: internal error: %s\n", ex.what());
      }
    };
    asio::co_spawn(ioc_, dispatch(period_ns), on_exit);
    for (unsigned i = 0; i < opt_.connections; ++i) asio::co_spawn(ioc_, worker(), on_exit);
    ioc_.run();
    results_.window_s = std::chrono::duration<double>(last_done_ - window_start_).count();
    return std::move(results_);
  }

 private:
  void build_request() {
    boost::json::object body{{"model", opt_.model},
                             {"messages", boost::json::array{boost::json::object{
                                              {"role", "user"}, {"content", opt_.prompt}}}},
                             {"max_tokens", opt_.max_tokens}};
    if (opt_.stream) body["stream"] = true;
    request_.method(http::verb::post);
    request_.target(url_.target);
    request_.version(11);
    const bool default_port = url_.port == (url_.is_tls() ? 443 : 80);
    const std::string host = url_.host.find(':') != std::string::npos ? "[" + url_.host + "]" : url_.host;
    request_.set(http::field::host, default_port ? host : host + ":" + std::to_string(url_.port));
    request_.set(http::field::user_agent, "agora-load");
    request_.set(http::field::content_type, "application/json");
    request_.set(http::field::accept, opt_.stream ? "text/event-stream" : "application/json");
    if (!opt_.api_key.empty()) request_.set(http::field::authorization, "Bearer " + opt_.api_key);
    for (const auto& [name, value] : opt_.headers) request_.set(name, value);
    request_.body() = boost::json::serialize(body);
    request_.prepare_payload();
  }

  // Schedules request i at t0 + i / rate, never waiting for responses.
  asio::awaitable<void> dispatch(double period_ns) {
    asio::steady_timer timer(ioc_);
    for (uint64_t i = 0; i < total_; ++i) {
      const auto due = t0_ + std::chrono::nanoseconds(
                                 static_cast<int64_t>(static_cast<double>(i) * period_ns));
      if (due > Clock::now()) {
        timer.expires_at(due);
        co_await timer.async_wait(kAwait);
      }
      const bool measured = i >= warmup_count_;
      if (measured) {
        ++results_.sent;
        const double lag = static_cast<double>(micros_between(due, Clock::now()));
        if (lag > results_.max_dispatch_lag_us) results_.max_dispatch_lag_us = lag;
      }
      queue_.push_back(Job{due, measured});
      wake_one();
    }
    scheduling_done_ = true;
    while (!idle_.empty()) wake_one();
  }

  void wake_one() {
    if (idle_.empty()) return;
    asio::steady_timer* t = idle_.back();
    idle_.pop_back();
    t->cancel();
  }

  // One pool slot: takes queued jobs in order, one at a time.
  asio::awaitable<void> worker() {
    asio::steady_timer wake(ioc_);
    Connection conn;
    for (;;) {
      while (queue_.empty()) {
        if (scheduling_done_) {
          conn.close();
          co_return;
        }
        wake.expires_at(Clock::time_point::max());
        idle_.push_back(&wake);
        co_await wake.async_wait(kAwait);
      }
      const Job job = queue_.front();
      queue_.pop_front();
      Outcome o = co_await execute(conn, job);
      record(job, o);
    }
  }

  asio::awaitable<Outcome> execute(Connection& conn, const Job& job) {
    for (int attempt = 0;; ++attempt) {
      if (!conn.is_open()) {
        Outcome c = co_await connect(conn);
        if (!c.error_kind.empty()) co_return c;
      }
      const bool reused = conn.used;
      conn.used = true;
      // (No co_await inside ?: — GCC 12 miscompiles that.)
      Outcome o;
      if (conn.tls) {
        o = co_await exchange(*conn.tls, conn.buffer, job);
      } else {
        o = co_await exchange(*conn.plain, conn.buffer, job);
      }
      if (!o.ok || !o.keep_alive) conn.close();
      if (o.retryable && reused && attempt == 0) {
        ++results_.retries;
        continue;
      }
      co_return o;
    }
  }

  asio::awaitable<Outcome> connect(Connection& conn) {
    ++results_.connects;
    beast::tcp_stream tcp_stream(ioc_);
    tcp_stream.expires_after(timeout_);
    auto [ec, ep] = co_await tcp_stream.async_connect(endpoints_, kAwait);
    if (ec) co_return failure(ec == beast::error::timeout ? "timeout" : "connect", "connect: " + ec.message());
    tcp_stream.socket().set_option(tcp::no_delay(true));
    if (!url_.is_tls()) {
      tcp_stream.expires_never();
      conn.plain = std::make_unique<beast::tcp_stream>(std::move(tcp_stream));
      co_return Outcome{};
    }
    auto tls = std::make_unique<TlsStream>(std::move(tcp_stream), *tls_context_);
    if (Status st = net::prepare_client_stream(*tls, url_.host, tls_options_); !st) {
      co_return failure("connect", st.error().message);
    }
    auto [hec] = co_await tls->async_handshake(asio::ssl::stream_base::client, kAwait);
    if (hec) {
      co_return failure(hec == beast::error::timeout ? "timeout" : "connect",
                        "TLS handshake: " + net::describe_tls_error(hec, *tls));
    }
    beast::get_lowest_layer(*tls).expires_never();
    conn.tls = std::move(tls);
    co_return Outcome{};
  }

  // Sends the request and reads the whole response on an open connection.
  template <class Stream>
  asio::awaitable<Outcome> exchange(Stream& stream, beast::flat_buffer& buffer, const Job& job) {
    beast::get_lowest_layer(stream).expires_after(timeout_);
    auto [wec, wn] = co_await http::async_write(stream, request_, kAwait);
    if (wec) {
      Outcome o = failure(io_kind(wec), "write: " + wec.message());
      o.retryable = wec != beast::error::timeout;
      co_return o;
    }
    http::response_parser<http::string_body> parser;
    parser.body_limit(kBodyLimit);
    auto [hec, hn] = co_await http::async_read_header(stream, buffer, parser, kAwait);
    if (hec) {
      Outcome o = failure(io_kind(hec), "read header: " + hec.message());
      o.retryable = hec != beast::error::timeout && hn == 0;
      co_return o;
    }
    Outcome o;
    const auto& head = parser.get();
    if (auto it = head.find("x-agora-overhead-us"); it != head.end()) {
      int64_t v = 0;
      const std::string_view s = it->value();
      if (std::from_chars(s.data(), s.data() + s.size(), v).ec == std::errc{}) o.overhead_us = v;
    }
    const unsigned status = head.result_int();
    const bool sse = opt_.stream && status == 200;
    SseScanner scanner;
    while (!parser.is_done()) {
      auto [rec, rn] = co_await http::async_read_some(stream, buffer, parser, kAwait);
      if (rec) co_return failure(io_kind(rec), "read body: " + rec.message());
      if (!sse) continue;
      std::string& body = parser.get().body();
      if (!scanner.feed(body)) co_return failure("protocol", "an SSE event over 1 MiB");
      body.clear();
      if (!o.ttft_us && scanner.content_chunks() > 0) o.ttft_us = micros_between(job.scheduled, Clock::now());
    }
    beast::get_lowest_layer(stream).expires_never();
    o.keep_alive = parser.get().keep_alive();
    if (status != 200) {
      Outcome f = failure("http_" + std::to_string(status), parser.get().body().substr(0, 200));
      f.keep_alive = o.keep_alive;
      co_return f;
    }
    if (sse) {
      if (!scanner.done()) co_return failure("protocol", "the stream ended without data: [DONE]");
      o.chunks = scanner.content_chunks();
    }
    o.ok = true;
    co_return o;
  }

  void record(const Job& job, const Outcome& o) {
    if (!job.measured) return;
    const auto now = Clock::now();
    if (now > last_done_) last_done_ = now;
    if (!o.ok) {
      ++results_.errors[o.error_kind];
      results_.error_examples.try_emplace(o.error_kind, o.error_message);
      return;
    }
    ++results_.ok;
    results_.latency_us.add(micros_between(job.scheduled, now));
    if (o.ttft_us) results_.ttft_us.add(*o.ttft_us);
    if (o.overhead_us) results_.overhead_us.add(*o.overhead_us);
    results_.chunks += o.chunks;
  }

  const LoadOptions& opt_;
  net::Url url_;
  std::shared_ptr<asio::ssl::context> tls_context_;
  net::ClientTlsOptions tls_options_;
  tcp::resolver::results_type endpoints_;
  asio::io_context& ioc_;
  Clock::duration timeout_;
  http::request<http::string_body> request_;

  uint64_t warmup_count_ = 0;
  uint64_t total_ = 0;
  Clock::time_point t0_;
  Clock::time_point window_start_;
  Clock::time_point last_done_;
  std::deque<Job> queue_;
  std::vector<asio::steady_timer*> idle_;  // parked workers' wake-up timers
  bool scheduling_done_ = false;
  LoadResults results_;
};

bool is_token_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

Status check_header(std::string_view name, std::string_view value) {
  if (name.empty() || !std::all_of(name.begin(), name.end(), is_token_char)) {
    return make_error(Errc::invalid_argument, "--header: '" + std::string(name) + "' is not a header name");
  }
  if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos) {
    return make_error(Errc::invalid_argument, "--header " + std::string(name) + ": the value holds CR, LF or NUL");
  }
  return ok_status();
}

}  // namespace

Result<std::pair<std::string, std::string>> parse_header(std::string_view line) {
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) {
    return make_error(Errc::invalid_argument, "--header '" + std::string(line) + "': expected 'Name: value'");
  }
  std::string_view name = line.substr(0, colon);
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  if (Status st = check_header(name, value); !st) return st.error();
  return std::pair{std::string(name), std::string(value)};
}

Result<LoadResults> run_load(const LoadOptions& options) {
  if (!(options.rate > 0)) return make_error(Errc::invalid_argument, "--rate must be > 0");
  if (options.connections == 0) return make_error(Errc::invalid_argument, "--connections must be >= 1");
  if (!(options.timeout_s > 0)) return make_error(Errc::invalid_argument, "--timeout must be > 0");
  for (const auto& [name, value] : options.headers) {
    if (Status st = check_header(name, value); !st) return st.error();
  }
  auto url = net::parse_url(options.url);
  if (!url) return url.error();
  if (url->scheme != "http" && url->scheme != "https") {
    return make_error(Errc::invalid_argument, "--url must be http:// or https://");
  }
  net::ClientTlsOptions tls_options;
  std::shared_ptr<asio::ssl::context> tls_context;
  if (url->is_tls()) {
    if (!options.ca_cert.empty()) tls_options.ca_file = options.ca_cert;
    auto ctx = net::make_client_tls_context(tls_options);
    if (!ctx) return ctx.error();
    tls_context = std::move(*ctx);
  }
  asio::io_context ioc(1);
  tcp::resolver resolver(ioc);
  boost::system::error_code ec;
  auto endpoints = resolver.resolve(url->host, std::to_string(url->port), ec);
  if (ec) return make_error(Errc::unavailable, "cannot resolve " + url->host + ": " + ec.message());
  LoadRun run(options, std::move(*url), std::move(tls_context), std::move(tls_options),
              std::move(endpoints), ioc);
  return run.run();
}

}  // namespace agora::load
