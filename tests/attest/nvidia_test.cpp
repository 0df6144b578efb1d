// The NVIDIA confidential-computing verifier against NRAS-shaped EAT
// bundles minted here, with a test root, an intermediate and signing
// certificates made at test time: a good bundle gives a "confidential"
// verdict; every deviation the issue lists is refused with its reason.
#include <gtest/gtest.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <chrono>

#include "attest/verifier.h"
#include "common/clock.h"
#include "crypto/encoding.h"
#include "crypto/sha256.h"
#include "test_pki.h"

namespace agora::attest {
namespace {

namespace json = boost::json;

using namespace test_pki;

class Nvidia : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = make_cert("Test NRAS Root", nullptr, true, "critical,keyCertSign,cRLSign");
    inter_ = make_cert("Test NRAS Intermediate", &root_, true, "critical,keyCertSign,cRLSign");
    leaf_ = make_cert("Test NRAS Signer", &inter_, false, "critical,digitalSignature");
    NvidiaPolicy p;
    p.root_pem = pem(root_.x509);
    p.hw_models = {"GH100 A01 GSP BROM"};
    p.min_driver_version = "550.54.15";
    auto v = make_nvidia_verifier(p);
    ASSERT_TRUE(v);
    verifier_ = std::move(*v);
    nonce_ = evidence_nonce("gateway nonce", std::string(32, '\x05'));
    now_ = SystemClock::instance().unix_millis();
  }

  json::object gpu_claims() const { return test_pki::gpu_claims(nonce_, now_ / 1000); }
  std::string sign(const json::object& claims, const Cert& signer, std::vector<const Cert*> chain,
                   json::object header = {{"alg", "ES384"}}) const {
    return sign_with_chain(claims, signer, chain, std::move(header));
  }
  std::string gpu_token(json::object claims) const { return sign(claims, leaf_, {&leaf_, &inter_}); }
  // The bundle over `gpus`; `tweak` edits the overall claims.
  std::string bundle(const std::map<std::string, std::string>& gpus,
                     const std::function<void(json::object&)>& tweak = {}) const {
    return eat_bundle(nonce_, now_ / 1000, gpus, leaf_, {&leaf_, &inter_}, tweak);
  }
  ::testing::AssertionResult refused(const std::string& evidence, const std::string& why) const {
    auto r = verifier_->verify(evidence, nonce_, now_);
    if (r) return ::testing::AssertionFailure() << "accepted";
    if (r.error().message.find(why) == std::string::npos) {
      return ::testing::AssertionFailure() << "refused for another reason: " << r.error().message;
    }
    return ::testing::AssertionSuccess();
  }

  Cert root_, inter_, leaf_;
  std::unique_ptr<AttestationVerifier> verifier_;
  std::string nonce_;
  int64_t now_ = 0;
};

TEST_F(Nvidia, AGoodBundleGivesAConfidentialVerdict) {
  const auto t0 = gpu_token(gpu_claims()), t1 = gpu_token(gpu_claims());
  auto v = verifier_->verify(bundle({{"GPU-0", t0}, {"GPU-1", t1}}), nonce_, now_);
  ASSERT_TRUE(v) << v.error().to_string();
  EXPECT_EQ(v->level, "confidential");
  EXPECT_EQ(v->kind, "nvidia_cc");
  // The tokens expire within the hour: so does the verdict (not in 24 h).
  EXPECT_EQ(v->expires_ms, (now_ / 1000 + 3600) * 1000);
}

TEST_F(Nvidia, NonceAndTimesAreChecked) {
  EXPECT_TRUE(refused(bundle({{"GPU-0", gpu_token(gpu_claims())}}, [](json::object& o) { o["eat_nonce"] = "x"; }),
                      "eat_nonce"));
  auto c = gpu_claims();
  c["eat_nonce"] = "other";
  EXPECT_TRUE(refused(bundle({{"GPU-0", gpu_token(c)}}), "eat_nonce"));
  const int64_t s = now_ / 1000;
  EXPECT_TRUE(refused(bundle({{"GPU-0", gpu_token(gpu_claims())}}, [&](json::object& o) { o["exp"] = s - 3600; }),
                      "expired"));
  EXPECT_TRUE(refused(bundle({{"GPU-0", gpu_token(gpu_claims())}}, [&](json::object& o) { o["nbf"] = s + 3600; }),
                      "not valid yet"));
}

