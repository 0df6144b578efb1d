// The OpenAI-compatible listings and lookups (models, providers,
// generations, conversations) and the operator's probes (healthz, readyz,
// metrics). The bodies are built by pure functions (listings.h).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/json_text.h"
#include "crypto/aead.h"
#include "gateway/errors.h"
#include "gateway/http_handlers.h"
#include "gateway/listings.h"

namespace agora::gateway {

using asio::awaitable;

awaitable<bool> handle_healthz(Exchange& x, const RouteCall&) {
  co_return co_await send(x, json_response(x.req, http::status::ok, "{\"status\":\"ok\"}"));
}

awaitable<bool> handle_readyz(Exchange& x, const RouteCall&) {
  const auto g = x.g->gauges();
  const bool ready = x.g->ready() && !x.g->stopping();
  co_return co_await send(x, json_response(x.req, ready ? http::status::ok : http::status::service_unavailable,
                                           fmt::format("{{\"ready\":{},\"nodes\":{},\"slots\":{}}}", ready,
                                                       g.nodes_connected, g.slots_total)));
}

awaitable<bool> handle_metrics(Exchange& x, const RouteCall&) {
  Response res{http::status::ok, x.req.version()};
  res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
  res.body() = x.g->metrics().render(x.g->gauges());
  co_return co_await send(x, std::move(res));
}

awaitable<bool> handle_models(Exchange& x, const RouteCall& call) {
  x.rate = x.g->rate_snapshot(*call.key);
  co_return co_await send(x, json_response(x.req, http::status::ok, models_body(x.g->router().models())));
}

// GET /v1/providers?model=…&privacyLevel=…&region=a,b&confidential=…: the
// nodes a client could seal a request to now — serving the model, taking
// jobs (not held or draining), with an identity key, matching the
// constraints — so the client can choose and check candidates itself.
// Each listed node may carry up to 128 KiB of evidence: the listing is
// bounded (providers_query.h) and built on the loop.
awaitable<bool> handle_providers(Exchange& x, const RouteCall& call) {
  x.rate = x.g->rate_snapshot(*call.key);
  auto parsed = parse_providers_query(call.query);
  if (auto* err = std::get_if<ApiError>(&parsed)) {
    const ApiError api_err = *err;
    co_return co_await send_error(x, api_err);
  }
  co_return co_await send(x, json_response(x.req, http::status::ok,
                                           providers_body(x.g->router().nodes(), std::get<ProvidersQuery>(parsed))));
}

awaitable<bool> handle_generation(Exchange& x, const RouteCall& call) {
  const KeyEntry& key = *call.key;
  x.rate = x.g->rate_snapshot(key);
  const std::string id(call.rest);
  std::optional<store::GenerationRecord> rec;
  if (auto* r = x.g->generations().find_recent(id)) {
    rec = *r;
  } else if (id.size() <= 64) {
    rec = co_await await_answer<std::optional<store::GenerationRecord>>(
        x.stream->get_executor(), [&](auto done) { x.g->generations().lookup(id, done); });
  }
  // Another key's generation is indistinguishable from a missing one.
  if (!rec || rec->key_id != key.id) {
    const ApiError api_err = errors::generation_not_found(id);
    co_return co_await send_error(x, api_err);
  }
  co_return co_await send(x, json_response(x.req, http::status::ok, generation_json(*rec)));
}

// GET / DELETE /v1/conversations/{id}: only the owning key (lineage) sees
// it; anyone else gets the 404 a missing one gets.
awaitable<bool> handle_conversation(Exchange& x, const RouteCall& call) {
  const KeyEntry& key = *call.key;
  x.rate = x.g->rate_snapshot(key);
  const std::string id(call.rest);
  const ApiError not_found = errors::conversation_not_found(valid_conversation_id(id) ? id : std::string("…"));
  if (!valid_conversation_id(id)) co_return co_await send_error(x, not_found);
  // Each read or delete counts against the key's requests per minute (and
  // in-flight limit while it runs) like a chat request, tokens aside.
  const auto decision = x.g->limiter().admit(key.lineage, key.limits, 0, x.g->clock().now());
  x.rate = decision.snapshot;
  if (decision.refusal != RateLimiter::Refusal::none) {
    const ApiError api_err = rate_limited(decision, key);
    co_return co_await send_error(x, api_err);
  }
  struct Settle {
    GatewayImpl& g;
    const std::string& lineage;
    ~Settle() { g.limiter().settle(lineage, 0, 0, g.clock().now()); }
  } settle{*x.g, key.lineage};
  if (x.req.method() == http::verb::delete_) {
    auto deleted = co_await await_answer<Result<bool>>(
        x.stream->get_executor(), [&](auto done) { x.g->conversations().remove(key.lineage, id, done); });
    if (!deleted) {
      const ApiError api_err = errors::conversation_unavailable("", "deleted");
      co_return co_await send_error(x, api_err);
    }
    if (!*deleted) co_return co_await send_error(x, not_found);
    std::string body = "{\"id\":";
    append_json_string(body, id);
    body += ",\"object\":\"conversation.deleted\",\"deleted\":true}";
    co_return co_await send(x, json_response(x.req, http::status::ok, std::move(body)));
  }
  auto loaded = co_await await_answer<Result<std::optional<Conversation>>>(
      x.stream->get_executor(), [&](auto done) { x.g->conversations().load(key.lineage, id, done); });
  if (!loaded) {
    const ApiError api_err = errors::conversation_unavailable("", "read");
    co_return co_await send_error(x, api_err);
  }
  if (!*loaded) co_return co_await send_error(x, not_found);
  std::string body = conversation_json(id, **loaded);
  for (auto& m : (*loaded)->messages) crypto::secure_wipe(m.content);
  Response res = json_response(x.req, http::status::ok, std::move(body));
  res.set(http::field::cache_control, "no-store");
  co_return co_await send(x, std::move(res));
}

}  // namespace agora::gateway
