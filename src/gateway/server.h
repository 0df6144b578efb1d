// The gateway's server: its TLS context (a configured certificate, or a
// local CA and server certificate it issues itself), the listening socket,
// the accept loop with its connection limit, and the open connections that
// stop() must end. What an accepted connection carries (HTTP, or a node's
// WebSocket) is the caller's: each socket goes to the OnAccept callback.
#pragma once

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/result.h"
#include "net/lean_tls_stream.h"
#include "net/tls.h"

namespace agora::gateway {

class Server : public std::enable_shared_from_this<Server> {
 public:
  using tcp = boost::asio::ip::tcp;
  using OnAccept = std::function<void(tcp::socket, std::shared_ptr<boost::asio::ssl::context>)>;

  struct Settings {
    std::string listen;                     // host:port, port 8443 when left out
    std::filesystem::path tls_dir;          // for the certificates it issues itself
    std::optional<std::filesystem::path> tls_cert, tls_key;  // both, or neither
    std::vector<std::string> tls_names;     // extra names/IPs for the issued certificate
    size_t max_connections = 20'000;        // beyond it, accepted sockets are closed at once
  };

  explicit Server(boost::asio::io_context& io) : io_(io) {}

  // Loads or issues the certificate (first in start, so that a bad one
  // fails before anything else is opened).
  Status load_tls(const Settings& settings);
  // Binds and listens (last in start); port() is known after.
  Status listen(const Settings& settings);
  // Accepts until close(), handing each socket (TCP_NODELAY set) to `on_accept`.
  void start(OnAccept on_accept);
  // Stops accepting.
  void close();
  // Cancels every open client connection (idle keep-alive ones end).
  void cancel_connections();

  // Client connections, counted against max_connections; a stream is
  // cancelled by cancel_connections() until forget() (it became a node's).
  uint64_t opened(std::weak_ptr<net::LeanTlsStream> stream);
  void closed(uint64_t id);
  void forget(uint64_t id) { streams_.erase(id); }
  // A node session's connection counts too, while it lasts.
  void node_opened() { ++connections_; }
  void node_closed() { --connections_; }
  int64_t connections() const { return connections_; }

  uint16_t port() const { return port_; }
  std::string base_url() const;
  const net::TlsFiles& tls_files() const { return tls_files_; }

 private:
  boost::asio::awaitable<void> accept_loop(OnAccept on_accept);

  boost::asio::io_context& io_;
  size_t max_connections_ = 0;
  net::TlsFiles tls_files_;
  std::shared_ptr<boost::asio::ssl::context> ssl_;
  std::optional<tcp::acceptor> acceptor_;
  std::string host_;
  uint16_t port_ = 0;
  bool closed_ = false;
  int64_t connections_ = 0;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, std::weak_ptr<net::LeanTlsStream>> streams_;
};

}  // namespace agora::gateway
