// The node side of the gateway: the WebSocket upgrade and hello, the
// session's reader (callbacks, so an idle node holds no coroutine frame)
// and writer, heartbeats, and a node's frames handed to the scheduler
// (jobs), the attestation lifecycle (evidence) and provider trust
// (agreements). NodeConn is the scheduler's ProviderLink for the node.
#include <boost/json.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/log.h"
#include "gateway/internal.h"
#include "gateway/node_hello.h"
#include "net/spawn.h"

namespace agora::gateway {

using asio::awaitable;
constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);

namespace {

// Tells a node why it is refused, then closes (the writer does both).
void reject_node(NodeConn& conn, const protocol::Reject& reject) {
  conn.send(protocol::encode(reject));
  conn.close(net::ws::kClosePolicy);
}

// A plain HTTP refusal of a bad upgrade, then the connection closes.
awaitable<void> refuse_upgrade(TlsStream& stream, std::string_view status, std::string_view extra) {
  std::string res = "HTTP/1.1 ";
  res.append(status);
  res.append("\r\nContent-Length: 0\r\nConnection: close\r\nServer: agora-gateway\r\n");
  res.append(extra);
  res.append("\r\n");
  co_await asio::async_write(stream, asio::buffer(res), as_tuple_awaitable);
  beast::get_lowest_layer(stream).close();
}

// Reads until the reader yields an event (the hello phase only; afterwards
// read_node's callbacks take over).
awaitable<net::ws::Event> read_event(NodeConn& conn) {
  std::string buf(4096, '\0');
  for (;;) {
    auto e = conn.reader.next();
    if (e.kind != net::ws::Event::Kind::none) co_return e;
    auto [ec, n] = co_await conn.stream.async_read_some(asio::buffer(buf), as_tuple_awaitable);
    if (ec) {
      net::ws::Event failed;
      failed.kind = net::ws::Event::Kind::error;
      failed.payload = ec.message();
      failed.close_code = 0;  // nothing to send
      co_return failed;
    }
    conn.reader.feed(std::string_view(buf.data(), n));
  }
}

// The WebSocket upgrade's answer; false (the connection refused or gone)
// when the node cannot go on.
awaitable<bool> accept_upgrade(TlsStream& stream, const http::request<http::string_body>& request,
                               const std::string& provider_id) {
  if (request[http::field::sec_websocket_version] != "13") {
    spdlog::info("node_handshake_failed provider={} error={}", provider_id, "\"unsupported WebSocket version\"");
    co_await refuse_upgrade(stream, "426 Upgrade Required", "Sec-WebSocket-Version: 13\r\n");
    co_return false;
  }
  auto accept = net::ws::accept_response(request[http::field::sec_websocket_key], "agora-gateway");
  if (!accept) {
    spdlog::info("node_handshake_failed provider={} error={}", provider_id, logfmt_value(accept.error().message));
    co_await refuse_upgrade(stream, "400 Bad Request", "");
    co_return false;
  }
  auto [ec, n] = co_await asio::async_write(stream, asio::buffer(*accept), as_tuple_awaitable);
  if (ec) {
    spdlog::info("node_handshake_failed provider={} error={}", provider_id, logfmt_value(ec.message()));
    co_return false;
  }
  co_return true;
}

// The first frame, which must be a valid hello within `timeout`; nullopt
// when it is not (the node is told why and the session closes).
awaitable<std::optional<protocol::Hello>> read_hello(asio::io_context& io, NodeConn& conn,
                                                     std::chrono::milliseconds timeout) {
  asio::steady_timer deadline(io, timeout);
  // The handler may run after this frame is gone (expiry racing the read).
  deadline.async_wait([weak = conn.weak_from_this()](boost::system::error_code ec) {
    if (auto c = weak.lock(); c && !ec) beast::get_lowest_layer(c->stream).cancel();
  });
  net::ws::Event first = co_await read_event(conn);
  deadline.cancel();
  if (first.kind != net::ws::Event::Kind::message) {
    const std::string why = first.kind == net::ws::Event::Kind::close ? std::string("closed by node") : first.payload;
    spdlog::info("node_hello_missing provider={} error={}", conn.provider_id, logfmt_value(why));
    if (first.kind == net::ws::Event::Kind::error && first.close_code != 0) conn.close(first.close_code);
    else if (first.kind != net::ws::Event::Kind::error) conn.close(net::ws::kClosePolicy);
    else beast::get_lowest_layer(conn.stream).close();
    co_return std::nullopt;
  }
  std::optional<HelloProblem> problem;
  protocol::Hello hello;
  auto bad_hello = [](std::string why) { return HelloProblem{"bad_hello", std::move(why)}; };
  if (first.opcode != net::ws::Opcode::text) {
    problem = bad_hello("the hello must be a text frame");
  } else {
    auto decoded = protocol::decode(first.payload);
    if (!decoded) problem = bad_hello(decoded.error().message);
    else if (auto* h = std::get_if<protocol::Hello>(&*decoded)) hello = std::move(*h);
    else problem = bad_hello("the first frame must be a hello");
  }
  if (!problem) problem = check_hello(hello);
  if (problem) {
    spdlog::warn("node_rejected provider={} code={} reason={}", conn.provider_id, problem->code,
                 logfmt_value(problem->message));
    reject_node(conn, protocol::Reject{problem->code, problem->message});
    co_return std::nullopt;
  }
  co_return hello;
}

NodeInfo node_info(ConnId conn, const protocol::Hello& hello, const std::string& provider_id, int64_t now_ms,
                   bool held) {
  NodeInfo info;
  info.conn = conn;
  info.node_id = hello.node_id;
  info.provider_id = provider_id;
  info.region = hello.region;
  info.agent = hello.agent;
  info.identity_key = hello.identity_key;
  info.hardware = hello.hardware;
  info.connected_ms = now_ms;
  info.held = held;
  info.protocol = hello.protocol;
  for (const auto& m : hello.models) {
    info.models.push_back(NodeModel{m, 0});
    // Capabilities are protocol 2's: a version 1 node is offered none.
    if (hello.protocol < 2) info.models.back().advert.capabilities = {};
  }
  return info;
}

boost::json::object connected_audit(const protocol::Hello& hello, const ProviderTrust::Standing& standing) {
  boost::json::array models;
  for (const auto& m : hello.models) models.push_back(boost::json::object{{"name", m.name}, {"sha256", m.sha256}});
  return boost::json::object{{"node_id", hello.node_id},
                             {"region", hello.region},
                             {"agent", hello.agent},
                             {"identity_key", hello.identity_key},
                             {"models", std::move(models)},
                             {"agreement_accepted", standing.agreed},
                             {"suspended", standing.suspended}};
}

}  // namespace

