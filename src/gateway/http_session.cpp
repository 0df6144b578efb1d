// The HTTP/1.1 shell of the gateway: one coroutine per client connection
// reads bounded requests, looks each up in the route table (routes.h) and
// calls its handler (http_handlers.h: chat_handler.cpp, api_handlers.cpp,
// admin_api.cpp); node upgrades go to the node session. This file only
// moves bytes and enforces limits and timeouts.
#include <array>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/log.h"
#include "gateway/errors.h"
#include "gateway/http_handlers.h"
#include "gateway/http_request.h"
#include "gateway/internal.h"
#include "gateway/routes.h"

namespace agora::gateway {

using asio::awaitable;
using asio::use_awaitable;
constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);

namespace {

void common_headers(Response& res, const Request& req) {
  res.set(http::field::server, "agora-gateway");
  res.set(http::field::strict_transport_security, kHsts);
  res.keep_alive(req.keep_alive());
}

}  // namespace

awaitable<bool> send(Exchange& x, Response res) {
  common_headers(res, x.req);
  rate_headers(res, x.rate);
  res.prepare_payload();
  beast::get_lowest_layer(*x.stream).expires_after(x.g->config().write_timeout);
  auto [ec, n] = co_await http::async_write(*x.stream, res, as_tuple_awaitable);
  beast::get_lowest_layer(*x.stream).expires_never();
  x.g->metrics().request(x.route, static_cast<int>(res.result_int()), seconds_since(x.g->clock(), x.start));
  co_return !ec && res.keep_alive();
}

Response json_response(const Request& req, http::status status, std::string body) {
  Response res{status, req.version()};
  res.set(http::field::content_type, "application/json");
  res.body() = std::move(body);
  return res;
}

awaitable<bool> send_error(Exchange& x, const ApiError& e) {
  Response res = json_response(x.req, static_cast<http::status>(e.status), error_body(e));
  if (e.retry_after_s > 0) res.set(http::field::retry_after, std::to_string(e.retry_after_s));
  if (e.status == 401) res.set(http::field::www_authenticate, "Bearer");
  co_return co_await send(x, std::move(res));
}

awaitable<bool> send_sealed_error(Exchange& x, const ApiError& e, std::string_view node_id,
                                  const std::vector<protocol::SealedChunk>& chunks) {
  Response res = json_response(x.req, static_cast<http::status>(e.status), sealed_error_body(e, node_id, chunks));
  if (e.retry_after_s > 0) res.set(http::field::retry_after, std::to_string(e.retry_after_s));
  co_return co_await send(x, std::move(res));
}

namespace {

// Handlers by RouteId (routes.h), in the table's order.
using Handler = awaitable<bool> (*)(Exchange&, const RouteCall&);
constexpr std::array<Handler, kRouteCount> kHandlers{
    handle_healthz, handle_readyz,    handle_metrics,    handle_admin,        handle_chat,
    handle_models,  handle_providers, handle_generation, handle_conversation,
};

awaitable<bool> handle(Exchange& x) {
  RouteCall call;
  call.target = x.req.target();
  if (auto q = call.target.find('?'); q != std::string_view::npos) {
    call.query = call.target.substr(q + 1);
    call.target = call.target.substr(0, q);
  }
  const RouteMatch m = match_route(x.req.method_string(), call.target);
  if (!m.route) {
    const ApiError api_err = errors::not_found("Unknown path " + std::string(call.target));
    co_return co_await send_error(x, api_err);
  }
  x.route = std::string(m.route->label);
  if (!m.method_allowed) {
    const ApiError api_err = errors::method_not_allowed(m.route->methods, call.target);
    Response res = json_response(x.req, http::status::method_not_allowed, error_body(api_err));
    res.set(http::field::allow, m.route->methods);
    co_return co_await send(x, std::move(res));
  }
  call.rest = m.rest;
  std::optional<KeyEntry> key;  // a copy: the table may be replaced while the handler waits
  if (m.route->client_key) {
    const std::string_view authorization = x.req[http::field::authorization];
    const KeyEntry* entry = x.g->authenticate(authorization);
    if (!entry) {
      const ApiError api_err = authorization.empty() ? errors::missing_api_key() : errors::invalid_api_key();
      co_return co_await send_error(x, api_err);
    }
    key = *entry;
    call.key = &*key;
  }
  co_return co_await kHandlers[static_cast<size_t>(m.route->id)](x, call);
}

// Answers a request that could not be read whole, then the connection closes.
// Callers pass a named ApiError: GCC 12 miscompiles braced ApiError
// temporaries inside co_await expressions (destroyed twice).
awaitable<void> reject_unreadable(std::shared_ptr<GatewayImpl> g, std::shared_ptr<TlsStream> stream,
                                  http::status status, const ApiError& e) {
  Response res{status, 11};
  res.set(http::field::server, "agora-gateway");
  res.set(http::field::strict_transport_security, kHsts);
  res.set(http::field::content_type, "application/json");
  res.keep_alive(false);
  res.body() = error_body(e);
  res.prepare_payload();
  beast::get_lowest_layer(*stream).expires_after(g->config().write_timeout);
  co_await http::async_write(*stream, res, as_tuple_awaitable);
  g->metrics().request("other", static_cast<int>(status), 0);
}

// Lingering close after a 413: read and drop what the client is still
// sending (bounded in bytes and time), so its TCP stack does not reset the
// connection before it has read the answer.
awaitable<void> drain_unread_body(TlsStream& stream, size_t max_body_bytes) {
  beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(5));
  std::vector<char> scratch(64 * 1024);
  for (size_t drained = 0; drained < 4 * max_body_bytes + (16u << 20);) {
    auto [ec, got] = co_await stream.async_read_some(asio::buffer(scratch), as_tuple_awaitable);
    if (ec) break;
    drained += got;
  }
}

