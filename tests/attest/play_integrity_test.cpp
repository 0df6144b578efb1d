// The Play Integrity verifier (locally decrypted mode), against tokens the
// test mints with keys made at test time: a good token gives a "verified"
// verdict; every deviation the issue lists is refused with its reason.
#include <gtest/gtest.h>
#include <openssl/ec.h>

#include "attest/verifier.h"
#include "crypto/random.h"
#include "test_pki.h"

namespace agora::attest {
namespace {

namespace json = boost::json;

constexpr int64_t kNow = 1'796'000'000'000;
const std::string kPackage = "net.agora.provider";
const std::string kCert = "Zm9vYmFyLWNlcnQtZGlnZXN0LWJhc2U2NHVybA";

struct Keys {
  std::string kek = crypto::random_bytes(32);
  Pkey signing{EVP_EC_gen("P-256")};
};

json::object verdict_payload(const std::string& nonce) { return test_pki::play_payload(nonce, kNow, kPackage, kCert); }

std::string mint(const Keys& k, const json::object& payload, json::object header = {{"alg", "ES256"}}) {
  return test_pki::play_token(payload, k.kek, k.signing.get(), std::move(header));
}

class PlayIntegrity : public ::testing::Test {
 protected:
  void SetUp() override { verifier_ = make(false); }
  std::unique_ptr<AttestationVerifier> make(bool strong) {
    PlayIntegrityPolicy p;
    p.decryption_key = keys_.kek;
    // The verifier holds its own reference to the public half.
    EVP_PKEY_up_ref(keys_.signing.get());
    p.verification_key = Pkey(keys_.signing.get());
    p.package_name = kPackage;
    p.certificate_sha256 = kCert;
    p.require_strong = strong;
    return make_play_integrity_verifier(std::move(p));
  }
  Result<Verdict> check(const std::string& token) const { return verifier_->verify(token, nonce_, kNow); }
  ::testing::AssertionResult refused(const std::string& token, const std::string& why) const {
    auto r = check(token);
    if (r) return ::testing::AssertionFailure() << "accepted";
    if (r.error().message.find(why) == std::string::npos) {
      return ::testing::AssertionFailure() << "refused for another reason: " << r.error().message;
    }
    return ::testing::AssertionSuccess();
  }

