// Play Integrity tokens (a JWS inside a JWE) through the verifier with the
// fixed test keys the seeds were made with, at their nonce and time.
#include "attest/verifier.h"
#include "fuzz_check.h"

using namespace agora;

namespace {
const attest::AttestationVerifier& verifier() {
  static const auto v = [] {
    attest::PlayIntegrityPolicy p;
    p.decryption_key = fuzz::key_file("play_decryption.key");
    p.verification_key = attest::public_key_from_pem(fuzz::key_file("play_verification.pem")).value();
    p.package_name = "dev.agora.node";
    p.certificate_sha256 = "ZnV6eiBjZXJ0aWZpY2F0ZSBkaWdlc3Q";
    return attest::make_play_integrity_verifier(std::move(p));
  }();
  return *v;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (auto v = verifier().verify(fuzz::as_text(data, size), fuzz::kNonce, fuzz::kNowMs)) {
    FUZZ_CHECK(v->level == "verified", "a verdict grants verified");
  }
  return 0;
}
