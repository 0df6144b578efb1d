// Admin API request bodies (admin_requests.h): POST /admin/v1/keys and
// POST /admin/v1/keys/{id}/rotate. What is accepted is what the store may
// hold: a name, limits that are none (0) or positive, an expiry in the
// future, model names; refusals are 400s naming a field or the body.
#include "fuzz_check.h"
#include "gateway/admin_requests.h"

using namespace agora;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body = fuzz::as_text(data, size);
  constexpr int64_t kNow = 1'800'000'000'000;
  auto spec = gateway::parse_key_spec(body, kNow);
  if (auto* s = std::get_if<store::KeySpec>(&spec)) {
    FUZZ_CHECK(s->role == "client", "the admin API only makes client keys");
    for (const store::Limit& l : {s->rpm, s->tpm, s->max_concurrent}) FUZZ_CHECK(!l || *l >= 0, "a limit is >= 0");
    FUZZ_CHECK(!s->expires_ms || *s->expires_ms > kNow, "an expiry is in the future");
  } else {
    const auto& e = std::get<gateway::ApiError>(spec);
    FUZZ_CHECK(e.status == 400 && !e.message.empty(), "a bad body is a 400 that says why");
  }
  auto grace = gateway::parse_rotate_grace(body);
  if (auto* e = std::get_if<gateway::ApiError>(&grace)) {
    FUZZ_CHECK(e->status == 400 && e->param == "grace", "a bad rotate body is a 400 naming grace");
  }
  return 0;
}
