#include "attest/verifier.h"

#include <charconv>

#include <boost/json.hpp>

#include "crypto/aead.h"
#include "crypto/ed25519.h"
#include "crypto/random.h"
#include "crypto/sha256.h"

namespace agora::attest {
namespace json = boost::json;

std::string evidence_nonce(std::string_view gateway_nonce, std::string_view node_public_key) {
  std::string input(gateway_nonce);
  input.append(node_public_key);
  return crypto::sha256_hex(input);
}

std::string NonceRegistry::issue(const std::string& node_id, int64_t now_ms) {
  std::string n = crypto::to_hex(crypto::random_bytes(32));
  issued_[node_id] = Issued{n, now_ms + lifetime_ms_};
  return n;
}

bool NonceRegistry::consume(const std::string& node_id, std::string_view nonce, int64_t now_ms) {
  auto it = issued_.find(node_id);
  if (it == issued_.end() || it->second.nonce != nonce) return false;
  const bool fresh = now_ms <= it->second.expires_ms;
  issued_.erase(it);  // used (or stale): never again
  return fresh;
}

namespace {

Error refuse(std::string why) { return make_error(Errc::invalid_argument, "play integrity: " + std::move(why)); }

const json::object* object_at(const json::object& o, std::string_view k) {
  const auto* v = o.if_contains(k);
  return v && v->is_object() ? &v->get_object() : nullptr;
}
std::string string_at(const json::object* o, std::string_view k) {
  const auto* v = o ? o->if_contains(k) : nullptr;
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}
bool array_contains(const json::object* o, std::string_view k, std::string_view want) {
  const auto* v = o ? o->if_contains(k) : nullptr;
  if (!v || !v->is_array()) return false;
  for (const auto& x : v->get_array()) {
    if (x.is_string() && x.get_string() == want) return true;
  }
  return false;
}

class PlayIntegrityVerifier final : public AttestationVerifier {
 public:
  explicit PlayIntegrityVerifier(PlayIntegrityPolicy p) : p_(std::move(p)) {}
  std::string_view kind() const override { return "play_integrity"; }

  Result<Verdict> verify(std::string_view evidence, std::string_view expected_nonce, int64_t now_ms) const override {
    auto inner = decrypt_jwe(evidence, p_.decryption_key);
    if (!inner) return refuse(inner.error().message);
    auto jws = parse_jws(*inner);
    if (!jws) return refuse(jws.error().message);
    if (Status st = verify_jws(*jws, JwsAlg::es256, p_.verification_key.get()); !st) return refuse(st.error().message);
    return check_play_integrity_payload(jws->payload, p_, expected_nonce, now_ms);
  }

 private:
  PlayIntegrityPolicy p_;
};

}  // namespace

Result<Verdict> check_play_integrity_payload(std::string_view payload, const PlayIntegrityPolicy& p,
                                           std::string_view expected_nonce, int64_t now_ms) {
  boost::system::error_code ec;
  json::value v = json::parse(payload, ec);
  if (ec || !v.is_object()) return refuse("the verdict is not a JSON object");
  const auto& o = v.get_object();
  const auto* req = object_at(o, "requestDetails");
  const auto* app = object_at(o, "appIntegrity");
  const auto* dev = object_at(o, "deviceIntegrity");
  if (!req) return refuse("no requestDetails");
  if (string_at(req, "nonce") != expected_nonce) return refuse("the nonce is not the one issued");
  const auto* ts = req->if_contains("timestampMillis");
  int64_t t = 0;
  if (ts && ts->is_int64()) t = ts->get_int64();
  else if (ts && ts->is_string()) {
    // Google sends it as a decimal string.
    const auto& str = ts->get_string();
    auto [end, err] = std::from_chars(str.data(), str.data() + str.size(), t);
    if (err != std::errc{} || end != str.data() + str.size()) return refuse("timestampMillis is not an integer");
  } else {
    return refuse("no timestampMillis");
  }
  if (t < now_ms - p.max_age_ms) return refuse("the verdict is too old");
  if (t > now_ms + p.max_future_ms) return refuse("the verdict is dated in the future");
  if (string_at(req, "requestPackageName") != p.package_name) return refuse("requestPackageName is not the configured package");
  if (!app) return refuse("no appIntegrity");
  if (string_at(app, "packageName") != p.package_name) return refuse("appIntegrity.packageName is not the configured package");
  if (string_at(app, "appRecognitionVerdict") != "PLAY_RECOGNIZED") return refuse("the app is not PLAY_RECOGNIZED");
  if (!array_contains(app, "certificateSha256Digest", p.certificate_sha256)) {
    return refuse("the app's signing certificate digest is not the configured one");
  }
  const char* need = p.require_strong ? "MEETS_STRONG_INTEGRITY" : "MEETS_DEVICE_INTEGRITY";
  if (!array_contains(dev, "deviceRecognitionVerdict", need)) return refuse(std::string("the device does not meet ") + need);
  Verdict out;
  out.level = "verified";
  out.kind = "play_integrity";
  out.verified_ms = now_ms;
  out.expires_ms = now_ms + p.verdict_lifetime_ms;
  out.summary = std::string("package ") + p.package_name + ", " + need;
  return out;
}

std::unique_ptr<AttestationVerifier> make_play_integrity_verifier(PlayIntegrityPolicy policy) {
  return std::make_unique<PlayIntegrityVerifier>(std::move(policy));
}

}  // namespace agora::attest
