#include "client/proxy.h"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cctype>
#include <chrono>
#include <unordered_map>

#include "common/clock.h"
#include "common/log.h"
#include "crypto/ed25519.h"
#include "crypto/encoding.h"
#include "crypto/sha256.h"
#include "openai/openai.h"
#include "net/spawn.h"
#include "net/url.h"
#include "protocol/messages.h"
#include "protocol/sealed.h"
#include "client/sealed_answer.h"
#include "crypto/aead.h"

namespace agora::client {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using asio::awaitable;
constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);
using openai::ApiError;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

constexpr size_t kMaxUpstreamBody = 64u << 20;

ApiError api_error(int status, std::string code, std::string message) {
  ApiError e;
  e.status = status;
  e.type = status >= 500 ? "server_error" : "invalid_request_error";
  e.code = std::move(code);
  e.message = std::move(message);
  return e;
}

std::string url_encode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') out += static_cast<char>(c);
    else out += fmt::format("%{:02X}", c);
  }
  return out;
}

// A TLS connection to the gateway, kept for the next request when the
// response allows (keep-alive): a handshake per request doubled the cost
// of a sealed request (docs/BENCHMARKS.md, section 6).
struct Conn {
  Conn(asio::any_io_executor ex, asio::ssl::context& ctx) : stream(ex, ctx) {}
  beast::ssl_stream<beast::tcp_stream> stream;
  beast::flat_buffer buffer;
};

// One request to the gateway: the response header first, then the body as
// it arrives.
struct Upstream {
  std::unique_ptr<Conn> conn;
  http::response_parser<http::string_body> parser;
  std::string error;  // why the body ended early, if it did
};

// Candidates for one (model, routing) are reused this long: listing them
// per request would cost the gateway a request each.
constexpr auto kCandidateTtl = std::chrono::seconds(2);
constexpr size_t kMaxIdleConnections = 32;

class ProxyImpl final : public Proxy, public std::enable_shared_from_this<ProxyImpl> {
 public:
  ProxyImpl(asio::io_context& io, ProxyConfig config) : io_(io), cfg_(std::move(config)), acceptor_(io) {}

  Status start() override {
    auto url = net::parse_url(cfg_.gateway_url);
    if (!url) return url.error();
    if (url->scheme != "https") return make_error(Errc::invalid_argument, "--gateway must be an https:// URL");
    gateway_ = *url;
    if (!cfg_.api_key.starts_with("gk_")) return make_error(Errc::invalid_argument, "--api-key must be a gk_… key");
    if (cfg_.candidates < 1 || cfg_.candidates > protocol::sealed::kMaxRecipients) {
      return make_error(Errc::invalid_argument, "--candidates must be 1 to 16");
    }
    if (cfg_.confidential && !cfg_.nvidia) {
      return make_error(Errc::invalid_argument,
                        "--confidential needs --nvidia-root (the NRAS root the proxy verifies GPU evidence against)");
    }
    auto ctx = net::make_client_tls_context(cfg_.tls);
    if (!ctx) return ctx.error();
    tls_ = *ctx;
    auto hp = net::parse_host_port(cfg_.listen, 8787);
    if (!hp) return hp.error();
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(hp->host.empty() ? "127.0.0.1" : hp->host, ec);
    if (ec) return make_error(Errc::invalid_argument, "--listen: '" + hp->host + "' is not an IP address");
    if (!addr.is_loopback()) {
      // Plaintext prompts arrive here: only from this machine.
      return make_error(Errc::invalid_argument, "--listen must be a loopback address (127.0.0.1 or ::1)");
    }
    tcp::endpoint ep(addr, hp->port);
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return make_error(Errc::io_error, "cannot listen on " + cfg_.listen + ": " + ec.message());
    port_ = acceptor_.local_endpoint().port();
    net::spawn(io_, accept_loop(), "proxy_accept_loop");
    spdlog::info("proxy_listening port={} gateway={}", port_, logfmt_value(cfg_.gateway_url));
    return ok_status();
  }

