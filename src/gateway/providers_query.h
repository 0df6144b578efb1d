// The query of GET /v1/providers (the nodes a client could seal a request
// to): ?model=NAME&privacyLevel=standard|verified&region=a,b
// &confidential=true|false&limit=N. Pure; the HTTP shell lists the nodes.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <variant>

#include "gateway/openai_names.h"

namespace agora::gateway {

// Each listed node may carry up to 128 KiB of evidence, so the listing is
// bounded: 100 nodes unless asked, at most 1,000.
inline constexpr size_t kDefaultProvidersLimit = 100;
inline constexpr size_t kMaxProvidersLimit = 1000;

struct ProvidersQuery {
  std::string model;
  RoutingPreferences routing;  // privacy_level, regions, confidential
  size_t limit = kDefaultProvidersLimit;
};

// Parses the query string (without the '?'). Unknown names are ignored.
// Errors: a 400 naming the parameter (a bad %-escape, a missing model, an
// unknown privacy level, confidential not true/false, limit outside 1-1000).
std::variant<ProvidersQuery, ApiError> parse_providers_query(std::string_view query);

}  // namespace agora::gateway
