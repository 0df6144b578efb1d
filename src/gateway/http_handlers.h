// The handlers of the gateway's HTTP routes (routes.h), by endpoint group.
// Each answers one request and returns whether the connection stays open.
#pragma once

#include "gateway/http_exchange.h"

namespace agora::gateway {

// chat_handler.cpp: POST /v1/chat/completions (unary and SSE).
asio::awaitable<bool> handle_chat(Exchange& x, const RouteCall& call);
// api_handlers.cpp: the listings and lookups, and the operator's probes.
asio::awaitable<bool> handle_models(Exchange& x, const RouteCall& call);
asio::awaitable<bool> handle_providers(Exchange& x, const RouteCall& call);
asio::awaitable<bool> handle_generation(Exchange& x, const RouteCall& call);
asio::awaitable<bool> handle_conversation(Exchange& x, const RouteCall& call);
asio::awaitable<bool> handle_healthz(Exchange& x, const RouteCall& call);
asio::awaitable<bool> handle_readyz(Exchange& x, const RouteCall& call);
asio::awaitable<bool> handle_metrics(Exchange& x, const RouteCall& call);
// admin_api.cpp: /admin/v1/… (its own admin-token check and sub-routes).
asio::awaitable<bool> handle_admin(Exchange& x, const RouteCall& call);
// The 429 for a refused admission (chat and conversations share it).
ApiError rate_limited(const RateLimiter::Decision& d, const KeyEntry& key);

}  // namespace agora::gateway
