// Hex (crypto::from_hex), padded base64 (crypto::from_base64) and unpadded
// base64url (attest::base64url_decode). Decoding is canonical: what decodes
// encodes back to the same text (hex: in lower case), so no two texts carry
// the same bytes.
#include <cctype>

#include "attest/jose.h"
#include "crypto/encoding.h"
#include "fuzz_check.h"

using namespace agora;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = fuzz::as_text(data, size);
  if (auto b = crypto::from_hex(text)) {
    std::string lower(text);
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    FUZZ_CHECK(crypto::to_hex(*b) == lower, "hex must round-trip");
  }
  if (auto b = crypto::from_base64(text)) FUZZ_CHECK(crypto::to_base64(*b) == text, "base64 must be canonical");
  if (auto b = attest::base64url_decode(text)) {
    FUZZ_CHECK(attest::base64url_encode(*b) == text, "base64url must be canonical");
  }
  return 0;
}