  void stop() override {
    asio::post(io_, [self = shared_from_this()] {
      boost::system::error_code ec;
      self->acceptor_.close(ec);
      self->stopping_ = true;
    });
  }

  uint16_t port() const override { return port_; }

 private:
  awaitable<void> accept_loop() {
    auto self = shared_from_this();
    while (!stopping_) {
      auto [ec, socket] = co_await acceptor_.async_accept(as_tuple_awaitable);
      if (ec) break;
      net::spawn(io_, session(std::move(socket)), "proxy_session");
    }
  }

  awaitable<void> session(tcp::socket socket) {
    auto self = shared_from_this();
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(cfg_.max_body_bytes);
      stream.expires_after(std::chrono::minutes(5));
      auto [ec, n] = co_await http::async_read(stream, buffer, parser, as_tuple_awaitable);
      stream.expires_never();
      if (ec) break;
      Request req = parser.release();
      const bool keep = co_await handle(stream, req);
      if (!keep || !req.keep_alive()) break;
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  }

  // ---- responses to the local client

  awaitable<bool> send(beast::tcp_stream& s, const Request& req, http::status status, std::string body,
                       const std::vector<std::pair<std::string, std::string>>& extra = {}) {
    Response res{status, req.version()};
    res.set(http::field::server, "agora-proxy");
    res.set(http::field::content_type, "application/json");
    for (const auto& [k, v] : extra) res.set(k, v);
    res.keep_alive(req.keep_alive());
    res.body() = std::move(body);
    res.prepare_payload();
    auto [ec, n] = co_await http::async_write(s, res, as_tuple_awaitable);
    co_return !ec;
  }

  awaitable<bool> send_error(beast::tcp_stream& s, const Request& req, const ApiError& e) {
    co_return co_await send(s, req, static_cast<http::status>(e.status), openai::error_body(e));
  }

  // ---- the gateway

  awaitable<Result<std::unique_ptr<Conn>>> connect() {
    auto conn = std::make_unique<Conn>(io_.get_executor(), *tls_);
    tcp::resolver resolver(io_);
    auto [rec, endpoints] =
        co_await resolver.async_resolve(gateway_.host, std::to_string(gateway_.port), as_tuple_awaitable);
    if (rec) co_return make_error(Errc::unavailable, "cannot resolve " + gateway_.host + ": " + rec.message());
    auto& lowest = beast::get_lowest_layer(conn->stream);
    lowest.expires_after(std::chrono::seconds(10));
    auto [cec, ep] = co_await lowest.async_connect(endpoints, as_tuple_awaitable);
    if (cec) co_return make_error(Errc::unavailable, "cannot connect to the gateway: " + cec.message());
    lowest.socket().set_option(tcp::no_delay(true));
    if (Status st = net::prepare_client_stream(conn->stream.native_handle(), gateway_.host, cfg_.tls); !st) {
      co_return st.error();
    }
    auto [hec] = co_await conn->stream.async_handshake(asio::ssl::stream_base::client, as_tuple_awaitable);
    if (hec) {
      co_return make_error(Errc::unavailable, "TLS handshake with the gateway failed: " +
                                                  net::describe_tls_error(hec, conn->stream.native_handle()));
    }
    co_return std::move(conn);
  }

