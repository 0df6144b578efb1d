#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <boost/json.hpp>
#include <charconv>
#include <ctime>
#include <limits>
#include <mutex>
#include <map>
#include <optional>

#include "attest/verifier.h"
#include "crypto/encoding.h"
#include "crypto/sha256.h"

namespace agora::attest {
namespace json = boost::json;

namespace {

Error refuse(std::string why) { return make_error(Errc::invalid_argument, "nvidia attestation: " + std::move(why)); }

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;

class NvidiaVerifier final : public AttestationVerifier {
 public:
  NvidiaVerifier(NvidiaPolicy p, X509Ptr root) : p_(std::move(p)), root_(std::move(root)) {}
  std::string_view kind() const override { return "nvidia_cc"; }

  Result<Verdict> verify(std::string_view evidence, std::string_view expected_nonce, int64_t now_ms) const override {
    boost::system::error_code ec;
    json::value v = json::parse(evidence, ec);
    if (ec || !v.is_array() || v.get_array().size() != 2) return refuse("not an EAT bundle [[\"JWT\", token], {…}]");
    const auto& arr = v.get_array();
    const auto* head = arr[0].if_array();
    const auto* gpus = arr[1].if_object();
    if (!head || head->size() != 2 || !(*head)[0].is_string() || (*head)[0].get_string() != "JWT" ||
        !(*head)[1].is_string() || !gpus) {
      return refuse("not an EAT bundle [[\"JWT\", token], {…}]");
    }
    auto overall = verified_claims((*head)[1].get_string(), expected_nonce, now_ms, "the overall token");
    if (!overall) return overall.error();
    // A verdict never outlives the tokens it rests on.
    int64_t tokens_expire_ms = overall->at("exp").get_int64() * 1000;
    const auto* result = overall->if_contains("x-nvidia-overall-att-result");
    if (!result || !result->is_bool() || !result->get_bool()) return refuse("the overall attestation result is not true");
    const auto* submods = overall->if_contains("submods");
    if (!submods || !submods->is_object()) return refuse("the overall token lists no submodules");
    if (submods->get_object().size() != gpus->size()) {
      return refuse("the overall token's submodules and the device tokens differ (one missing or extra)");
    }
    if (gpus->empty()) return refuse("no GPU in the bundle");
    for (const auto& [name, token] : *gpus) {
      const auto* sub = submods->get_object().if_contains(name);
      if (!sub) return refuse("device token " + std::string(name) + " is not among the overall token's submodules");
      // ["DIGEST", ["SHA256", "<hex>"]]
      const auto* d = sub->if_array();
      const json::array* alg = d && d->size() == 2 ? (*d)[1].if_array() : nullptr;
      if (!alg || !(*d)[0].is_string() || (*d)[0].get_string() != "DIGEST" || alg->size() != 2 ||
          !(*alg)[0].is_string() || (*alg)[0].get_string() != "SHA256" || !(*alg)[1].is_string() || !token.is_string()) {
        return refuse("submodule " + std::string(name) + " has no SHA256 digest");
      }
      std::string want(std::string((*alg)[1].get_string()));
      for (auto& c : want) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (crypto::sha256_hex(token.get_string()) != want) {
        return refuse("device token " + std::string(name) + " does not match its digest in the overall token");
      }
      auto claims = verified_claims(token.get_string(), expected_nonce, now_ms, "device token " + std::string(name));
      if (!claims) return claims.error();
      tokens_expire_ms = std::min(tokens_expire_ms, claims->at("exp").get_int64() * 1000);
      if (Status st = check_gpu_claims(std::string(name), *claims, p_); !st) return st.error();
    }
    Verdict out;
    out.level = "confidential";
    out.kind = "nvidia_cc";
    out.verified_ms = now_ms;
    out.expires_ms = std::min(now_ms + p_.verdict_lifetime_ms, tokens_expire_ms);
    out.summary = std::to_string(gpus->size()) + " GPU(s) in confidential-computing mode";
    return out;
  }

 private:
  // An ES384 JWS whose x5c chain validates to the root; its claims, with
  // nonce and validity times checked.
  Result<json::object> verified_claims(std::string_view token, std::string_view nonce, int64_t now_ms,
                                       const std::string& what) const {
    auto jws = parse_jws(token);
    if (!jws) return refuse(what + ": " + jws.error().message);
    auto leaf = validate_chain(jws->header, what, now_ms);
    if (!leaf) return leaf.error();
    Pkey key(X509_get_pubkey(leaf->get()));
    if (Status st = verify_jws(*jws, JwsAlg::es384, key.get()); !st) return refuse(what + ": " + st.error().message);
    return check_eat_claims(jws->payload, nonce, now_ms, p_.leeway_s, what);
  }

