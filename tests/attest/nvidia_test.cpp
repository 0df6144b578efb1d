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
#include "crypto/encoding.h"
#include "crypto/sha256.h"

namespace agora::attest {
namespace {

namespace json = boost::json;

struct Cert {
  Pkey key;
  X509* x509 = nullptr;
  Cert() = default;
  Cert(Cert&& o) noexcept : key(std::move(o.key)), x509(std::exchange(o.x509, nullptr)) {}
  Cert& operator=(Cert&& o) noexcept {
    if (this != &o) {
      X509_free(x509);
      key = std::move(o.key);
      x509 = std::exchange(o.x509, nullptr);
    }
    return *this;
  }
  ~Cert() { X509_free(x509); }
};

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  ASSERT_NE(ext, nullptr);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A certificate for a fresh P-384 key: self-signed when `issuer` is null.
Cert make_cert(const char* cn, const Cert* issuer, bool ca, const char* key_usage) {
  Cert c;
  c.key = Pkey(EVP_EC_gen("P-384"));
  c.x509 = X509_new();
  X509_set_version(c.x509, 2);
  static long serial = 1;
  ASN1_INTEGER_set(X509_get_serialNumber(c.x509), serial++);
  X509_gmtime_adj(X509_getm_notBefore(c.x509), -3600);
  X509_gmtime_adj(X509_getm_notAfter(c.x509), 3600);
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
  char* p = nullptr;
  const long n = BIO_get_mem_data(bio, &p);
  std::string out(p, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

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
    now_ = now_ms();
  }

  json::object gpu_claims() const {
    return {{"eat_nonce", nonce_},
            {"nbf", now_ / 1000 - 10},
            {"exp", now_ / 1000 + 3600},
            {"measres", "success"},
            {"secboot", true},
            {"dbgstat", "disabled"},
            {"hwmodel", "GH100 A01 GSP BROM"},
            {"x-nvidia-gpu-driver-version", "550.90.07"}};
  }
  std::string sign(const json::object& claims, const Cert& signer, std::vector<const Cert*> chain,
                   json::object header = {{"alg", "ES384"}}) const {
    json::array x5c;
    for (const Cert* c : chain) x5c.push_back(json::string(der_b64(c->x509)));
    header["x5c"] = std::move(x5c);
    auto t = sign_jws(header, json::serialize(claims), JwsAlg::es384, signer.key.get());
    EXPECT_TRUE(t);
    return *t;
  }
  std::string gpu_token(json::object claims) const { return sign(claims, leaf_, {&leaf_, &inter_}); }
  // The bundle over `gpus`; `tweak` edits the overall claims.
  std::string bundle(const std::map<std::string, std::string>& gpus,
                     const std::function<void(json::object&)>& tweak = {}) const {
    json::object submods;
    for (const auto& [name, tok] : gpus) {
      submods[name] = json::array{"DIGEST", json::array{"SHA256", crypto::sha256_hex(tok)}};
    }
    json::object overall{{"eat_nonce", nonce_},
                         {"nbf", now_ / 1000 - 10},
                         {"exp", now_ / 1000 + 3600},
                         {"x-nvidia-overall-att-result", true},
                         {"submods", std::move(submods)}};
    if (tweak) tweak(overall);
    json::object devices;
    for (const auto& [name, tok] : gpus) devices[name] = tok;
    return json::serialize(json::array{json::array{"JWT", sign(overall, leaf_, {&leaf_, &inter_})}, devices});
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

TEST(CompareVersions, NumericPartByPart) {
  EXPECT_EQ(compare_versions("550.54.15", "550.100.1"), -1);
  EXPECT_EQ(compare_versions("550.54.15", "550.54.15"), 0);
  EXPECT_EQ(compare_versions("551", "550.99.99"), 1);
  EXPECT_EQ(compare_versions("550.54", "550.54.0"), 0);
  EXPECT_EQ(compare_versions("550.x", "550.0"), -1);
}

}  // namespace
}  // namespace agora::attest
