#include "attest/jose.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "crypto/aead.h"
#include "crypto/encoding.h"
#include "crypto/random.h"

namespace agora::attest {
namespace json = boost::json;

namespace {

const unsigned char* u8(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

struct Params {
  const EVP_MD* md;
  const char* name;
  size_t half;  // bytes of r (and of s)
  const char* curve;
};
Params params(JwsAlg a) {
  return a == JwsAlg::es256 ? Params{EVP_sha256(), "ES256", 32, "prime256v1"}
                            : Params{EVP_sha384(), "ES384", 48, "secp384r1"};
}

std::string curve_of(EVP_PKEY* key) {
  char name[64] = {0};
  size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof name, &len) != 1) return {};
  return std::string(name, len);
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t end = s.find(sep, start);
    out.push_back(s.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return out;
}

}  // namespace

std::string base64url_encode(std::string_view bytes) {
  std::string s = crypto::to_base64(bytes);
  for (auto& c : s) {
    if (c == '+') c = '-';
    else if (c == '/') c = '_';
  }
  while (!s.empty() && s.back() == '=') s.pop_back();
  return s;
}

std::optional<std::string> base64url_decode(std::string_view text) {
  std::string s(text);
  for (auto& c : s) {
    if (c == '-') c = '+';
    else if (c == '_') c = '/';
    else if (c == '+' || c == '/' || c == '=') return std::nullopt;
  }
  if (s.size() % 4 == 1) return std::nullopt;
  while (s.size() % 4 != 0) s += '=';
  return crypto::from_base64(s);
}

Result<Pkey> public_key_from_pem(std::string_view pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (!bio) return make_error(Errc::internal, "jose: out of memory");
  EVP_PKEY* k = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (!k) return make_error(Errc::invalid_argument, "jose: not a PEM public key");
  return Pkey(k);
}

Result<Pkey> public_key_from_der(std::string_view der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  EVP_PKEY* k = d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size()));
  if (!k) return make_error(Errc::invalid_argument, "jose: not a DER public key");
  return Pkey(k);
}

Result<Jws> parse_jws(std::string_view compact) {
  auto parts = split(compact, '.');
  if (parts.size() != 3) return make_error(Errc::invalid_argument, "jws: not three dot-separated parts");
  auto header = base64url_decode(parts[0]);
  auto payload = base64url_decode(parts[1]);
  auto sig = base64url_decode(parts[2]);
  if (!header || !payload || !sig) return make_error(Errc::invalid_argument, "jws: a part is not base64url");
  boost::system::error_code ec;
  json::value h = json::parse(*header, ec);
  if (ec || !h.is_object()) return make_error(Errc::invalid_argument, "jws: the header is not a JSON object");
  Jws out;
  out.header = std::move(h.get_object());
  out.payload = std::move(*payload);
  out.signing_input = std::string(parts[0]) + "." + std::string(parts[1]);
  out.signature = std::move(*sig);
  return out;
}

Status verify_jws(const Jws& jws, JwsAlg alg, EVP_PKEY* key) {
  const Params p = params(alg);
  const auto* a = jws.header.if_contains("alg");
  if (!a || !a->is_string() || a->get_string() != p.name) {
    return make_error(Errc::invalid_argument, std::string("jws: the algorithm must be ") + p.name);
  }
  if (!key || EVP_PKEY_get_base_id(key) != EVP_PKEY_EC || curve_of(key) != p.curve) {
    return make_error(Errc::invalid_argument, std::string("jws: the key is not on the curve ") + p.name + " needs");
  }
  if (jws.signature.size() != 2 * p.half) return make_error(Errc::invalid_argument, "jws: the signature has the wrong size");
  // JWS carries r || s; OpenSSL verifies DER.
  ECDSA_SIG* sig = ECDSA_SIG_new();
  BIGNUM* r = BN_bin2bn(u8(jws.signature), static_cast<int>(p.half), nullptr);
  BIGNUM* s = BN_bin2bn(u8(jws.signature) + p.half, static_cast<int>(p.half), nullptr);
  if (!sig || !r || !s || ECDSA_SIG_set0(sig, r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return make_error(Errc::internal, "jws: out of memory");
  }
  unsigned char* der = nullptr;
  const int der_len = i2d_ECDSA_SIG(sig, &der);
  ECDSA_SIG_free(sig);
  if (der_len <= 0) return make_error(Errc::internal, "jws: cannot encode the signature");
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok = ctx && EVP_DigestVerifyInit(ctx, nullptr, p.md, nullptr, key) == 1 &&
                  EVP_DigestVerify(ctx, der, static_cast<size_t>(der_len), u8(jws.signing_input),
                                   jws.signing_input.size()) == 1;
  EVP_MD_CTX_free(ctx);
  OPENSSL_free(der);
  if (!ok) return make_error(Errc::invalid_argument, "jws: the signature does not verify");
  return ok_status();
}

Result<std::string> sign_jws(const json::object& header, std::string_view payload, JwsAlg alg, EVP_PKEY* key) {
  const Params p = params(alg);
  const std::string input = base64url_encode(json::serialize(header)) + "." + base64url_encode(payload);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  size_t len = 0;
  std::string der;
  bool ok = ctx && EVP_DigestSignInit(ctx, nullptr, p.md, nullptr, key) == 1 &&
            EVP_DigestSign(ctx, nullptr, &len, u8(input), input.size()) == 1;
  if (ok) {
    der.resize(len);
    ok = EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(der.data()), &len, u8(input), input.size()) == 1;
    der.resize(len);
  }
  EVP_MD_CTX_free(ctx);
  if (!ok) return make_error(Errc::internal, "jws: signing failed");
  const unsigned char* q = u8(der);
  ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &q, static_cast<long>(der.size()));
  if (!sig) return make_error(Errc::internal, "jws: signing failed");
  std::string raw(2 * p.half, '\0');
  BN_bn2binpad(ECDSA_SIG_get0_r(sig), reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(p.half));
  BN_bn2binpad(ECDSA_SIG_get0_s(sig), reinterpret_cast<unsigned char*>(raw.data()) + p.half, static_cast<int>(p.half));
  ECDSA_SIG_free(sig);
  return input + "." + base64url_encode(raw);
}

