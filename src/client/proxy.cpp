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
    if (up.parser.is_done()) co_return false;
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

  // The nodes a request is sealed to, as listed at `at`.
  struct Candidates {
    std::chrono::steady_clock::time_point at;
    std::vector<protocol::sealed::Recipient> recipients;
    int32_t ctx = 0;
  };

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
    const Candidates& cand = std::get<Candidates>(found);
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
    if (!c.recipients.empty()) candidates_[q] = c;
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
    for (size_t i = 0; data && i < data->size() && out.recipients.size() < cfg_.candidates; ++i) {
      const auto* n = (*data)[i].if_object();
      if (!n) continue;
      const auto* id = n->if_contains("id");
      const auto* key = n->if_contains("identity_key");
      const auto* c = n->if_contains("ctx_per_slot");
      if (!id || !id->is_string() || !key || !key->is_string()) continue;
      auto raw = crypto::from_hex(key->get_string());
      if (!raw || raw->size() != crypto::hpke::kPublicKeyBytes) continue;
      if (confidential && !attested(*n, *raw)) continue;
      out.recipients.push_back({std::string(id->get_string()), std::move(*raw)});
      if (c && c->is_int64() && c->get_int64() > 0) {
        const auto x = static_cast<int32_t>(std::min<int64_t>(c->get_int64(), INT32_MAX));
        out.ctx = out.ctx == 0 ? x : std::min(out.ctx, x);
      }
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

  // The HPKE context of the node that answered.
  static const crypto::hpke::Context* context_for(const protocol::sealed::ClientSeal& seal, std::string_view node) {
    for (const auto& [id, c] : seal.contexts) {
      if (id == node) return &c;
    }
    return nullptr;
  }

  struct Opened {
    std::optional<protocol::Delta> delta;
    std::optional<protocol::Done> done;
  };
  static Result<Opened> open_chunk(protocol::sealed::ResponseOpener& opener, const json::object& chunk) {
    const auto* seq = chunk.if_contains("seq");
    const auto* fin = chunk.if_contains("final");
    const auto* ct = chunk.if_contains("ciphertext");
    if (!seq || !seq->is_int64() || seq->get_int64() < 0 || !fin || !fin->is_bool() || !ct || !ct->is_string()) {
      return make_error(Errc::corrupt, "a malformed sealed chunk");
    }
    auto raw = crypto::from_base64(ct->get_string());
    if (!raw) return make_error(Errc::corrupt, "a sealed chunk that is not base64");
    auto pt = opener.open(static_cast<uint64_t>(seq->get_int64()), fin->get_bool(), *raw);
    if (!pt) return pt.error();
    auto m = protocol::decode(*pt);
    crypto::secure_wipe(*pt);
    if (!m) return make_error(Errc::corrupt, "a sealed chunk that does not decode: " + m.error().message);
    Opened o;
    if (auto* d = std::get_if<protocol::Delta>(&*m); d && !fin->get_bool()) o.delta = std::move(*d);
    else if (auto* dn = std::get_if<protocol::Done>(&*m); dn && fin->get_bool()) o.done = std::move(*dn);
    else return make_error(Errc::corrupt, "a sealed chunk of the wrong kind");
    return o;
  }

  static openai::Provenance provenance_of(const json::object& o, std::string_view node) {
    openai::Provenance p;
    if (const auto* a = o.if_contains("agora"); a && a->is_object()) {
      auto str = [&](const char* k) {
        const auto* v = a->get_object().if_contains(k);
        return v && v->is_string() ? std::string(v->get_string()) : std::string();
      };
      p.provider_id = str("provider_id");
      p.model_sha256 = str("model_sha256");
      p.generation_id = str("generation_id");
      p.attestation = str("attestation");
    }
    p.node_id = std::string(node);
    return p;
  }

  awaitable<bool> unary(beast::tcp_stream& s, const Request& req, const openai::ChatRequest& r,
                        const protocol::sealed::ClientSeal& seal, Upstream& up) {
    co_await read_all(up);
    auto fail = [&](std::string why) -> awaitable<bool> {
      spdlog::warn("proxy_sealed_answer_refused error={}", logfmt_value(why));
      const ApiError e = api_error(502, "sealed_response_invalid", "The sealed answer is not valid: " + why);
      co_return co_await send_error(s, req, e);
    };
    if (!up.error.empty()) co_return co_await fail("the gateway's answer was cut off: " + up.error);
    boost::system::error_code ec;
    json::value v = json::parse(up.parser.get().body(), ec);
    if (ec || !v.is_object()) co_return co_await fail("not JSON");
    const auto& o = v.get_object();
    const auto* sealed = o.if_contains("agora_sealed");
    const auto* agora = o.if_contains("agora");
    const json::value* node = agora && agora->is_object() ? agora->get_object().if_contains("node_id") : nullptr;
    if (!sealed || !sealed->is_object() || !node || !node->is_string()) co_return co_await fail("no sealed chunks");
    const auto* ctx = context_for(seal, node->get_string());
    if (!ctx) co_return co_await fail("answered by a node it was not sealed to");
    protocol::sealed::ResponseOpener opener(*ctx);
    openai::CompletionResult result;
    result.logprobs_requested = r.generation.logprobs;
    const auto* chunks = sealed->get_object().if_contains("chunks");
    if (!chunks || !chunks->is_array()) co_return co_await fail("no sealed chunks");
    for (const auto& c : chunks->get_array()) {
      if (!c.is_object()) co_return co_await fail("a malformed sealed chunk");
      auto opened = open_chunk(opener, c.get_object());
      if (!opened) co_return co_await fail(opened.error().message);
      if (opened->delta) {
        result.text += opened->delta->text;
        for (auto& lp : opened->delta->logprobs) result.logprobs.push_back(std::move(lp));
      } else {
        result.finish = opened->done->finish;
        result.usage = opened->done->usage;
      }
    }
    if (!opener.finished()) co_return co_await fail("it ends without its final chunk (truncated)");
    std::string id, model = r.model;
    int64_t created = 0;
    if (const auto* x = o.if_contains("id"); x && x->is_string()) id = std::string(x->get_string());
    if (const auto* x = o.if_contains("created"); x && x->is_int64()) created = x->get_int64();
    std::string out = openai::completion_body(id, created, model, result, provenance_of(o, node->get_string()));
    crypto::secure_wipe(result.text);
    co_return co_await send(s, req, http::status::ok, std::move(out), pass_through(up.parser.get().base()));
  }

  // Longer than a screen: one loop over the gateway's SSE events whose
  // state (the chunk writer, the opener bound to the answering node, the
  // final chunk) spans events; its checks read best in order. Making it a
  // sans-I/O decoder with a fuzz target of its own is the next step.
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
    auto write = [&](const std::string& data) -> awaitable<bool> {
      auto [ec, n] = co_await asio::async_write(s, asio::buffer(data), as_tuple_awaitable);
      co_return !ec;
    };
    auto fail = [&](std::string why) -> awaitable<bool> {
      spdlog::warn("proxy_sealed_stream_refused error={}", logfmt_value(why));
      std::string out;
      openai::ChunkWriter::error(out, api_error(502, "sealed_response_invalid", "The sealed answer is not valid: " + why));
      co_await write(out);
      co_return false;
    };

    std::optional<openai::ChunkWriter> cw;
    std::optional<protocol::sealed::ResponseOpener> opener;
    std::string node;
    std::optional<protocol::Done> done;
    openai::Provenance prov;
    size_t consumed = 0;
    bool finished = false;
    for (;;) {
      auto& body = up.parser.get().body();
      size_t end;
      while ((end = body.find("\n\n", consumed)) != std::string::npos) {
        std::string_view event(body.data() + consumed, end - consumed);
        consumed = end + 2;
        if (!event.starts_with("data: ")) continue;
        event.remove_prefix(6);
        if (event == "[DONE]") {
          if (!opener || !opener->finished() || !done) co_return co_await fail("it ends without its final chunk (truncated)");
          std::string out;
          openai::ChunkWriter::done(out);
          co_await write(out);
          finished = true;
          break;
        }
        boost::system::error_code ec;
        json::value v = json::parse(event, ec);
        if (ec || !v.is_object()) co_return co_await fail("an event that is not JSON");
        const auto& o = v.get_object();
        if (const auto* err = o.if_contains("error")) {
          // The gateway's own error event (a failed provider): relayed.
          std::string out = "data: " + json::serialize(json::object{{"error", *err}}) + "\n\n";
          co_await write(out);
          co_return false;
        }
        if (!cw) {
          std::string id;
          int64_t created = 0;
          if (const auto* x = o.if_contains("id"); x && x->is_string()) id = std::string(x->get_string());
          if (const auto* x = o.if_contains("created"); x && x->is_int64()) created = x->get_int64();
          cw.emplace(id, created, r.model, r.include_usage, r.generation.logprobs);
        }
        if (const auto* sc = o.if_contains("agora_sealed"); sc && sc->is_object()) {
          const auto* n = sc->get_object().if_contains("node_id");
          if (!n || !n->is_string()) co_return co_await fail("a sealed chunk without its node");
          if (!opener) {
            const auto* ctx = context_for(seal, n->get_string());
            if (!ctx) co_return co_await fail("answered by a node it was not sealed to");
            opener.emplace(*ctx);
            node = std::string(n->get_string());
          } else if (n->get_string() != node) {
            co_return co_await fail("chunks from two nodes");
          }
          auto opened = open_chunk(*opener, sc->get_object());
          if (!opened) co_return co_await fail(opened.error().message);
          if (opened->delta) {
            std::string out;
            cw->content(out, opened->delta->text, opened->delta->logprobs);
            crypto::secure_wipe(opened->delta->text);
            if (!co_await write(out)) co_return false;
          } else {
            done = std::move(opened->done);
          }
          continue;
        }
        // The gateway's plaintext chunks: the finish chunk (provenance) and,
        // with include_usage, the usage chunk. The finish reason and usage
        // come from the sealed final chunk, not from them.
        const auto* choices = o.if_contains("choices");
        const bool has_choices = choices && choices->is_array() && !choices->get_array().empty();
        if (has_choices) {
          if (!done) co_return co_await fail("the end of the answer came before its sealed final chunk");
          prov = provenance_of(o, node);
          std::string out;
          cw->finish(out, "", {}, done->finish, prov);
          if (!co_await write(out)) co_return false;
        } else if (o.contains("usage") && r.include_usage) {
          if (!done) co_return co_await fail("usage came before the sealed final chunk");
          std::string out;
          cw->usage(out, done->usage, provenance_of(o, node));
          if (!co_await write(out)) co_return false;
        }
      }
      if (finished) break;
      const bool more = co_await read_more(up);
      if (!more) {
        // The body ended (or broke) before [DONE]: everything it held is
        // processed above; anything less than a complete answer is an error.
        auto& b = up.parser.get().body();
        if (b.find("\n\n", consumed) != std::string::npos) continue;
        co_return co_await fail(up.error.empty() ? "the stream ended before its final chunk (truncated)"
                                                 : "the stream broke: " + up.error);
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
