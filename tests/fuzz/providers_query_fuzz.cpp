// The query string of GET /v1/providers (providers_query.h), and with it
// net::parse_query's %-decoding.
#include "fuzz_check.h"
#include "gateway/providers_query.h"

using namespace agora;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parsed = gateway::parse_providers_query(fuzz::as_text(data, size));
  if (auto* q = std::get_if<gateway::ProvidersQuery>(&parsed)) {
    FUZZ_CHECK(!q->model.empty(), "a query without a model must be refused");
    FUZZ_CHECK(q->limit >= 1 && q->limit <= gateway::kMaxProvidersLimit, "limit out of range");
  } else {
    FUZZ_CHECK(std::get<gateway::ApiError>(parsed).status == 400, "a bad query must be a 400");
  }
  return 0;
}
