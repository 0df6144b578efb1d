// Compact JWS and JWE (attest/jose.h) with fixed test keys: parse_jws, then
// verify_jws as ES256 and ES384 against the keys the seeds were signed with,
// and decrypt_jwe with the fixed A256KW key.
#include "attest/jose.h"
#include "fuzz_check.h"

using namespace agora;

namespace {
struct Keys {
  attest::Pkey es256 = attest::public_key_from_pem(fuzz::key_file("play_verification.pem")).value();
  attest::Pkey es384 = attest::public_key_from_pem(fuzz::key_file("nvidia_signer.pem")).value();
  std::string kek = fuzz::key_file("play_decryption.key");
};
const Keys& keys() {
  static const Keys k;
  return k;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = fuzz::as_text(data, size);
  if (auto jws = attest::parse_jws(text)) {
    (void)attest::verify_jws(*jws, attest::JwsAlg::es256, keys().es256.get());
    (void)attest::verify_jws(*jws, attest::JwsAlg::es384, keys().es384.get());
  }
  if (auto plain = attest::decrypt_jwe(text, keys().kek)) (void)attest::parse_jws(*plain);
  return 0;
}
