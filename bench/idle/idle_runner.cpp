#include "idle_runner.h"

#include <netinet/in.h>
#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <cstdio>
#include <memory>

#include "net/tls.h"
#include "net/url.h"
#include "protocol/messages.h"

namespace agora::idle {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using Ws = websocket::stream<beast::ssl_stream<beast::tcp_stream>>;
constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);
constexpr uint64_t kPerSource = 25'000;  // ephemeral ports are 32768-60999 by default

#if defined(IP_BIND_ADDRESS_NO_PORT)
// Binding a source address without picking its port until connect(), so a
// port can be shared by connections to different destinations.
using bind_address_no_port = asio::detail::socket_option::boolean<IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT>;
#endif

bool is_fd_exhaustion(const boost::system::error_code& ec) {
  return ec == boost::system::errc::too_many_files_open ||
         ec == boost::system::errc::too_many_files_open_in_system;
}

class IdleRun {
 public:
  IdleRun(const IdleOptions& options, net::Url url, std::shared_ptr<asio::ssl::context> tls_context,
          net::ClientTlsOptions tls_options, tcp::endpoint target, std::vector<asio::ip::address> sources,
          asio::io_context& ioc)
      : opt_(options),
        url_(std::move(url)),
        tls_context_(std::move(tls_context)),
        tls_options_(std::move(tls_options)),
        target_(target),
        sources_(std::move(sources)),
        ioc_(ioc),
        signals_(ioc, SIGINT, SIGTERM),
        progress_timer_(ioc),
        hold_timer_(ioc),
        timeout_(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.timeout_s))) {
    prefix_ = opt_.node_prefix.empty() ? "idle-" + std::to_string(::getpid()) + "-" : opt_.node_prefix;
    host_ = net::format_host_port(url_.host, url_.port);
    target_path_ = url_.target == "/" ? std::string(protocol::kNodePath) : url_.target;
  }

  IdleResults run() {
    start_ = Clock::now();
    results_.sources = sources_.empty() ? 1 : static_cast<unsigned>(sources_.size());
    signals_.async_wait([this](const boost::system::error_code& ec, int) {
      if (ec) return;
      std::fprintf(stderr, "agora-idle-nodes: signal, closing %llu connections\n",
                   static_cast<unsigned long long>(results_.progress.open));
      finish();
    });
    auto on_exit = [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        std::fprintf(stderr, "agora-idle-nodes: internal error: %s\n", ex.what());
      }
    };
    const uint64_t workers = std::min<uint64_t>(opt_.concurrency, opt_.count);
    workers_left_ = workers;
    for (uint64_t i = 0; i < workers; ++i) asio::co_spawn(ioc_, worker(), on_exit);
    if (workers == 0) setup_done();
    tick();
    ioc_.run();
    results_.progress.elapsed_s = elapsed();
    return std::move(results_);
  }

 private:
  double elapsed() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

  void report(bool done) {
    results_.progress.elapsed_s = elapsed();
    if (opt_.on_progress) opt_.on_progress(results_, done);
  }

  void tick() {
    progress_timer_.expires_after(std::chrono::seconds(1));
    progress_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec || finished_) return;
      report(false);
      tick();
    });
  }

  void fail(const std::string& kind, const std::string& message) {
    ++results_.progress.failed;
    if (results_.errors[kind]++ == 0) results_.error_examples[kind] = message;
  }

  // Every set-up is over: report, then hold.
  void setup_done() {
    results_.setup_s = elapsed();
    report(true);
    if (opt_.hold_s < 0) return;  // until a signal
    hold_timer_.expires_after(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt_.hold_s)));
    hold_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) finish();
    });
  }

  // Ends the run: the process closes the sockets when it exits.
  void finish() {
    if (finished_) return;
    finished_ = true;
    results_.progress.elapsed_s = elapsed();
    ioc_.stop();
  }

  // One set-up slot: takes the next index, connects it, hands the open
  // connection to a holder, repeats.
  asio::awaitable<void> worker() {
    while (!finished_ && next_ < opt_.count) {
      const uint64_t index = next_++;
      ++results_.progress.attempted;
      std::shared_ptr<Ws> ws;
      std::string kind, message;
      co_await open_one(index, ws, kind, message);
      if (!ws) {
        fail(kind, message);
        continue;
      }
      ++results_.progress.welcomed;
      ++results_.progress.open;
      asio::co_spawn(ioc_, hold(std::move(ws)), asio::detached);
    }
    if (--workers_left_ == 0 && !finished_) setup_done();
  }

  // Connect, TLS, upgrade, hello, welcome. On success `out` holds the
  // stream; otherwise `kind` and `message` say what failed.
  asio::awaitable<void> open_one(uint64_t index, std::shared_ptr<Ws>& out, std::string& kind,
                                 std::string& message) {
    auto ws = std::make_shared<Ws>(ioc_, *tls_context_);
    auto& tcp_layer = beast::get_lowest_layer(*ws);
    tcp_layer.expires_after(timeout_);
    boost::system::error_code ec;
    tcp_layer.socket().open(target_.protocol(), ec);
    if (!ec && sources_.size() > 1) {
#if defined(IP_BIND_ADDRESS_NO_PORT)
      tcp_layer.socket().set_option(bind_address_no_port(true), ec);
#endif
      const tcp::endpoint local(sources_[index % sources_.size()], 0);
      if (!ec) tcp_layer.socket().bind(local, ec);
    }
    if (ec) {
      kind = is_fd_exhaustion(ec) ? "fd_limit" : "connect";
      message = "socket: " + ec.message() + fd_note(ec);
      co_return;
    }
    auto [cec] = co_await tcp_layer.async_connect(target_, kAwait);
    if (cec) {
      kind = is_fd_exhaustion(cec) ? "fd_limit" : "connect";
      message = "connect: " + cec.message() + fd_note(cec);
      co_return;
    }
    tcp_layer.socket().set_option(tcp::no_delay(true), ec);
    if (Status st = net::prepare_client_stream(ws->next_layer().native_handle(), url_.host, tls_options_); !st) {
      kind = "tls";
      message = st.error().message;
      co_return;
    }
    auto [hec] = co_await ws->next_layer().async_handshake(asio::ssl::stream_base::client, kAwait);
    if (hec) {
      kind = "tls";
      message = "TLS handshake: " + net::describe_tls_error(hec, ws->next_layer().native_handle());
      co_return;
    }
    // No client-side pings: like a quiet node, this side only answers the
    // gateway's pings (beast does that while a read is pending).
    websocket::stream_base::timeout to{};
    to.handshake_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(timeout_);
    to.idle_timeout = websocket::stream_base::none();
    to.keep_alive_pings = false;
    ws->set_option(to);
    ws->read_message_max(protocol::kMaxFrameBytes);
    const std::string token = opt_.token;
    ws->set_option(websocket::stream_base::decorator([token](websocket::request_type& req) {
      req.set(http::field::authorization, "Bearer " + token);
      req.set(http::field::user_agent, "agora-idle-nodes/0.1.0");
    }));
    websocket::response_type res;
    auto [wec] = co_await ws->async_handshake(res, host_, target_path_, kAwait);
    if (wec) {
      kind = "upgrade";
      message = res.result_int() != 0 && res.result() != http::status::switching_protocols
                    ? "WebSocket upgrade refused: HTTP " + std::to_string(res.result_int()) + " " + res.body()
                    : "WebSocket upgrade: " + wec.message();
      co_return;
    }
    ws->text(true);
    const std::string hello = encode_hello(index);
    auto [hwec, hn] = co_await ws->async_write(asio::buffer(hello), kAwait);
    if (hwec) {
      kind = "hello";
      message = "sending hello: " + hwec.message();
      co_return;
    }
    beast::flat_buffer buf;
    auto [rec, rn] = co_await ws->async_read(buf, kAwait);
    if (rec) {
      kind = "welcome";
      message = "no welcome: " + (rec == beast::error::timeout ? std::string("timed out") : rec.message());
      co_return;
    }
    auto first = protocol::decode(beast::buffers_to_string(buf.data()));
    if (!first) {
      kind = "welcome";
      message = "first frame: " + first.error().message;
      co_return;
    }
    if (auto* reject = std::get_if<protocol::Reject>(&*first)) {
      kind = "rejected";
      message = reject->code + ": " + reject->message;
      co_return;
    }
    if (!std::holds_alternative<protocol::Welcome>(*first)) {
      kind = "welcome";
      message = "the first frame was a " + std::string(protocol::message_type(*first)) + ", not a welcome";
      co_return;
    }
    tcp_layer.expires_never();
    out = std::move(ws);
  }

  std::string fd_note(const boost::system::error_code& ec) const {
    if (!is_fd_exhaustion(ec)) return {};
    return " (RLIMIT_NOFILE soft " + std::to_string(results_.fd_limit) + ", hard " +
           std::to_string(results_.fd_hard) + ")";
  }

  std::string encode_hello(uint64_t index) const {
    protocol::Hello h;
    h.node_id = prefix_ + std::to_string(index);
    h.agent = "agora-idle-nodes/0.1.0";
    h.region = "bench";
    protocol::ModelAdvert m;
    m.name = opt_.model;
    m.sha256 = std::string(64, '0');
    m.quantization = "none";
    m.architecture = "none";
    m.context_length = 2048;
    m.ctx_per_slot = 2048;
    m.slots = 1;
    h.models.push_back(std::move(m));
    return protocol::encode(h);
  }

  // Keeps one welcomed connection open: a pending read answers pings.
  asio::awaitable<void> hold(std::shared_ptr<Ws> ws) {
    beast::flat_buffer buf;
    for (;;) {
      auto [ec, n] = co_await ws->async_read(buf, kAwait);
      if (ec) {
        if (finished_) co_return;
        --results_.progress.open;
        ++results_.progress.dropped;
        if (results_.errors["dropped"]++ == 0) results_.error_examples["dropped"] = ec.message();
        co_return;
      }
      ++results_.frames;
      buf.consume(buf.size());
    }
  }

 public:
  IdleResults results_;

 private:
  const IdleOptions& opt_;
  net::Url url_;
  std::shared_ptr<asio::ssl::context> tls_context_;
  net::ClientTlsOptions tls_options_;
  tcp::endpoint target_;
  std::vector<asio::ip::address> sources_;
  asio::io_context& ioc_;
  asio::signal_set signals_;
  asio::steady_timer progress_timer_;
  asio::steady_timer hold_timer_;
  Clock::duration timeout_;
  std::string prefix_, host_, target_path_;
  Clock::time_point start_;
  uint64_t next_ = 0;
  uint64_t workers_left_ = 0;
  bool finished_ = false;
};

}  // namespace