  Result<X509Ptr> validate_chain(const json::object& header, const std::string& what, int64_t now_ms) const {
    const auto* x5c = header.if_contains("x5c");
    if (!x5c || !x5c->is_array() || x5c->get_array().empty()) return refuse(what + ": no x5c certificate chain");
    // Every token of a bundle (and of every node) carries NRAS's same chain:
    // one that validated is remembered until its first certificate expires,
    // which saves two P-384 verifications per token.
    std::string chain_id;
    for (const auto& c : x5c->get_array()) {
      if (c.is_string()) chain_id.append(c.get_string().data(), c.get_string().size());
      chain_id += ',';
    }
    chain_id = crypto::sha256_hex(chain_id);
    // The injected time, never the system clock: certificates are checked
    // at the verification's `now_ms`, as the tokens' claims are.
    const time_t now = static_cast<time_t>(now_ms / 1000);
    {
      std::lock_guard lock(cache_mutex_);
      if (auto it = chains_.find(chain_id); it != chains_.end() && now < it->second.valid_until) {
        X509_up_ref(it->second.leaf.get());
        return X509Ptr(it->second.leaf.get());
      }
    }
    std::vector<X509Ptr> certs;
    for (const auto& c : x5c->get_array()) {
      if (!c.is_string()) return refuse(what + ": x5c must hold base64 certificates");
      auto der = crypto::from_base64(c.get_string());
      if (!der) return refuse(what + ": an x5c entry is not base64");
      const unsigned char* p = reinterpret_cast<const unsigned char*>(der->data());
      X509* x = d2i_X509(nullptr, &p, static_cast<long>(der->size()));
      if (!x) return refuse(what + ": an x5c entry is not a certificate");
      certs.emplace_back(x);
    }
    X509_STORE* store = X509_STORE_new();
    X509_STORE_add_cert(store, root_.get());
    STACK_OF(X509)* chain = sk_X509_new_null();
    for (size_t i = 1; i < certs.size(); ++i) sk_X509_push(chain, certs[i].get());
    X509_STORE_CTX* ctx = X509_STORE_CTX_new();
    bool ok = ctx && X509_STORE_CTX_init(ctx, store, certs[0].get(), chain) == 1;
    if (ok) {
      // Only the pinned root anchors the chain; CA constraints and key usage
      // are enforced by the verifier; the tokens' own times are checked by
      // the caller against the claims.
      X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx);
      X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_X509_STRICT);
      X509_VERIFY_PARAM_set_time(param, now);
      ok = X509_verify_cert(ctx) == 1;
    }
    const int err = ctx ? X509_STORE_CTX_get_error(ctx) : 0;
    X509_STORE_CTX_free(ctx);
    sk_X509_free(chain);
    X509_STORE_free(store);
    if (!ok) {
      return refuse(what + ": the certificate chain does not validate to the pinned root (" +
                    X509_verify_cert_error_string(err) + ")");
    }
    // The signing certificate must be meant for signatures.
    const uint32_t ku = X509_get_key_usage(certs[0].get());
    if (ku == UINT32_MAX || (ku & KU_DIGITAL_SIGNATURE) == 0) {
      return refuse(what + ": the signing certificate lacks the digitalSignature key usage");
    }
    time_t valid_until = std::numeric_limits<time_t>::max();
    ASN1_TIME* at = ASN1_TIME_set(nullptr, now);
    for (const auto& c : certs) {
      // The earliest notAfter among the chain.
      const ASN1_TIME* na = X509_get0_notAfter(c.get());
      int days = 0, secs = 0;
      if (!at || ASN1_TIME_diff(&days, &secs, at, na) != 1) valid_until = now;
      else valid_until = std::min<time_t>(valid_until, now + static_cast<time_t>(days) * 86400 + secs);
    }
    ASN1_TIME_free(at);
    {
      std::lock_guard lock(cache_mutex_);
      if (chains_.size() >= 64) chains_.clear();
      X509_up_ref(certs[0].get());
      chains_[chain_id] = CachedChain{X509Ptr(certs[0].get()), valid_until};
    }
    return std::move(certs[0]);
  }

