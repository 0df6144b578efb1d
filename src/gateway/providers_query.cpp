#include "gateway/providers_query.h"

#include <charconv>

#include "common/text.h"
#include "net/url.h"

namespace agora::gateway {

std::variant<ProvidersQuery, ApiError> parse_providers_query(std::string_view query) {
  auto params = net::parse_query(query);
  if (!params) return invalid_request("", "Bad query string: " + params.error().message);
  ProvidersQuery out;
  for (const auto& [k, v] : *params) {
    if (k == "limit") {
      size_t wanted = 0;
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), wanted);
      if (ec != std::errc{} || end != v.data() + v.size() || wanted < 1 || wanted > kMaxProvidersLimit) {
        return invalid_request("limit", "limit must be an integer from 1 to " + std::to_string(kMaxProvidersLimit));
      }
      out.limit = wanted;
    } else if (k == "model") {
      out.model = v;
    } else if (k == "privacyLevel") {
      if (v != "standard" && v != "verified") {
        return invalid_request("privacyLevel", "privacyLevel must be \"standard\" or \"verified\"");
      }
      out.routing.privacy_level = v;
    } else if (k == "region") {
      for (auto& r : split_list(v)) out.routing.regions.push_back(std::move(r));
    } else if (k == "confidential") {
      if (v != "true" && v != "false") return invalid_request("confidential", "confidential must be true or false");
      out.routing.confidential = v == "true";
    }
  }
  if (out.model.empty()) return invalid_request("model", "Give the model: /v1/providers?model=NAME");
  return out;
}

}  // namespace agora::gateway
