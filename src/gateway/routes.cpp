#include "gateway/routes.h"

#include <array>

namespace agora::gateway {

namespace {

constexpr std::array<Route, kRouteCount> kRoutes{{
    {RouteId::healthz, "/healthz", "", "healthz", false},
    {RouteId::readyz, "/readyz", "", "readyz", false},
    {RouteId::metrics, "/metrics", "", "metrics", false},
    {RouteId::admin, "/admin/", "", "admin", false},
    {RouteId::chat, "/v1/chat/completions", "POST", "chat", true},
    {RouteId::models, "/v1/models", "GET", "models", true},
    {RouteId::providers, "/v1/providers", "GET", "providers", true},
    {RouteId::generation, "/v1/generations/", "GET", "generations", true},
    {RouteId::conversation, "/v1/conversations/", "GET, DELETE", "conversations", true},
}};

bool allows(std::string_view methods, std::string_view method) {
  if (methods.empty()) return true;
  while (!methods.empty()) {
    const size_t comma = methods.find(',');
    std::string_view m = methods.substr(0, comma);
    if (m == method) return true;
    if (comma == std::string_view::npos) break;
    methods.remove_prefix(comma + 1);
    while (!methods.empty() && methods.front() == ' ') methods.remove_prefix(1);
  }
  return false;
}

}  // namespace

std::span<const Route> routes() { return kRoutes; }

RouteMatch match_route(std::string_view method, std::string_view path) {
  for (const Route& r : kRoutes) {
    const bool prefix = r.path.ends_with('/');
    if (prefix ? !path.starts_with(r.path) : path != r.path) continue;
    RouteMatch m;
    m.route = &r;
    if (prefix) m.rest = path.substr(r.path.size());
    m.method_allowed = allows(r.methods, method);
    return m;
  }
  return {};
}

}  // namespace agora::gateway
