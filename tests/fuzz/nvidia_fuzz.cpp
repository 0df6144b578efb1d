// NRAS EAT bundles through the NVIDIA verifier (attest/verifier.h), pinned
// to the fixed test root the seeds' chains end in, at the seeds' nonce and
// time. A fresh verifier per input keeps runs deterministic (no chain cache).
#include "attest/verifier.h"
#include "fuzz_check.h"

using namespace agora;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string root = fuzz::key_file("nvidia_root.pem");
  attest::NvidiaPolicy policy;
  policy.root_pem = root;
  policy.hw_models = {"GH100 A01 GSP BROM"};
  policy.min_driver_version = "550.54.15";
  const int64_t policy_leeway_s = policy.leeway_s;
  auto verifier = attest::make_nvidia_verifier(std::move(policy));
  FUZZ_CHECK(verifier.ok(), "the fixed root must load");
  if (auto v = (*verifier)->verify(fuzz::as_text(data, size), fuzz::kNonce, fuzz::kNowMs)) {
    FUZZ_CHECK(v->level == "confidential", "a verdict grants confidential");
    // Tokens may be accepted up to the leeway past their exp.
    FUZZ_CHECK(v->expires_ms > fuzz::kNowMs - (policy_leeway_s + 1) * 1000, "a verdict is not born long expired");
  }
  return 0;
}
