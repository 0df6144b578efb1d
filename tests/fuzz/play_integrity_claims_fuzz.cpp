// A Play Integrity verdict's decoded payload, directly (past the encryption
// and signature): check_play_integrity_payload.
#include "attest/verifier.h"
#include "fuzz_check.h"

using namespace agora;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const attest::PlayIntegrityPolicy policy = [] {
    attest::PlayIntegrityPolicy p;
    p.package_name = "dev.agora.node";
    p.certificate_sha256 = "ZnV6eiBjZXJ0aWZpY2F0ZSBkaWdlc3Q";
    return p;
  }();
  (void)attest::check_play_integrity_payload(fuzz::as_text(data, size), policy, fuzz::kNonce, fuzz::kNowMs);
  return 0;
}
