// JOSE for the attestation verifiers: ES256/ES384 only (alg none, HS*,
// another curve and a public key used as an HMAC secret are refused),
// every change to a JWS or JWE is refused, base64url is strict.
#include "attest/jose.h"

#include <gtest/gtest.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "crypto/random.h"

namespace agora::attest {
namespace {

namespace json = boost::json;

Pkey ec_key(const char* curve) {
  return Pkey(EVP_EC_gen(curve));
}

std::string flip_part(std::string token, size_t part, size_t at = 3) {
  size_t start = 0;
  for (size_t i = 0; i < part; ++i) start = token.find('.', start) + 1;
  char& c = token[start + at];
  c = c == 'A' ? 'B' : 'A';
  return token;
}

TEST(Base64Url, RoundTripsAndIsStrict) {
  for (std::string s : {"", "f", "fo", "foo", "foob", "\xff\xfe\xfd"}) {
    EXPECT_EQ(*base64url_decode(base64url_encode(s)), s);
  }
  EXPECT_EQ(base64url_encode("\xfb\xff"), "-_8");
  EXPECT_FALSE(base64url_decode("-_8="));  // no padding
  EXPECT_FALSE(base64url_decode("+/8"));   // not the url alphabet
  EXPECT_FALSE(base64url_decode("a"));
}

TEST(Jws, Es256AndEs384VerifyAndEveryChangeIsRefused) {
  for (auto [alg, curve, name] : {std::tuple{JwsAlg::es256, "P-256", "ES256"}, std::tuple{JwsAlg::es384, "P-384", "ES384"}}) {
    SCOPED_TRACE(name);
    auto key = ec_key(curve);
    ASSERT_TRUE(key);
    auto token = sign_jws(json::object{{"alg", name}, {"typ", "JWT"}}, R"({"nonce":"abc"})", alg, key.get());
    ASSERT_TRUE(token) << token.error().to_string();
    auto jws = parse_jws(*token);
    ASSERT_TRUE(jws);
    EXPECT_EQ(jws->payload, R"({"nonce":"abc"})");
    EXPECT_TRUE(verify_jws(*jws, alg, key.get()));
    for (size_t part : {0, 1, 2}) {
      auto bad = parse_jws(flip_part(*token, part));
      if (bad) EXPECT_FALSE(verify_jws(*bad, alg, key.get())) << "part " << part;
    }
    auto other = ec_key(curve);
    EXPECT_FALSE(verify_jws(*jws, alg, other.get()));                       // another key
    EXPECT_FALSE(verify_jws(*jws, alg == JwsAlg::es256 ? JwsAlg::es384 : JwsAlg::es256, key.get()));
  }
}

TEST(Jws, AlgNoneHmacAndForeignCurvesAreRefused) {
  auto key = ec_key("P-384");
  // alg none: an empty signature.
  const std::string none = base64url_encode(R"({"alg":"none"})") + "." + base64url_encode("{}") + ".";
  auto n = parse_jws(none);
  ASSERT_TRUE(n);
  EXPECT_FALSE(verify_jws(*n, JwsAlg::es384, key.get()));
  // HS384 keyed with the public key's PEM: the classic confusion attack.
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, key.get());
  char* pem = nullptr;
  const long pem_len = BIO_get_mem_data(bio, &pem);
  const std::string input = base64url_encode(R"({"alg":"HS384"})") + "." + base64url_encode("{}");
  unsigned char mac[48];
  unsigned int mac_len = 0;
  HMAC(EVP_sha384(), pem, static_cast<int>(pem_len), reinterpret_cast<const unsigned char*>(input.data()),
       input.size(), mac, &mac_len);
  BIO_free(bio);
  auto h = parse_jws(input + "." + base64url_encode(std::string(reinterpret_cast<char*>(mac), mac_len)));
  ASSERT_TRUE(h);
  EXPECT_FALSE(verify_jws(*h, JwsAlg::es384, key.get()));
  // An ES384 header over a P-256 key, and an RSA key.
  auto p256 = ec_key("P-256");
  auto t = sign_jws(json::object{{"alg", "ES256"}}, "{}", JwsAlg::es256, p256.get());
  auto j = parse_jws(*t);
  j->header["alg"] = "ES384";
  EXPECT_FALSE(verify_jws(*j, JwsAlg::es384, p256.get()));
  Pkey rsa(EVP_RSA_gen(2048));
  EXPECT_FALSE(verify_jws(*parse_jws(*t), JwsAlg::es256, rsa.get()));
  EXPECT_FALSE(parse_jws("a.b"));
  EXPECT_FALSE(parse_jws("!!.e30.e30"));
}

TEST(Jwe, A256KwA256GcmRoundTripsAndEveryChangeIsRefused) {
  const std::string kek = crypto::random_bytes(32);
  auto token = encrypt_jwe(R"({"requestDetails":{"nonce":"n"}})", kek);
  ASSERT_TRUE(token);
  EXPECT_EQ(*decrypt_jwe(*token, kek), R"({"requestDetails":{"nonce":"n"}})");
  for (size_t part : {0, 1, 2, 3, 4}) EXPECT_FALSE(decrypt_jwe(flip_part(*token, part, 2), kek)) << "part " << part;
  EXPECT_FALSE(decrypt_jwe(*token, crypto::random_bytes(32)));
  // Another algorithm in the header is refused before any key is used.
  const std::string dir = base64url_encode(R"({"alg":"dir","enc":"A256GCM"})") + token->substr(token->find('.'));
  EXPECT_EQ(decrypt_jwe(dir, kek).error().code, Errc::invalid_argument);
  EXPECT_FALSE(decrypt_jwe("a.b.c", kek));
}

}  // namespace
}  // namespace agora::attest
