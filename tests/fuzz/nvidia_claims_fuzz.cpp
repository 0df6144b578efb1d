// An NRAS token's decoded claims, directly (past the signature the fuzzer
// cannot forge): check_eat_claims, then check_gpu_claims on what passed.
#include <boost/json.hpp>

#include "attest/verifier.h"
#include "fuzz_check.h"

using namespace agora;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const attest::NvidiaPolicy policy = [] {
    attest::NvidiaPolicy p;
    p.hw_models = {"GH100 A01 GSP BROM"};
    p.min_driver_version = "550.54.15";
    return p;
  }();
  auto claims = attest::check_eat_claims(fuzz::as_text(data, size), fuzz::kNonce, fuzz::kNowMs, policy.leeway_s, "token");
  if (!claims) return 0;
  (void)attest::check_gpu_claims("GPU-0", *claims, policy);
  return 0;
}
