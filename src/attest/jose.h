// The JOSE pieces attestation tokens are made of (RFC 7515 JWS, RFC 7516
// JWE, RFC 7518 algorithms), for the verifiers in this library: compact
// serialisation, base64url, ES256/ES384 signatures (and nothing else: the
// algorithm is the verifier's choice, never the token's), and JWE with
// A256KW key wrapping and A256GCM content encryption.
//
// Pure functions on OpenSSL 3; thread-safe.
#pragma once

#include <openssl/evp.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>

#include "common/result.h"

namespace agora::attest {

// Unpadded base64url (RFC 4648 §5). decode: nullopt on anything else.
std::string base64url_encode(std::string_view bytes);
std::optional<std::string> base64url_decode(std::string_view text);

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

// A PEM public key (SubjectPublicKeyInfo). Errors: invalid_argument.
Result<Pkey> public_key_from_pem(std::string_view pem);
// The same as DER bytes (as the Play Console gives it, once base64-decoded).
Result<Pkey> public_key_from_der(std::string_view der);

enum class JwsAlg { es256, es384 };

struct Jws {
  boost::json::object header;
  std::string payload;        // decoded bytes
  std::string signing_input;  // BASE64URL(header) "." BASE64URL(payload)
  std::string signature;      // decoded raw signature (r || s)
};

// Splits and decodes a compact JWS. Errors: invalid_argument (not three
// parts, bad base64url, a header that is not a JSON object).
Result<Jws> parse_jws(std::string_view compact);

// Verifies `jws` as `alg` with `key`: the header's "alg" must name exactly
// `alg` ("none", HS*, RS* and the rest are refused), the key must be on
// the algorithm's curve, and the raw signature must verify over the
// signing input. Errors: invalid_argument naming the failure.
Status verify_jws(const Jws& jws, JwsAlg alg, EVP_PKEY* key);

// Signs (tests mint their tokens with it): header and payload as given.
Result<std::string> sign_jws(const boost::json::object& header, std::string_view payload, JwsAlg alg, EVP_PKEY* key);

// Decrypts a compact JWE whose header says alg "A256KW", enc "A256GCM"
// (anything else is refused) with the 32-byte key-encryption key; the AAD
// is the protected header as sent. Returns the plaintext. Errors:
// invalid_argument (format, algorithms), corrupt (unwrap or tag failure).
Result<std::string> decrypt_jwe(std::string_view compact, std::string_view kek);
// The inverse, for tests.
Result<std::string> encrypt_jwe(std::string_view plaintext, std::string_view kek);

}  // namespace agora::attest