// The next request on the connection: waits up to the idle timeout for its
// first byte, then reads it whole within the read timeout. nullopt when
// the connection ends (closed, timed out, or an unreadable request answered).
awaitable<std::optional<Request>> read_request(std::shared_ptr<GatewayImpl> g, std::shared_ptr<TlsStream> stream,
                                               beast::flat_buffer& buffer) {
  const auto& cfg = g->config();
  if (buffer.size() == 0) {
    beast::get_lowest_layer(*stream).expires_after(cfg.idle_timeout);
    auto [ec, n] = co_await stream->async_read_some(buffer.prepare(16 * 1024), as_tuple_awaitable);
    if (ec) co_return std::nullopt;
    buffer.commit(n);
  }
  RequestParser parser;
  apply_limits(parser, HttpLimits{cfg.max_header_bytes, cfg.max_body_bytes});
  beast::get_lowest_layer(*stream).expires_after(cfg.read_timeout);
  auto [ec, n] = co_await http::async_read(*stream, buffer, parser, as_tuple_awaitable);
  beast::get_lowest_layer(*stream).expires_never();
  if (ec == http::error::body_limit) {
    const ApiError api_err = errors::body_too_large(cfg.max_body_bytes);
    co_await reject_unreadable(g, stream, http::status::payload_too_large, api_err);
    co_await drain_unread_body(*stream, cfg.max_body_bytes);
    co_return std::nullopt;
  }
  if (ec == http::error::header_limit) {
    const ApiError api_err = errors::headers_too_large(cfg.max_header_bytes);
    co_await reject_unreadable(g, stream, http::status::request_header_fields_too_large, api_err);
    co_return std::nullopt;
  }
  // A read timeout (beast::error::timeout) has already closed the socket:
  // nothing can be answered, the connection just ends.
  if (ec == http::error::end_of_stream || ec == asio::ssl::error::stream_truncated || ec == asio::error::eof ||
      ec == asio::error::operation_aborted || ec == asio::error::connection_reset || ec == beast::error::timeout) {
    co_return std::nullopt;
  }
  if (ec) {
    const ApiError api_err = errors::malformed_request(ec.message());
    co_await reject_unreadable(g, stream, http::status::bad_request, api_err);
    co_return std::nullopt;
  }
  Request req = parser.release();
  // RFC 9112 §3.2 (Host), before anything is routed, node upgrades included.
  if (const std::optional<ApiError> bad_request = check_request(req)) {
    const ApiError api_err = *bad_request;  // named: see reject_unreadable
    co_await reject_unreadable(g, stream, http::status::bad_request, api_err);
    co_return std::nullopt;
  }
  co_return req;
}

// A WebSocket upgrade: a node's, at the node path with a provider token,
// becomes its session (true); anything else is refused (false).
awaitable<bool> upgrade_to_node(std::shared_ptr<GatewayImpl> g, std::shared_ptr<TlsStream> stream, Request req,
                                uint64_t conn_id) {
  std::string_view target = req.target();
  if (target != protocol::kNodePath) {
    const ApiError api_err = errors::not_found("No WebSocket endpoint at " + std::string(target));
    co_await reject_unreadable(g, stream, http::status::not_found, api_err);
    co_return false;
  }
  const ProviderEntry* provider = g->authenticate_provider(req[http::field::authorization]);
  if (!provider) {
    const ApiError api_err = errors::invalid_provider_token();
    co_await reject_unreadable(g, stream, http::status::unauthorized, api_err);
    co_return false;
  }
  // The connection now belongs to the node session (and outlives this
  // connection's bookkeeping as a client connection).
  g->server().forget(conn_id);
  co_await g->run_node_session(stream, std::move(req), *provider);
  co_return true;
}

}  // namespace

awaitable<void> run_http_session(std::shared_ptr<GatewayImpl> g, tcp::socket socket,
                                 std::shared_ptr<asio::ssl::context> ssl) {
  auto stream = std::make_shared<TlsStream>(beast::tcp_stream(std::move(socket)), *ssl);
  const uint64_t conn_id = g->server().opened(stream);
  struct Closed {
    std::shared_ptr<GatewayImpl> g;
    uint64_t id;
    ~Closed() { g->server().closed(id); }
  } closed{g, conn_id};

  beast::get_lowest_layer(*stream).expires_after(g->config().handshake_timeout);
  auto [hec] = co_await stream->async_handshake(asio::ssl::stream_base::server, as_tuple_awaitable);
  if (hec) {
    spdlog::debug("tls_handshake_failed error={}", logfmt_value(hec.message()));
    co_return;
  }
  beast::flat_buffer buffer;
  while (!g->stopping()) {
    std::optional<Request> req = co_await read_request(g, stream, buffer);
    if (!req) break;
    if (websocket::is_upgrade(*req)) {
      if (co_await upgrade_to_node(g, stream, std::move(*req), conn_id)) co_return;
      break;
    }
    Exchange x{g, stream, *req, g->clock().now(), "other", std::nullopt};
    if (!co_await handle(x)) break;
  }
  // Best-effort TLS close_notify, bounded.
  beast::get_lowest_layer(*stream).expires_after(std::chrono::seconds(2));
  co_await stream->async_shutdown(as_tuple_awaitable);
  beast::get_lowest_layer(*stream).close();
}

}  // namespace agora::gateway