  // Sends one request, on an idle kept-alive connection when there is one
  // (a fresh one if that turns out closed), and reads the response header.
  awaitable<Result<std::unique_ptr<Upstream>>> open_upstream(http::verb method, std::string target, std::string body) {
    for (int attempt = 0;; ++attempt) {
      std::unique_ptr<Conn> conn;
      const bool reused = !idle_.empty() && attempt == 0;
      if (reused) {
        conn = std::move(idle_.back());
        idle_.pop_back();
      } else {
        auto fresh = co_await connect();
        if (!fresh) co_return fresh.error();
        conn = std::move(*fresh);
      }
      Request req{method, target, 11};
      req.set(http::field::host, net::format_host_port(gateway_.host, gateway_.port));
      req.set(http::field::authorization, "Bearer " + cfg_.api_key);
      req.set(http::field::user_agent, "agora-proxy/0.1.0");
      if (!body.empty()) req.set(http::field::content_type, "application/json");
      req.body() = body;
      req.prepare_payload();
      req.keep_alive(true);
      auto& lowest = beast::get_lowest_layer(conn->stream);
      lowest.expires_after(std::chrono::seconds(30));
      auto [wec, wn] = co_await http::async_write(conn->stream, req, as_tuple_awaitable);
      if (wec) {
        if (reused) continue;  // the gateway closed the idle connection
        co_return make_error(Errc::unavailable, "writing to the gateway failed: " + wec.message());
      }
      auto up = std::make_unique<Upstream>();
      up->parser.body_limit(kMaxUpstreamBody);
      lowest.expires_after(std::chrono::minutes(5));
      auto [rhec, rhn] = co_await http::async_read_header(conn->stream, conn->buffer, up->parser, as_tuple_awaitable);
      if (rhec) {
        // An idle connection the gateway closed as we reused it: nothing
        // was read, so it never saw the request (a sealed request sent
        // twice would be refused as a replay anyway).
        const bool closed = rhec == http::error::end_of_stream || rhec == asio::error::eof ||
                            rhec == asio::ssl::error::stream_truncated || rhec == asio::error::connection_reset;
        if (reused && closed) continue;
        co_return make_error(Errc::unavailable, "no answer from the gateway: " + rhec.message());
      }
      up->conn = std::move(conn);
      co_return std::move(up);
    }
  }

  // A finished exchange gives its connection back for the next request.
  void release(Upstream& up) {
    if (!up.conn || !up.parser.is_done() || !up.parser.get().keep_alive() || !up.error.empty()) return;
    if (idle_.size() >= kMaxIdleConnections) return;
    beast::get_lowest_layer(up.conn->stream).expires_never();
    idle_.push_back(std::move(up.conn));
  }

  // Reads more of the body; false when it is complete or failed.
  static awaitable<bool> read_more(Upstream& up) {
    if (up.parser.is_done() || !up.error.empty()) co_return false;
    beast::get_lowest_layer(up.conn->stream).expires_after(std::chrono::minutes(5));
    auto [ec, n] = co_await http::async_read_some(up.conn->stream, up.conn->buffer, up.parser, as_tuple_awaitable);
    if (ec && ec != http::error::need_buffer) {
      up.error = ec.message();
      co_return false;
    }
    co_return true;
  }

  // (Not `while (co_await …)`: GCC 12 miscompiles a co_await in a loop
  // condition into a trap.)
  static awaitable<void> read_all(Upstream& up) {
    for (;;) {
      const bool more = co_await read_more(up);
      if (!more) break;
    }
  }