namespace {

// RFC 3394 AES key wrap with a 256-bit KEK.
Result<std::string> key_wrap(std::string_view kek, std::string_view key, bool wrap) {
  if (kek.size() != 32) return make_error(Errc::invalid_argument, "jwe: the key-encryption key must be 32 bytes");
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  std::string out(key.size() + 8, '\0');
  int len = 0, fin = 0;
  bool ok = ctx != nullptr;
  if (ok) EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  ok = ok && (wrap ? EVP_EncryptInit_ex(ctx, EVP_aes_256_wrap(), nullptr, u8(kek), nullptr)
                   : EVP_DecryptInit_ex(ctx, EVP_aes_256_wrap(), nullptr, u8(kek), nullptr)) == 1;
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  ok = ok && (wrap ? EVP_EncryptUpdate(ctx, o, &len, u8(key), static_cast<int>(key.size()))
                   : EVP_DecryptUpdate(ctx, o, &len, u8(key), static_cast<int>(key.size()))) == 1;
  ok = ok && (wrap ? EVP_EncryptFinal_ex(ctx, o + len, &fin) : EVP_DecryptFinal_ex(ctx, o + len, &fin)) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok || len <= 0) {
    return make_error(wrap ? Errc::internal : Errc::corrupt,
                      wrap ? "jwe: key wrap failed" : "jwe: the content key does not unwrap (wrong key, or altered)");
  }
  out.resize(static_cast<size_t>(len + fin));
  return out;
}

}  // namespace

Result<std::string> decrypt_jwe(std::string_view compact, std::string_view kek) {
  auto parts = split(compact, '.');
  if (parts.size() != 5) return make_error(Errc::invalid_argument, "jwe: not five dot-separated parts");
  auto header = base64url_decode(parts[0]);
  auto wrapped = base64url_decode(parts[1]);
  auto iv = base64url_decode(parts[2]);
  auto ct = base64url_decode(parts[3]);
  auto tag = base64url_decode(parts[4]);
  if (!header || !wrapped || !iv || !ct || !tag) return make_error(Errc::invalid_argument, "jwe: a part is not base64url");
  boost::system::error_code ec;
  json::value h = json::parse(*header, ec);
  if (ec || !h.is_object()) return make_error(Errc::invalid_argument, "jwe: the header is not a JSON object");
  const auto* alg = h.get_object().if_contains("alg");
  const auto* enc = h.get_object().if_contains("enc");
  if (!alg || !alg->is_string() || alg->get_string() != "A256KW" || !enc || !enc->is_string() ||
      enc->get_string() != "A256GCM") {
    return make_error(Errc::invalid_argument, "jwe: only alg A256KW with enc A256GCM is accepted");
  }
  if (iv->size() != crypto::kAeadNonceBytes || tag->size() != crypto::kAeadTagBytes) {
    return make_error(Errc::invalid_argument, "jwe: the IV or tag has the wrong size");
  }
  auto cek = key_wrap(kek, *wrapped, /*wrap=*/false);
  if (!cek) return cek.error();
  if (cek->size() != 32) return make_error(Errc::corrupt, "jwe: the content key is not 32 bytes");
  // The AAD is the protected header exactly as sent (its base64url text).
  auto pt = crypto::aead_open(crypto::AeadAlgorithm::aes256gcm, *cek, *iv, parts[0], *ct + *tag);
  crypto::secure_wipe(*cek);
  if (!pt) return make_error(Errc::corrupt, "jwe: the content does not decrypt (altered, or the wrong key)");
  return pt;
}

Result<std::string> encrypt_jwe(std::string_view plaintext, std::string_view kek) {
  const std::string header = base64url_encode(R"({"alg":"A256KW","enc":"A256GCM"})");
  std::string cek = crypto::random_bytes(32);
  auto wrapped = key_wrap(kek, cek, /*wrap=*/true);
  if (!wrapped) return wrapped.error();
  const std::string iv = crypto::random_bytes(crypto::kAeadNonceBytes);
  auto sealed = crypto::aead_seal(crypto::AeadAlgorithm::aes256gcm, cek, iv, header, plaintext);
  crypto::secure_wipe(cek);
  if (!sealed) return sealed.error();
  const std::string ct = sealed->substr(0, sealed->size() - crypto::kAeadTagBytes);
  const std::string tag = sealed->substr(sealed->size() - crypto::kAeadTagBytes);
  return header + "." + base64url_encode(*wrapped) + "." + base64url_encode(iv) + "." + base64url_encode(ct) + "." +
         base64url_encode(tag);
}

}  // namespace agora::attest