  Keys keys_;
  std::string nonce_ = evidence_nonce("gateway-nonce", std::string(32, '\x07'));
  std::unique_ptr<AttestationVerifier> verifier_;
};

TEST_F(PlayIntegrity, AGoodTokenGivesAVerifiedVerdict) {
  auto v = check(mint(keys_, verdict_payload(nonce_)));
  ASSERT_TRUE(v) << v.error().to_string();
  EXPECT_EQ(v->level, "verified");
  EXPECT_EQ(v->kind, "play_integrity");
  EXPECT_EQ(v->expires_ms, kNow + 24LL * 3600 * 1000);
}

TEST_F(PlayIntegrity, NonceAndTimeAreChecked) {
  EXPECT_TRUE(refused(mint(keys_, verdict_payload(evidence_nonce("other", std::string(32, '\x07')))), "nonce"));
  auto old = verdict_payload(nonce_);
  old["requestDetails"].as_object()["timestampMillis"] = kNow - 6 * 60 * 1000;
  EXPECT_TRUE(refused(mint(keys_, old), "too old"));
  auto future = verdict_payload(nonce_);
  future["requestDetails"].as_object()["timestampMillis"] = kNow + 2 * 60 * 1000;
  EXPECT_TRUE(refused(mint(keys_, future), "future"));
}

TEST_F(PlayIntegrity, ANonceIsUsedOnce) {
  NonceRegistry nonces;
  const std::string n = nonces.issue("node-1", kNow);
  EXPECT_FALSE(nonces.consume("node-2", n, kNow));  // another node's nonce
  EXPECT_TRUE(nonces.consume("node-1", n, kNow));
  EXPECT_FALSE(nonces.consume("node-1", n, kNow));  // replayed
  const std::string late = nonces.issue("node-1", kNow);
  EXPECT_FALSE(nonces.consume("node-1", late, kNow + 6 * 60 * 1000));  // expired
}

TEST_F(PlayIntegrity, TamperingWithAnyPartIsRefused) {
  const std::string token = mint(keys_, verdict_payload(nonce_));
  size_t start = 0;
  for (int part = 0; part < 5; ++part) {
    std::string bad = token;
    bad[start + 2] = bad[start + 2] == 'A' ? 'B' : 'A';
    EXPECT_FALSE(check(bad)) << "JWE part " << part;
    start = token.find('.', start) + 1;
  }
  // A JWS inside with a changed payload (re-encrypted with the right key).
  auto jws = sign_jws(json::object{{"alg", "ES256"}}, json::serialize(verdict_payload(nonce_)), JwsAlg::es256,
                      keys_.signing.get());
  std::string forged = *jws;
  const size_t dot = forged.find('.');
  forged[dot + 5] = forged[dot + 5] == 'A' ? 'B' : 'A';
  EXPECT_TRUE(refused(*encrypt_jwe(forged, keys_.kek), "signature"));
}

TEST_F(PlayIntegrity, WrongKeysAndAlgorithmsAreRefused) {
  Keys other;
  other.kek = keys_.kek;  // encrypted right, signed by another key
  EXPECT_TRUE(refused(mint(other, verdict_payload(nonce_)), "signature"));
  Keys wrong_kek;
  EVP_PKEY_up_ref(keys_.signing.get());
  wrong_kek.signing = Pkey(keys_.signing.get());  // the right signer, another encryption key
  EXPECT_TRUE(refused(mint(wrong_kek, verdict_payload(nonce_)), "unwrap"));
  const std::string none = base64url_encode(R"({"alg":"none"})") + "." +
                           base64url_encode(json::serialize(verdict_payload(nonce_))) + ".";
  EXPECT_TRUE(refused(*encrypt_jwe(none, keys_.kek), "algorithm"));
  EXPECT_TRUE(refused(mint(keys_, verdict_payload(nonce_), {{"alg", "ES384"}}), "algorithm"));
}

TEST_F(PlayIntegrity, PackageCertificateAndIntegrityAreEnforced) {
  auto p = verdict_payload(nonce_);
  p["requestDetails"].as_object()["requestPackageName"] = "com.evil";
  EXPECT_TRUE(refused(mint(keys_, p), "requestPackageName"));
  p = verdict_payload(nonce_);
  p["appIntegrity"].as_object()["packageName"] = "com.evil";
  EXPECT_TRUE(refused(mint(keys_, p), "packageName"));
  p = verdict_payload(nonce_);
  p["appIntegrity"].as_object()["appRecognitionVerdict"] = "UNRECOGNIZED_VERSION";
  EXPECT_TRUE(refused(mint(keys_, p), "PLAY_RECOGNIZED"));
  p = verdict_payload(nonce_);
  p["appIntegrity"].as_object()["certificateSha256Digest"] = json::array{"someone-else"};
  EXPECT_TRUE(refused(mint(keys_, p), "certificate digest"));
  p = verdict_payload(nonce_);
  p["deviceIntegrity"].as_object()["deviceRecognitionVerdict"] = json::array{"MEETS_BASIC_INTEGRITY"};
  EXPECT_TRUE(refused(mint(keys_, p), "MEETS_DEVICE_INTEGRITY"));
  p = verdict_payload(nonce_);
  p.erase("deviceIntegrity");
  EXPECT_TRUE(refused(mint(keys_, p), "MEETS_DEVICE_INTEGRITY"));
  // Strong integrity when the operator asks for it.
  verifier_ = make(true);
  EXPECT_TRUE(refused(mint(keys_, verdict_payload(nonce_)), "MEETS_STRONG_INTEGRITY"));
  p = verdict_payload(nonce_);
  p["deviceIntegrity"].as_object()["deviceRecognitionVerdict"] =
      json::array{"MEETS_DEVICE_INTEGRITY", "MEETS_STRONG_INTEGRITY"};
  EXPECT_TRUE(check(mint(keys_, p)));
}

}  // namespace
}  // namespace agora::attest
