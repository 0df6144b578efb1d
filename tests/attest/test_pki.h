// Test-time PKI and token minting for the attestation tests: certificates
// made at test time (a root, an intermediate, signers), NRAS-shaped EAT
// bundles and Play Integrity tokens. Used by the unit tests and by
// agora-test-attester (the attestation command of end-to-end tests).
#pragma once

#include <openssl/x509.h>

#include <boost/json.hpp>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "attest/jose.h"

namespace agora::attest::test_pki {

struct Cert {
  Pkey key;
  X509* x509 = nullptr;
  Cert() = default;
  Cert(Cert&& o) noexcept : key(std::move(o.key)), x509(std::exchange(o.x509, nullptr)) {}
  Cert& operator=(Cert&& o) noexcept;
  ~Cert();
};

// A certificate for a fresh P-384 key, valid from an hour ago for
// `valid_s` (default two days): self-signed when `issuer` is null;
// `key_usage` as in openssl's config syntax (null: no extension).
Cert make_cert(const char* cn, const Cert* issuer, bool ca, const char* key_usage, long valid_s = 48 * 3600);
std::string der_b64(X509* x);  // standard base64 of the DER (as in x5c)
std::string pem(X509* x);
std::string private_pem(EVP_PKEY* k);
std::string public_pem(EVP_PKEY* k);
Cert cert_from_pem(const std::string& cert_pem, const std::string& key_pem);

// An ES384 JWS of `claims` by `signer`, with `chain` as its x5c.
std::string sign_with_chain(const boost::json::object& claims, const Cert& signer, const std::vector<const Cert*>& chain,
                            boost::json::object header = {{"alg", "ES384"}});
// Claims of a healthy GPU for `nonce`, valid from now - 10 s for `ttl_s`.
boost::json::object gpu_claims(const std::string& nonce, int64_t now_s, int64_t ttl_s = 3600);
// The detached EAT bundle over `gpus` (name -> device token); `overall`
// edits the overall claims before signing.
std::string eat_bundle(const std::string& nonce, int64_t now_s, const std::map<std::string, std::string>& gpus,
                       const Cert& signer, const std::vector<const Cert*>& chain,
                       const std::function<void(boost::json::object&)>& overall = {}, int64_t ttl_s = 3600);

// A Play Integrity verdict payload for `nonce` at `now_ms`.
boost::json::object play_payload(const std::string& nonce, int64_t now_ms, const std::string& package,
                                 const std::string& cert_digest);
// The token: JWS (ES256 by `signing`) inside a JWE (A256KW with `kek`).
std::string play_token(const boost::json::object& payload, const std::string& kek, EVP_PKEY* signing,
                       boost::json::object header = {{"alg", "ES256"}});

}  // namespace agora::attest::test_pki
