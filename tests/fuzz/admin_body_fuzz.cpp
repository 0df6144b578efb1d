// Admin API request bodies (admin_requests.h): POST /admin/v1/keys and
// POST /admin/v1/keys/{id}/rotate.
#include "fuzz_check.h"
#include "gateway/admin_requests.h"

using namespace agora;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body = fuzz::as_text(data, size);
  constexpr int64_t kNow = 1'800'000'000'000;
  auto spec = gateway::parse_key_spec(body, kNow);
  if (auto* s = std::get_if<store::KeySpec>(&spec)) {
    FUZZ_CHECK(store::validate_key_spec(*s, kNow).ok(), "an accepted spec must be valid");
  } else {
    FUZZ_CHECK(std::get<gateway::ApiError>(spec).status == 400, "a bad body must be a 400");
  }
  auto grace = gateway::parse_rotate_grace(body);
  if (auto* e = std::get_if<gateway::ApiError>(&grace)) FUZZ_CHECK(e->status == 400, "a bad body must be a 400");
  return 0;
}