  NvidiaPolicy p_;
  X509Ptr root_;
  struct CachedChain {
    X509Ptr leaf;
    time_t valid_until = 0;
  };
  mutable std::mutex cache_mutex_;
  mutable std::map<std::string, CachedChain> chains_;  // by SHA-256 of the x5c entries
};

}  // namespace

Result<json::object> check_eat_claims(std::string_view payload, std::string_view nonce, int64_t now_ms, int64_t leeway_s,
                                      const std::string& what) {
  boost::system::error_code ec;
  json::value v = json::parse(payload, ec);
  if (ec || !v.is_object()) return refuse(what + ": the claims are not a JSON object");
  auto& o = v.get_object();
  const auto* n = o.if_contains("eat_nonce");
  if (!n || !n->is_string() || n->get_string() != nonce) return refuse(what + ": eat_nonce is not the nonce issued");
  const int64_t now_s = now_ms / 1000;
  // NumericDates (RFC 7519 §2) as whole seconds from 1970 to the end of year
  // 9999: anything else is refused, so the arithmetic below and the
  // verdict's expiry in milliseconds cannot overflow.
  constexpr int64_t kMaxNumericDate = 253402300799;
  auto date = [](const json::value* v) -> std::optional<int64_t> {
    if (!v || !v->is_int64() || v->get_int64() < 0 || v->get_int64() > kMaxNumericDate) return std::nullopt;
    return v->get_int64();
  };
  const auto exp = date(o.if_contains("exp"));
  if (!exp) return refuse(what + ": no exp (an integer NumericDate)");
  if (now_s > *exp + leeway_s) return refuse(what + ": expired");
  if (const auto* nbf_v = o.if_contains("nbf")) {
    const auto nbf = date(nbf_v);
    if (!nbf) return refuse(what + ": nbf is not an integer NumericDate");
    if (now_s + leeway_s < *nbf) return refuse(what + ": not valid yet");
  }
  return std::move(o);
}

Status check_gpu_claims(const std::string& name, const json::object& c, const NvidiaPolicy& p) {
  auto str = [&](const char* k) {
    const auto* v = c.if_contains(k);
    return v && v->is_string() ? std::string(v->get_string()) : std::string();
  };
  if (str("measres") != "success") return refuse(name + ": measurements do not match (measres)");
  const auto* secboot = c.if_contains("secboot");
  if (!secboot || !secboot->is_bool() || !secboot->get_bool()) return refuse(name + ": secure boot is off");
  if (str("dbgstat") != "disabled") return refuse(name + ": debug is enabled");
  const std::string hw = str("hwmodel");
  if (std::find(p.hw_models.begin(), p.hw_models.end(), hw) == p.hw_models.end()) {
    return refuse(name + ": hwmodel '" + hw + "' is not allowed");
  }
  const std::string driver = str("x-nvidia-gpu-driver-version");
  if (driver.empty() || compare_versions(driver, p.min_driver_version) < 0) {
    return refuse(name + ": driver " + (driver.empty() ? std::string("(none)") : driver) + " is older than " +
                  p.min_driver_version);
  }
  return ok_status();
}

int compare_versions(std::string_view a, std::string_view b) {
  auto next = [](std::string_view& s) -> long long {
    size_t dot = s.find('.');
    std::string_view part = s.substr(0, dot);
    s = dot == std::string_view::npos ? std::string_view() : s.substr(dot + 1);
    long long v = -1;
    auto [p, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
    if (ec != std::errc{} || p != part.data() + part.size()) return -1;
    return v;
  };
  while (!a.empty() || !b.empty()) {
    const long long x = a.empty() ? 0 : next(a);
    const long long y = b.empty() ? 0 : next(b);
    if (x != y) return x < y ? -1 : 1;
  }
  return 0;
}

Result<std::unique_ptr<AttestationVerifier>> make_nvidia_verifier(NvidiaPolicy policy) {
  BIO* bio = BIO_new_mem_buf(policy.root_pem.data(), static_cast<int>(policy.root_pem.size()));
  X509* root = bio ? PEM_read_bio_X509(bio, nullptr, nullptr, nullptr) : nullptr;
  BIO_free(bio);
  if (!root) return make_error(Errc::invalid_argument, "nvidia attestation: the pinned root is not a PEM certificate");
  return std::unique_ptr<AttestationVerifier>(new NvidiaVerifier(std::move(policy), X509Ptr(root)));
}

}  // namespace agora::attest