TEST_F(Nvidia, OnlyEs384SignedUnderThePinnedRootWithTheRightKeyUsage) {
  const auto good = gpu_token(gpu_claims());
  // alg none / HS384 headers on the device token: refused (only ES384).
  std::string none = base64url_encode(R"({"alg":"none"})") + "." + base64url_encode(json::serialize(gpu_claims())) + ".";
  EXPECT_TRUE(refused(bundle({{"GPU-0", none}}), "x5c"));
  EXPECT_TRUE(refused(bundle({{"GPU-0", sign(gpu_claims(), leaf_, {&leaf_, &inter_}, {{"alg", "HS384"}})}}),
                      "algorithm"));
  // A chain to a foreign root.
  Cert foreign_root = make_cert("Foreign Root", nullptr, true, "critical,keyCertSign,cRLSign");
  Cert foreign_leaf = make_cert("Foreign Signer", &foreign_root, false, "critical,digitalSignature");
  EXPECT_TRUE(refused(bundle({{"GPU-0", sign(gpu_claims(), foreign_leaf, {&foreign_leaf, &foreign_root})}}),
                      "does not validate to the pinned root"));
  // A signing certificate without digitalSignature.
  Cert no_ku = make_cert("No KU Signer", &inter_, false, "critical,keyEncipherment");
  EXPECT_TRUE(refused(bundle({{"GPU-0", sign(gpu_claims(), no_ku, {&no_ku, &inter_})}}), "digitalSignature"));
  // A token signed by a key other than its certificate's.
  Cert other = make_cert("Other", &inter_, false, "critical,digitalSignature");
  auto mixed = sign(gpu_claims(), other, {&leaf_, &inter_});
  EXPECT_TRUE(refused(bundle({{"GPU-0", mixed}}), "signature"));
  EXPECT_TRUE(verifier_->verify(bundle({{"GPU-0", good}}), nonce_, now_));
}

// A changed header, payload or signature of either token: refused (the
// overall token's signature, or the device token's digest and signature).
TEST_F(Nvidia, TamperingWithAnyPartOfEitherTokenIsRefused) {
  const auto t0 = gpu_token(gpu_claims());
  auto flip = [](std::string token, size_t part) {
    size_t start = 0;
    for (size_t i = 0; i < part; ++i) start = token.find('.', start) + 1;
    char& c = token[start + 4];
    c = c == 'A' ? 'B' : 'A';
    return token;
  };
  for (size_t part = 0; part < 3; ++part) {
    SCOPED_TRACE("part " + std::to_string(part));
    // The device token changed after the overall token vouched for it.
    const std::string good = bundle({{"GPU-0", t0}});
    json::value v = json::parse(good);
    auto& devices = v.as_array()[1].as_object();
    devices["GPU-0"] = flip(t0, part);
    EXPECT_FALSE(verifier_->verify(json::serialize(v), nonce_, now_));
    // The overall token changed.
    json::value w = json::parse(good);
    auto& head = w.as_array()[0].as_array();
    head[1] = flip(std::string(head[1].as_string()), part);
    EXPECT_FALSE(verifier_->verify(json::serialize(w), nonce_, now_));
  }
  // Unchanged, the same bundle verifies.
  EXPECT_TRUE(verifier_->verify(bundle({{"GPU-0", t0}}), nonce_, now_));
}

TEST_F(Nvidia, TheOverallResultAndTheSubmodulesMustAgree) {
  const auto t0 = gpu_token(gpu_claims()), t1 = gpu_token(gpu_claims());
  EXPECT_TRUE(refused(bundle({{"GPU-0", t0}}, [](json::object& o) { o["x-nvidia-overall-att-result"] = false; }),
                      "overall attestation result"));
  // A submodule listed but its device token missing, and an extra one.
  EXPECT_TRUE(refused(bundle({{"GPU-0", t0}}, [&](json::object& o) {
                        o["submods"].as_object()["GPU-1"] = json::array{"DIGEST", json::array{"SHA256", crypto::sha256_hex(t1)}};
                      }),
                      "missing or extra"));
  EXPECT_TRUE(refused(bundle({{"GPU-0", t0}, {"GPU-1", t1}}, [](json::object& o) { o["submods"].as_object().erase("GPU-1"); }),
                      "missing or extra"));
  // A digest that does not match its device token.
  EXPECT_TRUE(refused(bundle({{"GPU-0", t0}}, [&](json::object& o) {
                        o["submods"].as_object()["GPU-0"] = json::array{"DIGEST", json::array{"SHA256", crypto::sha256_hex(t1)}};
                      }),
                      "does not match its digest"));
}