awaitable<void> GatewayImpl::run_node_session(std::shared_ptr<TlsStream> stream,
                                              http::request<http::string_body> request, ProviderEntry provider) {
  auto self = shared_from_this();
  auto& lowest = beast::get_lowest_layer(*stream);
  lowest.expires_after(config_.handshake_timeout);
  if (!co_await accept_upgrade(*stream, request, provider.id)) co_return;
  lowest.expires_never();
  auto conn = std::make_shared<NodeConn>(std::move(*stream), protocol::kMaxFrameBytes);
  conn->id = next_conn_++;
  conn->provider_id = provider.id;
  std::optional<protocol::Hello> hello = co_await read_hello(io_, *conn, config_.handshake_timeout);
  if (!hello || !admit_node(*conn, *hello)) co_return;
  welcome_node(std::move(conn), std::move(*hello));
}

bool GatewayImpl::admit_node(NodeConn& conn, const protocol::Hello& hello) {
  // The provider may have been revoked or terminated while the hello was
  // on its way (provider trust only sees welcomed nodes).
  if (!trust_->provider_active(conn.provider_id)) {
    spdlog::info("node_rejected provider={} reason=\"provider revoked during the handshake\"", conn.provider_id);
    reject_node(conn, protocol::Reject{"revoked", "the provider's token was revoked"});
    return false;
  }
  // The same node reconnecting (its old session not yet noticed as dead)
  // replaces the old session; another provider's node id is refused.
  for (auto& [id, other] : conns_) {
    if (other->node_id != hello.node_id) continue;
    if (other->provider_id != conn.provider_id) {
      reject_node(conn, protocol::Reject{"duplicate_node", "node id is in use by another provider"});
      return false;
    }
    router_.set_draining(other->id);  // no new jobs (attested ones included) to the session being replaced
    other->close();
  }
  return true;
}

