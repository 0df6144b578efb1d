#include "gateway/server.h"

#include <boost/beast/core.hpp>
#include <spdlog/spdlog.h>

#include "common/log.h"
#include "net/spawn.h"
#include "net/url.h"

namespace agora::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);

Status Server::load_tls(const Settings& s) {
  std::filesystem::path cert, key;
  if (s.tls_cert || s.tls_key) {
    if (!s.tls_cert || !s.tls_key) {
      return make_error(Errc::invalid_argument, "--tls-cert and --tls-key must be given together");
    }
    cert = *s.tls_cert;
    key = *s.tls_key;
  } else {
    auto files = net::ensure_self_signed_tls(s.tls_dir, s.tls_names);
    if (!files) return files.error();
    tls_files_ = *files;
    cert = tls_files_.cert;
    key = tls_files_.key;
  }
  auto ctx = net::make_server_tls_context(cert, key);
  if (!ctx) return ctx.error();
  ssl_ = *ctx;
  return ok_status();
}

Status Server::listen(const Settings& s) {
  max_connections_ = s.max_connections;
  auto hp = net::parse_host_port(s.listen, 8443);
  if (!hp) return hp.error();
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(hp->host.empty() ? "0.0.0.0" : hp->host, ec);
  if (ec) return make_error(Errc::invalid_argument, "--listen: '" + hp->host + "' is not an IP address");
  tcp::endpoint ep(addr, hp->port);
  acceptor_.emplace(io_);
  acceptor_->open(ep.protocol(), ec);
  if (!ec) acceptor_->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_->bind(ep, ec);
  if (!ec) acceptor_->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return make_error(Errc::io_error, "cannot listen on " + s.listen + ": " + ec.message());
  host_ = hp->host.empty() ? "0.0.0.0" : hp->host;
  port_ = acceptor_->local_endpoint().port();
  return ok_status();
}

void Server::start(OnAccept on_accept) { net::spawn(io_, accept_loop(std::move(on_accept)), "accept_loop"); }

void Server::close() {
  closed_ = true;
  boost::system::error_code ec;
  if (acceptor_) acceptor_->close(ec);
}

void Server::cancel_connections() {
  for (auto& [id, weak] : streams_) {
    if (auto s = weak.lock()) beast::get_lowest_layer(*s).cancel();
  }
}

uint64_t Server::opened(std::weak_ptr<net::LeanTlsStream> stream) {
  ++connections_;
  const uint64_t id = next_id_++;
  streams_.emplace(id, std::move(stream));
  return id;
}

void Server::closed(uint64_t id) {
  --connections_;
  streams_.erase(id);
}

std::string Server::base_url() const {
  std::string host = host_;
  if (host == "0.0.0.0" || host.empty()) host = "127.0.0.1";
  if (host == "::") host = "::1";
  return "https://" + net::format_host_port(host, port_);
}

asio::awaitable<void> Server::accept_loop(OnAccept on_accept) {
  auto self = shared_from_this();
  while (!closed_) {
    auto [ec, socket] = co_await acceptor_->async_accept(as_tuple_awaitable);
    if (ec) {
      if (closed_ || ec == asio::error::operation_aborted) break;
      spdlog::warn("gateway_accept_failed error={}", logfmt_value(ec.message()));
      // Out of file descriptors and the like: back off briefly.
      asio::steady_timer t(io_, std::chrono::milliseconds(50));
      co_await t.async_wait(as_tuple_awaitable);
      continue;
    }
    if (static_cast<size_t>(connections_) >= max_connections_) {
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    on_accept(std::move(socket), ssl_);
  }
}

}  // namespace agora::gateway