TEST_F(Nvidia, EachGpuMustMeetThePolicy) {
  auto with = [&](const char* k, json::value v) {
    auto c = gpu_claims();
    c[k] = std::move(v);
    return bundle({{"GPU-0", gpu_token(c)}});
  };
  EXPECT_TRUE(refused(with("measres", "fail"), "measres"));
  EXPECT_TRUE(refused(with("secboot", false), "secure boot"));
  EXPECT_TRUE(refused(with("dbgstat", "enabled"), "debug is enabled"));
  EXPECT_TRUE(refused(with("hwmodel", "Unknown GPU"), "not allowed"));
  EXPECT_TRUE(refused(with("x-nvidia-gpu-driver-version", "535.104.05"), "older than"));
  EXPECT_TRUE(verifier_->verify(with("x-nvidia-gpu-driver-version", "550.54.15"), nonce_, now_));
}

// The certificate chain is judged at the verification's injected time, not
// the system clock's: evidence whose tokens are fresh at `now` but whose
// signer's certificate has expired by then is refused, and a chain cached
// while valid is not reused past its end.
TEST_F(Nvidia, CertificatesAreCheckedAtTheInjectedTime) {
  const Cert short_leaf = make_cert("Test NRAS Signer (1 h)", &inter_, false, "critical,digitalSignature", 3600);
  auto evidence_at = [&](int64_t at_ms) {
    json::object gpu = test_pki::gpu_claims(nonce_, at_ms / 1000);
    const std::string t0 = sign(gpu, short_leaf, {&short_leaf, &inter_});
    return eat_bundle(nonce_, at_ms / 1000, {{"GPU-0", t0}}, short_leaf, {&short_leaf, &inter_}, {});
  };
  EXPECT_TRUE(verifier_->verify(evidence_at(now_), nonce_, now_));  // cached as valid for an hour
  const int64_t later = now_ + 2 * 3600 * 1000;
  auto r = verifier_->verify(evidence_at(later), nonce_, later);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("certificate has expired"), std::string::npos) << r.error().message;
}

// Found by fuzzing (tests/fuzz/corpus/nvidia_claims/regress_exp_overflow.json):
// an exp near INT64_MAX overflowed exp + leeway (undefined behaviour), and a
// non-integer nbf was ignored. Times must be integer NumericDates.
TEST(EatClaims, TimesMustBeIntegerNumericDates) {
  const std::string nonce = "n";
  const int64_t now_ms = 1'800'000'000'000, now_s = now_ms / 1000;
  auto check = [&](json::object c) {
    c["eat_nonce"] = nonce;
    return check_eat_claims(json::serialize(c), nonce, now_ms, 60, "token");
  };
  EXPECT_TRUE(check({{"exp", now_s + 10}, {"nbf", now_s - 10}}).ok());
  EXPECT_TRUE(check({{"exp", now_s + 10}}).ok());  // nbf is optional
  for (const json::value& bad : {json::value(INT64_MAX), json::value(UINT64_MAX), json::value(-1), json::value(1e12),
                                 json::value("9999999999"), json::value(253402300800)}) {
    auto r = check({{"exp", bad}});
    ASSERT_FALSE(r.ok()) << json::serialize(bad);
    EXPECT_NE(r.error().message.find("no exp"), std::string::npos);
    r = check({{"exp", now_s + 10}, {"nbf", bad}});
    ASSERT_FALSE(r.ok()) << json::serialize(bad);
    EXPECT_NE(r.error().message.find("nbf"), std::string::npos);
  }
  EXPECT_FALSE(check({{"exp", now_s - 61}}).ok());              // expired beyond the leeway
  EXPECT_FALSE(check({{"exp", now_s + 10}, {"nbf", now_s + 61}}).ok());  // not yet valid
}

TEST(CompareVersions, NumericPartByPart) {
  EXPECT_EQ(compare_versions("550.54.15", "550.100.1"), -1);
  EXPECT_EQ(compare_versions("550.54.15", "550.54.15"), 0);
  EXPECT_EQ(compare_versions("551", "550.99.99"), 1);
  EXPECT_EQ(compare_versions("550.54", "550.54.0"), 0);
  EXPECT_EQ(compare_versions("550.x", "550.0"), -1);
}

}  // namespace
}  // namespace agora::attest