void GatewayImpl::welcome_node(std::shared_ptr<NodeConn> conn, protocol::Hello hello) {
  const std::string& provider_id = conn->provider_id;
  conn->node_id = hello.node_id;
  const ProviderTrust::Standing standing = trust_->join(conn->id, hello.node_id, provider_id, hello.agreements);
  std::vector<std::string> models;
  for (const auto& m : hello.models) models.push_back(m.name);
  router_.add(node_info(conn->id, hello, provider_id, clock_.unix_millis(), standing.held()));
  conns_[conn->id] = conn;
  scheduler_.link_up(conn->id, *conn);
  metrics_.node_connected();
  spdlog::info("node_connected node={} provider={} region={} models={}", conn->node_id, provider_id,
               logfmt_value(hello.region), fmt::join(models, ","));

  protocol::Welcome welcome;
  welcome.protocol = hello.protocol;  // the session speaks the node's version
  welcome.provider_id = provider_id;
  welcome.heartbeat_ms = static_cast<int32_t>(config_.node_timeout.count() / 2);
  if (const auto& agreement = trust_->agreement()) {
    welcome.agreement_version = agreement->version;
    welcome.agreement_sha256 = agreement->sha256;
  }
  welcome.agreement_accepted = standing.agreed;
  conn->send(protocol::encode(welcome));
  audit("provider.connected", provider_id, connected_audit(hello, standing));
  attestation_->start(conn->id, *conn, hello.attestation);
  trust_->welcomed(conn->id);
  // The session goes on in read_node()'s callbacks, so that this frame (the
  // upgrade request, the hello) and the HTTP session's (its 16 KiB read
  // buffer) are released: an idle node costs only what it keeps using
  // (docs/BENCHMARKS.md, memory per idle node connection). It still counts
  // as an open connection, as it did while the HTTP session waited for it.
  server_->node_opened();
  conn->last_heard = clock_.now();
  read_node(conn);
  for (const auto& m : models) scheduler_.drain(m);
  nodes_changed();
}

// Larger frames are read in steps of at most this much.
constexpr size_t kMessageReadBytes = 64 * 1024;

// Callbacks rather than a coroutine: an idle node is then just this pending
// read into NodeConn::head, without coroutine frames or a buffer.
void GatewayImpl::read_node(std::shared_ptr<NodeConn> conn) {
  auto self = shared_from_this();
  auto done = [self, conn](beast::error_code ec, std::size_t bytes) mutable {
    self->on_node_read(std::move(conn), ec, bytes);
  };
  auto& c = *conn;
  c.reading_head = c.reader.idle();
  if (c.reading_head) {
    c.stream.async_read_some(asio::buffer(c.head), std::move(done));
  } else {
    c.read_buffer.resize(std::clamp(c.reader.wanted(), c.head.size(), kMessageReadBytes));
    c.stream.async_read_some(asio::buffer(c.read_buffer), std::move(done));
  }
}

void GatewayImpl::on_node_read(std::shared_ptr<NodeConn> conn, beast::error_code ec, size_t bytes) {
  std::string why;
  if (ec) {
    if (!conn->close_reason.empty()) why = conn->close_reason;
    else if (ec == asio::error::eof) why = "closed by node";
    else why = ec.message();
  } else {
    conn->last_heard = clock_.now();
    conn->ping_sent = false;
    conn->reader.feed(std::string_view(conn->reading_head ? conn->head.data() : conn->read_buffer.data(), bytes));
    while (why.empty()) {
      net::ws::Event e = conn->reader.next();
      using Kind = net::ws::Event::Kind;
      if (e.kind == Kind::none) break;
      if (e.kind == Kind::ping) {
        conn->queue(net::ws::Opcode::pong, std::move(e.payload));
      } else if (e.kind == Kind::pong) {
        // last_heard is enough.
      } else if (e.kind == Kind::close) {
        why = "closed by node";
        conn->close(net::ws::kCloseNormal);
      } else if (e.kind == Kind::error) {
        why = "WebSocket protocol error: " + e.payload;
        conn->close(e.close_code);
      } else if (e.opcode != net::ws::Opcode::text) {
        why = "binary frame";
      } else {
        auto msg = protocol::decode(e.payload);
        if (!msg) {
          why = msg.error().message;
        } else {
          // What a coroutine's co_spawn handler would do: log, end the session.
          try {
            on_node_frame(*conn, std::move(*msg));
          } catch (const std::exception& x) {
            spdlog::error("node_frame_crashed node={} error={}", conn->node_id, logfmt_value(x.what()));
            why = "internal error";
          }
          if (why.empty() && conn->closing) why = "closed by gateway";
        }
      }
    }
    if (conn->reader.idle()) {  // an idle node keeps no buffer
      conn->reader.release();
      std::string().swap(conn->read_buffer);
    }
  }
  if (why.empty()) return read_node(std::move(conn));
  server_->node_closed();
  node_gone(conn, why);
}