std::pair<uint64_t, uint64_t> raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return {0, 0};
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit want = rl;
    want.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &want) == 0) rl = want;
  }
  return {static_cast<uint64_t>(rl.rlim_cur), static_cast<uint64_t>(rl.rlim_max)};
}

Result<IdleResults> run_idle_nodes(const IdleOptions& options) {
  auto url = net::parse_url(options.url);
  if (!url) return url.error();
  if (url->scheme != "wss") return make_error(Errc::invalid_argument, "--url must be wss://HOST:PORT/v1/node");
  if (options.token.empty()) return make_error(Errc::invalid_argument, "--token is required");
  if (options.concurrency == 0) return make_error(Errc::invalid_argument, "--concurrency must be at least 1");

  net::ClientTlsOptions tls_options;
  if (!options.ca_cert.empty()) tls_options.ca_file = options.ca_cert;
  auto ctx = net::make_client_tls_context(tls_options);
  if (!ctx) return ctx.error();

  asio::io_context ioc(1);
  boost::system::error_code ec;
  tcp::resolver resolver(ioc);
  auto endpoints = resolver.resolve(url->host, std::to_string(url->port), ec);
  if (ec || endpoints.empty()) {
    return make_error(Errc::unavailable, "cannot resolve " + url->host + ": " + ec.message());
  }
  const tcp::endpoint target = *endpoints.begin();

  // Source addresses: each has its own ephemeral port range.
  unsigned sources = options.sources;
  const bool loopback_v4 = target.address().is_v4() && target.address().is_loopback();
  if (sources == 0) {
    sources = loopback_v4 && options.count > kPerSource
                  ? static_cast<unsigned>((options.count + kPerSource - 1) / kPerSource)
                  : 1;
  }
  std::vector<asio::ip::address> source_addrs;
  if (sources > 1) {
    auto base = asio::ip::make_address_v4(options.source_base, ec);
    if (ec) return make_error(Errc::invalid_argument, "--source-base must be an IPv4 address");
    if (!target.address().is_v4()) {
      return make_error(Errc::invalid_argument, "several source addresses need an IPv4 target");
    }
    for (unsigned i = 0; i < sources; ++i) {
      source_addrs.emplace_back(asio::ip::address_v4(base.to_uint() + i));
    }
  }

  const auto [soft, hard] = raise_fd_limit();
  IdleRun run(options, *url, *ctx, tls_options, target, std::move(source_addrs), ioc);
  run.results_.fd_limit = soft;
  run.results_.fd_hard = hard;
  constexpr uint64_t kSpareFds = 16;  // stdio, the resolver, the signal pipe, ...
  if (soft != 0 && options.count + kSpareFds > soft) {
    std::fprintf(stderr,
                 "agora-idle-nodes: warning: %llu connections need about %llu file descriptors, but "
                 "RLIMIT_NOFILE is %llu (hard limit %llu): connections past the limit fail as fd_limit\n",
                 static_cast<unsigned long long>(options.count),
                 static_cast<unsigned long long>(options.count + kSpareFds),
                 static_cast<unsigned long long>(soft), static_cast<unsigned long long>(hard));
  }
  return run.run();
}

}  // namespace agora::idle
