// The gateway's HTTP route table: method + path -> which handler, what it
// allows and what it needs. Pure (tests/gateway/routes_test.cpp); the HTTP
// shell (http_session.cpp) looks a request up here and calls the handler
// for its RouteId (http_handlers.h).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace agora::gateway {

enum class RouteId : uint8_t {
  healthz,
  readyz,
  metrics,
  admin,  // /admin/… (admin_api.cpp routes within it, with its own token check)
  chat,
  models,
  providers,
  generation,    // /v1/generations/{id}
  conversation,  // /v1/conversations/{id}
};
inline constexpr size_t kRouteCount = 9;

struct Route {
  RouteId id;
  std::string_view path;     // exact, or a prefix when it ends in '/'
  std::string_view methods;  // "POST", "GET, DELETE" (also the Allow header); "" any
  std::string_view label;    // the route label in /metrics
  bool client_key;           // needs an active client key (gk_…)
};

struct RouteMatch {
  const Route* route = nullptr;  // nullptr: no such path (404)
  std::string_view rest;         // what follows a prefix path (an id)
  bool method_allowed = false;   // else 405 with Allow: route->methods
};

std::span<const Route> routes();
// `path` without the query string; `method` as sent ("GET").
RouteMatch match_route(std::string_view method, std::string_view path);

}  // namespace agora::gateway