awaitable<void> GatewayImpl::heartbeat_loop() {
  auto self = shared_from_this();
  asio::steady_timer t(io_);
  const Clock::Duration timeout = config_.node_timeout;
  const auto every = std::clamp<Clock::Duration>(timeout / 8, std::chrono::milliseconds(10), std::chrono::seconds(1));
  while (!stopping_) {
    t.expires_after(every);
    co_await t.async_wait(as_tuple_awaitable);
    if (stopping_) break;
    const auto now = clock_.now();
    for (auto& [id, n] : conns_) {
      if (n->closing) continue;
      const auto quiet = now - n->last_heard;
      if (quiet >= timeout) {
        // The reader fails at once and ends the session with this reason.
        n->close_reason = "heartbeat timeout";
        n->closing = true;
        beast::get_lowest_layer(n->stream).close();
      } else if (quiet >= timeout / 2 && !n->ping_sent) {
        n->ping_sent = true;
        n->queue(net::ws::Opcode::ping, {});
      }
    }
  }
}

namespace {

// Sends the outbox in order and ends when it is empty; when the node is
// closing (or a write failed), then closes it: a close frame when possible,
// then the socket, which ends the reader.
awaitable<boost::system::error_code> write_frame(NodeConn& n, const NodeConn::Out& out) {
  const std::array<asio::const_buffer, 2> bufs{asio::buffer(out.header.data(), out.header_size),
                                               asio::buffer(out.payload)};
  auto [ec, bytes] = co_await asio::async_write(n.stream, bufs, as_tuple_awaitable);
  co_return ec;
}

awaitable<void> node_writer(std::shared_ptr<NodeConn> n) {
  bool failed = false;
  while (!n->outbox.empty()) {
    NodeConn::Out out = std::move(n->outbox.front());
    n->outbox.pop_front();
    if (auto ec = co_await write_frame(*n, out)) {
      n->closing = true;
      failed = true;
      break;
    }
  }
  if (!n->closing) {
    n->writing = false;  // nothing to do: the next send() starts a writer
    co_return;
  }
  // `writing` stays set: a closed session needs no writer again.
  auto& lowest = beast::get_lowest_layer(n->stream);
  if (!failed && lowest.socket().is_open()) {
    const NodeConn::Out bye(net::ws::Opcode::close, net::ws::close_payload(n->close_code));
    lowest.expires_after(std::chrono::seconds(2));
    co_await write_frame(*n, bye);
  }
  lowest.close();
}

}  // namespace

void NodeConn::queue(net::ws::Opcode opcode, std::string payload) {
  if (closing) return;
  outbox.emplace_back(opcode, std::move(payload));
  start_writer();
}

void NodeConn::close(uint16_t code) {
  if (closing) return;
  closing = true;
  close_code = code;
  start_writer();
}

void NodeConn::start_writer() {
  if (writing) return;
  writing = true;
  net::spawn(stream.get_executor(), node_writer(shared_from_this()), "node_writer");
}

void GatewayImpl::on_node_frame(NodeConn& n, protocol::Message m) {
  if (auto* d = std::get_if<protocol::Delta>(&m)) return scheduler_.on_delta(n.id, std::move(*d), clock_.now());
  if (auto* d = std::get_if<protocol::Done>(&m)) return scheduler_.on_done(n.id, std::move(*d));
  if (auto* f = std::get_if<protocol::Failed>(&m)) return scheduler_.on_failed(n.id, std::move(*f));
  if (std::holds_alternative<protocol::Drain>(m)) {
    spdlog::info("node_draining node={}", n.node_id);
    router_.set_draining(n.id);
    return;
  }
  if (auto* e = std::get_if<protocol::Evidence>(&m)) {
    attestation_->on_evidence(n.id, std::move(*e));
    return;
  }
  if (auto* a = std::get_if<protocol::Accept>(&m)) return trust_->on_accept(n.id, a->sha256);
  // Anything else from a node is a protocol error.
  spdlog::warn("node_protocol_error node={} frame={}", n.node_id, protocol::message_type(m));
  n.close();
}

void GatewayImpl::node_gone(const std::shared_ptr<NodeConn>& n, const std::string& why) {
  n->close();
  std::vector<std::string> models;
  if (const NodeInfo* info = router_.find(n->id)) {
    for (const auto& m : info->models) models.push_back(m.advert.name);
  }
  attestation_->end(n->id);
  trust_->leave(n->id);
  router_.remove(n->id);
  conns_.erase(n->id);
  // Its jobs go to other nodes where nothing reached the client yet.
  const size_t lost = scheduler_.link_down(n->id);
  spdlog::info("node_disconnected node={} provider={} jobs_lost={} reason={}", n->node_id, n->provider_id, lost,
               logfmt_value(why));
  audit("provider.disconnected", n->provider_id,
        boost::json::object{{"node_id", n->node_id}, {"reason", why}, {"jobs_lost", lost}});
  // Queued jobs may now have nowhere to go.
  for (const auto& m : models) scheduler_.drain(m);
  nodes_changed();
}

}  // namespace agora::gateway
