#include "test_pki.h"

#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <stdexcept>

#include "crypto/encoding.h"
#include "crypto/sha256.h"

namespace agora::attest::test_pki {
namespace json = boost::json;

namespace {

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext) throw std::runtime_error(std::string("test pki: bad extension ") + value);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

std::string bio_text(BIO* bio) {
  char* p = nullptr;
  const long n = BIO_get_mem_data(bio, &p);
  std::string out(p, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

}  // namespace

Cert& Cert::operator=(Cert&& o) noexcept {
  if (this != &o) {
    X509_free(x509);
    key = std::move(o.key);
    x509 = std::exchange(o.x509, nullptr);
  }
  return *this;
}

Cert::~Cert() { X509_free(x509); }

Cert make_cert(const char* cn, const Cert* issuer, bool ca, const char* key_usage, long valid_s) {
  static std::atomic<long> serial{1};
  Cert c;
  c.key = Pkey(EVP_EC_gen("P-384"));
  c.x509 = X509_new();
  X509_set_version(c.x509, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(c.x509), serial++);
  X509_gmtime_adj(X509_getm_notBefore(c.x509), -3600);
  X509_gmtime_adj(X509_getm_notAfter(c.x509), valid_s);
  X509_set_pubkey(c.x509, c.key.get());
  X509_NAME* name = X509_get_subject_name(c.x509);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
  X509_set_issuer_name(c.x509, issuer ? X509_get_subject_name(issuer->x509) : name);
  X509* iss = issuer ? issuer->x509 : c.x509;
  add_ext(c.x509, iss, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  if (key_usage) add_ext(c.x509, iss, NID_key_usage, key_usage);
  add_ext(c.x509, iss, NID_subject_key_identifier, "hash");
  if (issuer) add_ext(c.x509, iss, NID_authority_key_identifier, "keyid:always");
  X509_sign(c.x509, issuer ? issuer->key.get() : c.key.get(), EVP_sha384());
  return c;
}

std::string der_b64(X509* x) {
  unsigned char* der = nullptr;
  const int n = i2d_X509(x, &der);
  std::string out = crypto::to_base64(std::string(reinterpret_cast<char*>(der), static_cast<size_t>(n)));
  OPENSSL_free(der);
  return out;
}

std::string pem(X509* x) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, x);
  return bio_text(bio);
}

std::string private_pem(EVP_PKEY* k) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, k, nullptr, nullptr, 0, nullptr, nullptr);
  return bio_text(bio);
}

std::string public_pem(EVP_PKEY* k) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, k);
  return bio_text(bio);
}

Cert cert_from_pem(const std::string& cert_pem, const std::string& key_pem) {
  Cert c;
  BIO* b = BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size()));
  c.x509 = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
  BIO_free(b);
  b = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  c.key = Pkey(PEM_read_bio_PrivateKey(b, nullptr, nullptr, nullptr));
  BIO_free(b);
  if (!c.x509 || !c.key) throw std::runtime_error("test pki: unreadable certificate or key");
  return c;
}

std::string sign_with_chain(const json::object& claims, const Cert& signer, const std::vector<const Cert*>& chain,
                            json::object header) {
  json::array x5c;
  for (const Cert* c : chain) x5c.push_back(json::string(der_b64(c->x509)));
  header["x5c"] = std::move(x5c);
  auto t = sign_jws(header, json::serialize(claims), JwsAlg::es384, signer.key.get());
  if (!t) throw std::runtime_error("test pki: " + t.error().message);
  return *t;
}

json::object gpu_claims(const std::string& nonce, int64_t now_s, int64_t ttl_s) {
  return {{"eat_nonce", nonce},
          {"nbf", now_s - 10},
          {"exp", now_s + ttl_s},
          {"measres", "success"},
          {"secboot", true},
          {"dbgstat", "disabled"},
          {"hwmodel", "GH100 A01 GSP BROM"},
          {"x-nvidia-gpu-driver-version", "550.90.07"}};
}

std::string eat_bundle(const std::string& nonce, int64_t now_s, const std::map<std::string, std::string>& gpus,
                       const Cert& signer, const std::vector<const Cert*>& chain,
                       const std::function<void(json::object&)>& overall, int64_t ttl_s) {
  json::object submods;
  for (const auto& [name, tok] : gpus) {
    submods[name] = json::array{"DIGEST", json::array{"SHA256", crypto::sha256_hex(tok)}};
  }
  json::object claims{{"eat_nonce", nonce},
                      {"nbf", now_s - 10},
                      {"exp", now_s + ttl_s},
                      {"x-nvidia-overall-att-result", true},
                      {"submods", std::move(submods)}};
  if (overall) overall(claims);
  json::object devices;
  for (const auto& [name, tok] : gpus) devices[name] = tok;
  return json::serialize(json::array{json::array{"JWT", sign_with_chain(claims, signer, chain)}, devices});
}

json::object play_payload(const std::string& nonce, int64_t now_ms, const std::string& package,
                          const std::string& cert_digest) {
  return json::object{
      {"requestDetails", json::object{{"requestPackageName", package}, {"nonce", nonce}, {"timestampMillis", now_ms - 1000}}},
      {"appIntegrity", json::object{{"appRecognitionVerdict", "PLAY_RECOGNIZED"},
                                    {"packageName", package},
                                    {"certificateSha256Digest", json::array{"other", cert_digest}},
                                    {"versionCode", "42"}}},
      {"deviceIntegrity", json::object{{"deviceRecognitionVerdict", json::array{"MEETS_DEVICE_INTEGRITY"}}}},
      {"accountDetails", json::object{{"appLicensingVerdict", "LICENSED"}}}};
}

std::string play_token(const json::object& payload, const std::string& kek, EVP_PKEY* signing, json::object header) {
  auto jws = sign_jws(header, json::serialize(payload), JwsAlg::es256, signing);
  if (!jws) throw std::runtime_error("test pki: " + jws.error().message);
  auto jwe = encrypt_jwe(*jws, kek);
  if (!jwe) throw std::runtime_error("test pki: " + jwe.error().message);
  return *jwe;
}

}  // namespace agora::attest::test_pki