  // The gateway's headers a client acts on (rate limits, retry advice),
  // passed through as they are.
  static std::vector<std::pair<std::string, std::string>> pass_through(const http::response_header<>& res) {
    std::vector<std::pair<std::string, std::string>> extra;
    for (const auto& f : res) {
      std::string name(f.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (name.starts_with("x-ratelimit-") || name == "retry-after" || name == "retry-after-ms" ||
          name == "x-should-retry") {
        extra.emplace_back(name, std::string(f.value()));
      }
    }
    return extra;
  }

  // Relays a gateway error (status, body, retry headers) as it is: errors
  // carry no content.
  awaitable<bool> relay_error(beast::tcp_stream& s, const Request& req, Upstream& up) {
    co_await read_all(up);
    release(up);
    auto& res = up.parser.get();
    const auto extra = pass_through(res.base());
    std::string body = res.body();
    if (body.empty()) body = openai::error_body(api_error(static_cast<int>(res.result_int()), "gateway_error", "The gateway answered " + std::to_string(res.result_int())));
    co_return co_await send(s, req, res.result(), std::move(body), extra);
  }

  // ---- /v1/chat/completions

  awaitable<bool> handle(beast::tcp_stream& s, const Request& req) {
    std::string_view target = req.target();
    if (target == "/v1/chat/completions" && req.method() == http::verb::post) co_return co_await chat(s, req);
    if (req.method() == http::verb::get && relayed_read(target)) {
      auto up = co_await open_upstream(http::verb::get, std::string(target), "");
      if (!up) {
        const ApiError e = api_error(502, "gateway_unreachable", up.error().message);
        co_return co_await send_error(s, req, e);
      }
      co_await read_all(**up);
      release(**up);
      co_return co_await send(s, req, (*up)->parser.get().result(), (*up)->parser.get().body());
    }
    const ApiError e = api_error(404, "not_found",
                                 "agora proxy serves POST /v1/chat/completions and GET /v1/models, /v1/providers and "
                                 "/v1/generations/{id}");
    co_return co_await send_error(s, req, e);
  }

  // The gateway's read endpoints the proxy relays as they are (with its
  // key): they carry no prompt. Conversations are not among them: the
  // proxy refuses conversation_id (docs/SECURITY.md).
  static bool relayed_read(std::string_view target) {
    const std::string_view path = target.substr(0, target.find('?'));
    return path == "/v1/models" || path.starts_with("/v1/models/") || path == "/v1/providers" ||
           (path.starts_with("/v1/generations/") && path.size() > std::string_view("/v1/generations/").size());
  }

  // Whether the gateway lists `model` in /v1/models (an unknown model is a
  // 404 model_not_found, as the gateway answers it; nullopt when the list
  // cannot be read).
  awaitable<std::optional<bool>> model_listed(const std::string& model) {
    auto up = co_await open_upstream(http::verb::get, "/v1/models", "");
    if (!up || (*up)->parser.get().result() != http::status::ok) co_return std::nullopt;
    co_await read_all(**up);
    release(**up);
    boost::system::error_code ec;
    json::value v = json::parse((*up)->parser.get().body(), ec);
    const auto* data = !ec && v.is_object() ? v.get_object().if_contains("data") : nullptr;
    if (!data || !data->is_array()) co_return std::nullopt;
    for (const auto& m : data->get_array()) {
      const auto* id = m.is_object() ? m.get_object().if_contains("id") : nullptr;
      if (id && id->is_string() && id->get_string() == model) co_return true;
    }
    co_return false;
  }

  // The nodes a request may be sealed to, as listed at `at`, with what
  // each supports (the listing is the same whatever the request holds: the
  // gateway learns nothing of its tools or response_format).
  struct Candidate {
    protocol::sealed::Recipient recipient;
    int32_t ctx = 0;
    bool tools = false, grammar = false;
  };
  struct Candidates {
    std::chrono::steady_clock::time_point at;
    std::vector<Candidate> nodes;
  };
  // Up to cfg_.candidates of them that support what `r` needs, and the
  // smallest context among those.
  struct Chosen {
    std::vector<protocol::sealed::Recipient> recipients;
    int32_t ctx = 0;
  };
  Chosen choose(const Candidates& c, const openai::ChatRequest& r) const {
    Chosen out;
    for (const auto& n : c.nodes) {
      if (out.recipients.size() == cfg_.candidates) break;
      if ((r.routing.needs_tools && !n.tools) || (r.routing.needs_grammar && !n.grammar)) continue;
      out.recipients.push_back(n.recipient);
      if (n.ctx > 0) out.ctx = out.ctx == 0 ? n.ctx : std::min(out.ctx, n.ctx);
    }
    return out;
  }

  awaitable<bool> chat(beast::tcp_stream& s, const Request& req) {
    openai::RequestLimits limits;
    auto parsed = openai::parse_chat_request(req.body(), limits);
    if (auto* err = std::get_if<ApiError>(&parsed)) co_return co_await send_error(s, req, *err);
    auto& r = std::get<openai::ChatRequest>(parsed);
    const bool confidential = cfg_.confidential || r.routing.confidential;
    if (confidential && !cfg_.nvidia) {
      const ApiError e = api_error(
          400, "attestation_unverifiable",
          "confidential: true needs agora proxy to verify GPU evidence itself: start it with --nvidia-root FILE "
          "(the pinned NRAS root); nothing was sent");
      co_return co_await send_error(s, req, e);
    }
    if (r.sealed) {
      const ApiError e = api_error(400, "invalid_request", "send plain requests to agora proxy; it seals them");
      co_return co_await send_error(s, req, e);
    }
    if (r.conversation_id) {
      const ApiError e = api_error(400, "invalid_request",
                                   "conversation_id needs the gateway to read the conversation: not available end to end");
      co_return co_await send_error(s, req, e);
    }

    // Candidates: nodes serving the model under the routing preferences,
    // with an identity key (listed by the gateway, reused for a moment).
    const std::string q = providers_query(r, confidential);
    auto found = co_await candidates(s, req, q, confidential);
    if (auto* answered = std::get_if<bool>(&found)) co_return *answered;
    const Chosen cand = choose(std::get<Candidates>(found), r);
    if (cand.recipients.empty() && !std::get<Candidates>(found).nodes.empty()) {
      // Nodes are there, but none supports what the request needs.
      bool any_tools = false;
      for (const auto& n : std::get<Candidates>(found).nodes) any_tools = any_tools || n.tools;
      const bool tools_missing = r.routing.needs_tools && !any_tools;
      const ApiError e = api_error(
          503, "no_eligible_provider",
          std::string("No provider can serve this request under ") +
              (tools_missing ? "tools: no provider serving this model supports tool calling"
                             : "response_format: no provider serving this model supports structured outputs") +
              (r.routing.needs_tools && !tools_missing ? " together with tool calling" : "") +
              " end to end; nothing was sent");
      co_return co_await send_error(s, req, e);
    }
    if (cand.recipients.empty()) {
      if (co_await model_listed(r.model) == std::optional<bool>(false)) {
        ApiError e = api_error(404, "model_not_found",
                               "The model '" + r.model + "' is not served by any connected provider");
        e.param = "model";
        co_return co_await send_error(s, req, e);
      }
      const ApiError e = api_error(503, "no_sealable_provider",
                                   "No connected provider can receive a sealed request for '" + r.model +
                                       "' under these routing preferences" +
                                       (confidential ? " with GPU TEE evidence this proxy verified" : "") +
                                       "; nothing was sent");
      co_return co_await send_error(s, req, e);
    }

    // Seal: plaintext only what the gateway needs.
    protocol::sealed::Header header;
    header.model = r.model;
    header.max_tokens = r.max_tokens_given ? r.generation.max_tokens : std::max(1, cand.ctx);
    header.stream = r.stream;
    header.issued_ms = SystemClock::instance().unix_millis();
    r.generation.max_tokens = header.max_tokens;
    auto sealed = protocol::sealed::seal_request(header, r.generation, cand.recipients);
    for (auto& m : r.generation.messages) crypto::secure_wipe(m.content);
    if (!sealed) {
      const ApiError e = api_error(500, "seal_failed", "Cannot seal the request (" + sealed.error().message + "); nothing was sent");
      co_return co_await send_error(s, req, e);
    }
    const json::object body = sealed_body(r, header, sealed->request, confidential);
    auto up = co_await open_upstream(http::verb::post, "/v1/chat/completions", json::serialize(body));
    if (!up) {
      const ApiError e = api_error(502, "gateway_unreachable", up.error().message);
      co_return co_await send_error(s, req, e);
    }
    if ((*up)->parser.get().result() != http::status::ok) {
      // Candidates gone (the request could be served by none): list anew.
      if ((*up)->parser.get().result() == http::status::service_unavailable) candidates_.erase(q);
      co_await read_all(**up);
      // A node that refused the opened request sealed its reason.
      if (auto opened = open_error(*sealed, (*up)->parser.get().body())) {
        release(**up);
        if (auto* why = std::get_if<Refused>(&*opened)) co_return co_await refuse(s, req, why->why);
        co_return co_await send_error(s, req, std::get<ApiError>(*opened));
      }
      co_return co_await relay_error(s, req, **up);
    }
    const bool keep = r.stream ? co_await streamed(s, req, r, *sealed, **up) : co_await unary(s, req, r, *sealed, **up);
    release(**up);
    co_return keep;
  }

  // The /v1/providers query for a request's model and routing preferences.
  static std::string providers_query(const openai::ChatRequest& r, bool confidential) {
    std::string q = "/v1/providers?model=" + url_encode(r.model) + "&privacyLevel=" + url_encode(r.routing.privacy_level);
    if (!r.routing.regions.empty()) {
      std::string regions;
      for (const auto& x : r.routing.regions) regions += (regions.empty() ? "" : ",") + x;
      q += "&region=" + url_encode(regions);
    }
    if (confidential) q += "&confidential=true";
    q += "&limit=" + std::to_string(protocol::sealed::kMaxRecipients);
    return q;
  }

  // The candidates for `q`: cached for kCandidateTtl, else listed by the
  // gateway. A bool when the listing failed and the error was answered
  // (whether the connection stays open).
  awaitable<std::variant<Candidates, bool>> candidates(beast::tcp_stream& s, const Request& req, const std::string& q,
                                                       bool confidential) {
    const auto now = std::chrono::steady_clock::now();
    if (auto hit = candidates_.find(q); hit != candidates_.end() && now - hit->second.at < kCandidateTtl) {
      co_return hit->second;
    }
    auto listed = co_await open_upstream(http::verb::get, q, "");
    if (!listed) {
      const ApiError e = api_error(502, "gateway_unreachable", listed.error().message);
      co_return co_await send_error(s, req, e);
    }
    if ((*listed)->parser.get().result() != http::status::ok) co_return co_await relay_error(s, req, **listed);
    co_await read_all(**listed);
    release(**listed);
    Candidates c = pick_recipients((*listed)->parser.get().body(), confidential);
    c.at = now;
    if (candidates_.size() > 256) candidates_.clear();
    if (!c.nodes.empty()) candidates_[q] = c;
    else candidates_.erase(q);
    co_return c;
  }

  // From a /v1/providers body: up to cfg_.candidates nodes with a valid
  // identity key (and, for confidential requests, evidence this proxy
  // verified), and the smallest context among them.
  Candidates pick_recipients(const std::string& listing, bool confidential) {
    Candidates out;
    boost::system::error_code ec;
    json::value v = json::parse(listing, ec);
    const json::array* data =
        !ec && v.is_object() && v.get_object().contains("data") && v.get_object().at("data").is_array()
            ? &v.get_object().at("data").get_array()
            : nullptr;
    for (size_t i = 0; data && i < data->size() && out.nodes.size() < protocol::sealed::kMaxRecipients; ++i) {
      const auto* n = (*data)[i].if_object();
      if (!n) continue;
      const auto* id = n->if_contains("id");
      const auto* key = n->if_contains("identity_key");
      const auto* c = n->if_contains("ctx_per_slot");
      if (!id || !id->is_string() || !key || !key->is_string()) continue;
      auto raw = crypto::from_hex(key->get_string());
      if (!raw || raw->size() != crypto::hpke::kPublicKeyBytes) continue;
      if (confidential && !attested(*n, *raw)) continue;
      Candidate cand{{std::string(id->get_string()), std::move(*raw)}, 0, false, false};
      if (c && c->is_int64() && c->get_int64() > 0) cand.ctx = static_cast<int32_t>(std::min<int64_t>(c->get_int64(), INT32_MAX));
      if (const auto* caps = n->if_contains("capabilities"); caps && caps->is_object()) {
        auto flag = [&](const char* k) {
          const auto* f = caps->get_object().if_contains(k);
          return f && f->is_bool() && f->get_bool();
        };
        cand.tools = flag("tools");
        cand.grammar = flag("structured_outputs");
      }
      out.nodes.push_back(std::move(cand));
    }
    return out;
  }

  // The request the gateway sees: model, max_tokens, stream, routing and
  // the sealed envelope; nothing of the prompt in plaintext.
  static json::object sealed_body(const openai::ChatRequest& r, const protocol::sealed::Header& header,
                                  const protocol::sealed::SealedRequest& sealed, bool confidential) {
    json::array keys;
    for (const auto& k : sealed.keys) {
      keys.push_back(json::object{
          {"node_id", k.node_id}, {"enc", crypto::to_base64(k.enc)}, {"key", crypto::to_base64(k.wrapped)}});
    }
    json::object body{{"model", r.model},
                      {"max_tokens", header.max_tokens},
                      {"stream", r.stream},
                      {"agora_sealed", json::object{{"v", 1},
                                                    {"suite", protocol::sealed::kSuite},
                                                    {"issued_ms", header.issued_ms},
                                                    {"recipients", std::move(keys)},
                                                    {"ciphertext", crypto::to_base64(sealed.ciphertext)}}}};
    if (r.stream) body["stream_options"] = json::object{{"include_usage", r.include_usage}};
    json::object routing{{"privacyLevel", r.routing.privacy_level}};
    if (!r.routing.regions.empty()) {
      json::array regions;
      for (const auto& x : r.routing.regions) regions.push_back(json::string(x));
      routing["region"] = std::move(regions);
    }
    body["routing_preferences"] = std::move(routing);
    if (confidential) body["confidential"] = true;  // the gateway enforces it too
    return body;
  }

  // A unary answer: opened whole (client/sealed_answer.h).
  awaitable<bool> unary(beast::tcp_stream& s, const Request& req, const openai::ChatRequest& r,
                        const protocol::sealed::ClientSeal& seal, Upstream& up) {
    co_await read_all(up);
    if (!up.error.empty()) co_return co_await refuse(s, req, "the gateway's answer was cut off: " + up.error);
    auto opened = open_unary(seal, shape_of(r), up.parser.get().body());
    if (auto* why = std::get_if<Refused>(&opened)) co_return co_await refuse(s, req, why->why);
    if (auto* e = std::get_if<ApiError>(&opened)) co_return co_await send_error(s, req, *e);
    co_return co_await send(s, req, http::status::ok, std::move(std::get<std::string>(opened)),
                            pass_through(up.parser.get().base()));
  }

  awaitable<bool> refuse(beast::tcp_stream& s, const Request& req, const std::string& why) {
    spdlog::warn("proxy_sealed_answer_refused error={}", logfmt_value(why));
    const ApiError e = api_error(502, "sealed_response_invalid", "The sealed answer is not valid: " + why);
    co_return co_await send_error(s, req, e);
  }

  static AnswerShape shape_of(const openai::ChatRequest& r) {
    return AnswerShape{r.model, r.include_usage, r.generation.logprobs};
  }

  // A streamed answer: the gateway's SSE events, each opened as it comes
  // (client/sealed_answer.h); this loop only splits and moves them.
  awaitable<bool> streamed(beast::tcp_stream& s, const Request& req, const openai::ChatRequest& r,
                           const protocol::sealed::ClientSeal& seal, Upstream& up) {
    http::response<http::empty_body> head{http::status::ok, req.version()};
    head.set(http::field::server, "agora-proxy");
    head.set(http::field::content_type, "text/event-stream; charset=utf-8");
    head.set(http::field::cache_control, "no-cache");
    for (const auto& [k, v] : pass_through(up.parser.get().base())) head.set(k, v);
    head.keep_alive(false);  // the stream ends by closing
    http::response_serializer<http::empty_body> sr{head};
    auto [hec, hn] = co_await http::async_write_header(s, sr, as_tuple_awaitable);
    if (hec) co_return false;
    SealedStream stream(seal, shape_of(r));
    std::string out;
    size_t consumed = 0;
    for (;;) {
      auto& body = up.parser.get().body();
      size_t end;
      SealedStream::Step step = SealedStream::Step::more;
      while (step == SealedStream::Step::more && (end = body.find("\n\n", consumed)) != std::string::npos) {
        std::string_view event(body.data() + consumed, end - consumed);
        consumed = end + 2;
        if (!event.starts_with("data: ")) continue;
        event.remove_prefix(6);
        step = stream.event(event, out);
      }
      if (!out.empty()) {
        auto [ec, n] = co_await asio::async_write(s, asio::buffer(out), as_tuple_awaitable);
        crypto::secure_wipe(out);
        out.clear();
        if (ec) co_return false;
      }
      if (step == SealedStream::Step::failed) {
        spdlog::warn("proxy_sealed_stream_ended error={}", logfmt_value(stream.why()));
        co_return false;
      }
      if (step == SealedStream::Step::done) break;
      if (!co_await read_more(up)) {
        // The body ended (or broke) before [DONE]: everything it held is
        // processed above; anything less than a complete answer is an error.
        if (up.parser.get().body().find("\n\n", consumed) != std::string::npos) continue;
        stream.cut_off(up.error, out);
        spdlog::warn("proxy_sealed_stream_ended error={}", logfmt_value(stream.why()));
        co_await asio::async_write(s, asio::buffer(out), as_tuple_awaitable);
        co_return false;
      }
    }
    // The rest of the gateway's chunked body (its terminator), so the
    // connection can serve the next request.
    co_await read_all(up);
    co_return false;  // close: the stream's end
  }

  // Whether a listed node's GPU TEE evidence verifies here: the pinned
  // root, the GPU policy, the tokens valid now by this machine's clock, and
  // the nonce binding its identity key `key` (raw). The gateway's
  // verification time must also be recent. Verified evidence is remembered
  // until its tokens expire, so a re-listing costs a hash, not the
  // signatures.
  bool attested(const json::object& node, const std::string& key) {
    const auto* a = node.if_contains("attestation");
    const json::object* o = a ? a->if_object() : nullptr;
    auto str = [&](const char* k) {
      const auto* v = o ? o->if_contains(k) : nullptr;
      return v && v->is_string() ? std::string(v->get_string()) : std::string();
    };
    const auto* vms = o ? o->if_contains("verified_ms") : nullptr;
    if (!o || str("level") != "confidential" || str("kind") != "nvidia_cc" || !vms || !vms->is_int64()) return false;
    const std::string evidence = str("evidence"), nonce = str("nonce");
    const int64_t verified_ms = vms->get_int64();
    const int64_t now = SystemClock::instance().unix_millis();
    // Compared without subtracting the gateway's number (it could be
    // INT64_MIN: the difference would overflow).
    if (verified_ms > now + 60'000 || verified_ms < now - cfg_.max_evidence_age_ms) return false;
    auto gateway_nonce = crypto::from_hex(nonce);
    if (!gateway_nonce || evidence.empty()) return false;
    const std::string id = crypto::sha256_hex(nonce + "|" + crypto::to_hex(key) + "|" + evidence);
    if (auto hit = verified_.find(id); hit != verified_.end()) return now < hit->second;
    auto v = cfg_.nvidia->verify(evidence, attest::evidence_nonce(*gateway_nonce, key), now);
    if (!v || v->level != "confidential") {
      const auto* nid = node.if_contains("id");
      spdlog::warn("proxy_evidence_refused node={} reason={}",
                   logfmt_value(nid && nid->is_string() ? std::string(nid->get_string()) : std::string("?")),
                   logfmt_value(v ? std::string("not confidential") : v.error().message));
      return false;
    }
    if (verified_.size() > 4096) verified_.clear();
    verified_[id] = std::min(v->expires_ms, verified_ms + cfg_.max_evidence_age_ms);
    return true;
  }


  asio::io_context& io_;
  ProxyConfig cfg_;
  net::Url gateway_;
  std::vector<std::unique_ptr<Conn>> idle_;                // kept-alive connections to the gateway
  std::unordered_map<std::string, Candidates> candidates_;  // by /v1/providers query
  std::unordered_map<std::string, int64_t> verified_;       // evidence verified here -> trusted until (ms)
  std::shared_ptr<asio::ssl::context> tls_;
  tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  bool stopping_ = false;
};

}  // namespace

std::shared_ptr<Proxy> make_proxy(boost::asio::io_context& io, ProxyConfig config) {
  return std::make_shared<ProxyImpl>(io, std::move(config));
}

}  // namespace agora::client
