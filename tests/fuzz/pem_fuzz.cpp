// PEM and DER: certificate chains as the TLS and attestation configuration
// reads them (net::detail::certificates_from_pem), public keys in PEM and
// DER (attest::public_key_from_pem / _der, the Play Console's form).
#include "attest/jose.h"
#include "fuzz_check.h"
#include "net/pem.h"

using namespace agora;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = fuzz::as_text(data, size);
  if (auto certs = net::detail::certificates_from_pem(text, "fuzz")) FUZZ_CHECK(!certs->empty(), "at least one");
  (void)attest::public_key_from_pem(text);
  (void)attest::public_key_from_der(text);
  return 0;
}
