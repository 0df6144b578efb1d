// The gateway's verifiers from its settings, and the attestation lifecycle
// (attestation.h).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>

#include "common/file.h"
#include "common/log.h"
#include "common/text.h"
#include "crypto/encoding.h"
#include "gateway/attestation.h"

namespace agora::gateway {
namespace {

Result<std::string> read_setting_file(const std::optional<std::filesystem::path>& path, const char* key) {
  auto text = read_file(*path, 1u << 20);
  if (!text) return make_error(text.error().code, std::string(key) + ": " + text.error().message);
  return std::move(*text);
}

constexpr int64_t kMaxRetryMs = 3600LL * 1000;
constexpr int kMaxUnexpectedEvidence = 8;

// A reason for logs, the audit trail and listings: node-supplied text (a
// claim's value, the node's own error) is cut to a bounded length at a
// character boundary.
std::string bounded(std::string why) {
  constexpr size_t kMax = 512;
  if (why.size() <= kMax) return why;
  size_t cut = kMax;
  while (cut > 0 && (static_cast<unsigned char>(why[cut]) & 0xC0) == 0x80) --cut;
  why.resize(cut);
  return why + "…";
}

}  // namespace

Result<Verifiers> load_verifiers(const GatewayConfig& c) {
  Verifiers out;
  if (c.nvidia_root_cert) {
    auto pem = read_setting_file(c.nvidia_root_cert, "nvidia_root_cert");
    if (!pem) return pem.error();
    if (c.nvidia_hw_models.empty()) {
      return make_error(Errc::invalid_argument, "nvidia_hw_models: list at least one GPU model to accept");
    }
    attest::NvidiaPolicy p;
    p.root_pem = std::move(*pem);
    p.hw_models = c.nvidia_hw_models;
    p.min_driver_version = c.nvidia_min_driver;
    p.verdict_lifetime_ms = c.attestation_lifetime.count();
    auto v = attest::make_nvidia_verifier(std::move(p));
    if (!v) return make_error(Errc::invalid_argument, "nvidia_root_cert: " + v.error().message);
    out.emplace("nvidia_cc", std::move(*v));
  }
  const bool play = c.play_integrity_decryption_key || c.play_integrity_verification_key;
  if (play) {
    if (!c.play_integrity_decryption_key || !c.play_integrity_verification_key) {
      return make_error(Errc::invalid_argument,
                        "play_integrity_decryption_key and play_integrity_verification_key must be given together");
    }
    if (c.play_integrity_package.empty() || c.play_integrity_cert_sha256.empty()) {
      return make_error(Errc::invalid_argument,
                        "Play Integrity needs play_integrity_package and play_integrity_cert_sha256");
    }
    auto kek_text = read_setting_file(c.play_integrity_decryption_key, "play_integrity_decryption_key");
    if (!kek_text) return kek_text.error();
    auto kek = crypto::from_base64(trim(*kek_text));
    if (!kek || kek->size() != 32) {
      return make_error(Errc::invalid_argument,
                        "play_integrity_decryption_key: the file must hold a base64 AES-256 key (32 bytes)");
    }
    auto key_text = read_setting_file(c.play_integrity_verification_key, "play_integrity_verification_key");
    if (!key_text) return key_text.error();
    Result<attest::Pkey> key = make_error(Errc::invalid_argument, "");
    if (key_text->find("-----BEGIN") != std::string::npos) {
      key = attest::public_key_from_pem(*key_text);
    } else if (auto der = crypto::from_base64(trim(*key_text))) {
      key = attest::public_key_from_der(*der);
    }
    if (!key) {
      return make_error(Errc::invalid_argument,
                        "play_integrity_verification_key: the file must hold an EC public key (base64 DER or PEM)");
    }
    attest::PlayIntegrityPolicy p;
    p.decryption_key = std::move(*kek);
    p.verification_key = std::move(*key);
    p.package_name = c.play_integrity_package;
    p.certificate_sha256 = c.play_integrity_cert_sha256;
    p.require_strong = c.play_integrity_strong;
    p.verdict_lifetime_ms = c.attestation_lifetime.count();
    out.emplace("play_integrity", attest::make_play_integrity_verifier(std::move(p)));
  }
  return out;
}

AttestationLifecycle::AttestationLifecycle(Router& router, TimerService& timers, Metrics& metrics, Verifiers verifiers,
                                           Settings settings, Hooks hooks)
    : router_(router),
      timers_(timers),
      metrics_(metrics),
      verifiers_(std::move(verifiers)),
      settings_(settings),
      hooks_(std::move(hooks)),
      // A nonce outlives the time a node has to answer it.
      nonces_(std::max<int64_t>(5 * 60 * 1000, settings.timeout.count() + 60'000)) {}

AttestationLifecycle::NodeState* AttestationLifecycle::live(ConnId conn, NodeInfo*& info) {
  auto it = nodes_.find(conn);
  info = router_.find(conn);
  if (it == nodes_.end() || !info || !it->second.link->open()) return nullptr;
  return &it->second;
}

void AttestationLifecycle::start(ConnId conn, ProviderLink& link, const std::string& kind) {
  NodeInfo* info = router_.find(conn);
  if (!info || kind.empty()) return;
  info->attestation.kind = kind;
  if (!verifiers_.contains(kind)) {
    info->attestation.status = "unverifiable";
    info->attestation.error = "this gateway has no " + kind + " verifier configured";
    spdlog::info("node_attestation_unverifiable node={} kind={}", info->node_id, kind);
    return;
  }
  NodeState& s = nodes_[conn];
  s.link = &link;
  s.timer = timers_.make_timer([this, conn] { due(conn); });
  challenge(conn, s, *info);
  arm(conn, s, *info);
}

void AttestationLifecycle::end(ConnId conn) {
  nodes_.erase(conn);  // its timer with it
  nonces_.forget(std::to_string(conn));
}

void AttestationLifecycle::challenge(ConnId conn, NodeState& s, NodeInfo& info) {
  const int64_t now = now_ms();
  s.nonce = nonces_.issue(std::to_string(conn), now);
  s.challenged_ms = now;
  if (info.attestation.status != "verified") info.attestation.status = "pending";
  s.link->send_challenge(s.nonce);
  spdlog::info("node_challenged node={} kind={}", info.node_id, info.attestation.kind);
}

void AttestationLifecycle::on_evidence(ConnId conn, protocol::Evidence e) {
  NodeInfo* info = nullptr;
  NodeState* s = live(conn, info);
  if (!s) return;
  const int64_t now = now_ms();
  if (s->nonce.empty() || e.nonce != s->nonce || !nonces_.consume(std::to_string(conn), e.nonce, now)) {
    // Late (after the timeout), replayed or never asked for: ignored; a
    // node that keeps sending them is cut off (bounded log lines).
    if (++s->unexpected > kMaxUnexpectedEvidence) {
      spdlog::warn("node_evidence_flood node={} reason=\"too many evidence frames for no challenge\"", info->node_id);
      if (hooks_.close) hooks_.close(conn, "too many evidence frames for no challenge");
      return;
    }
    spdlog::warn("node_evidence_unexpected node={} reason=\"not the outstanding challenge\"", info->node_id);
    return;
  }
  s->nonce.clear();
  auto finish = [&](const char* status, const std::string& why) {
    lost(conn, *s, *info, status, why);
    arm(conn, *s, *info);
  };
  if (e.kind != info->attestation.kind) {
    return finish("failed", "evidence of kind " + e.kind + " after a hello offering " + info->attestation.kind);
  }
  if (!e.error.empty()) return finish("failed", "the node could not produce evidence: " + e.error);
  auto it = verifiers_.find(e.kind);
  if (it == verifiers_.end()) return finish("failed", "no verifier for " + e.kind);
  const std::string expected =
      attest::evidence_nonce(*crypto::from_hex(e.nonce), crypto::from_hex(info->identity_key).value_or(""));
  // Verification takes milliseconds of P-384 signatures (a few per GPU;
  // docs/BENCHMARKS.md): never on the loop. No new challenge is sent until
  // the answer is back; a live verdict still expires on time meanwhile.
  ++s->verifying;
  std::string evidence = e.evidence;
  hooks_.verify(it->second, std::move(evidence), expected, now,
                [this, conn, e = std::move(e)](Result<attest::Verdict> verdict) mutable {
                  verified(conn, std::move(e), std::move(verdict));
                });
}

void AttestationLifecycle::verified(ConnId conn, protocol::Evidence e, Result<attest::Verdict> verdict) {
  auto it = nodes_.find(conn);
  if (it == nodes_.end()) return;  // the session ended meanwhile
  --it->second.verifying;
  NodeInfo* info = nullptr;
  NodeState* s = live(conn, info);
  if (!s) return;
  if (!verdict) {
    lost(conn, *s, *info, "failed", verdict.error().message);
    arm(conn, *s, *info);
    return;
  }
  Level level = Level::standard;
  parse_level(verdict->level, level);
  NodeAttestation& a = info->attestation;
  a.status = "verified";
  a.error.clear();
  a.verified_ms = verdict->verified_ms;
  a.expires_ms = verdict->expires_ms;
  a.summary = verdict->summary;
  a.evidence = std::move(e.evidence);
  a.nonce = std::move(e.nonce);
  const int64_t lifetime = a.expires_ms - a.verified_ms;
  a.next_challenge_ms = a.expires_ms - std::min<int64_t>(settings_.refresh.count(), lifetime / 2);
  s->failures = 0;
  metrics_.attestation("verified");
  const bool changed = info->level != level;
  router_.set_level(conn, level);
  spdlog::info("node_attested node={} provider={} kind={} level={} expires_ms={}", info->node_id, info->provider_id,
               e.kind, verdict->level, a.expires_ms);
  if (hooks_.audit) {
    hooks_.audit("provider.attested", info->provider_id,
                 boost::json::object{{"node_id", info->node_id},
                                     {"kind", e.kind},
                                     {"level", verdict->level},
                                     {"verified_ms", a.verified_ms},
                                     {"expires_ms", a.expires_ms},
                                     {"summary", a.summary}});
  }
  arm(conn, *s, *info);
  // Requests queued for this level may go to it now.
  if (changed && hooks_.level_changed) hooks_.level_changed(*info);
}

void AttestationLifecycle::lost(ConnId conn, NodeState& s, NodeInfo& info, const char* status, const std::string& why) {
  NodeAttestation& a = info.attestation;
  const Level before = info.level;
  router_.set_level(conn, Level::standard);
  a.status = status;
  a.error = bounded(why);
  a.verified_ms = a.expires_ms = 0;
  a.summary.clear();
  a.evidence.clear();
  a.nonce.clear();
  if (std::string_view(status) != "expired") ++s.failures;  // expiry is the lack of news, not a refusal
  metrics_.attestation(status);
  const int64_t retry =
      std::min<int64_t>(kMaxRetryMs, settings_.retry.count() << std::clamp(s.failures - 1, 0, 20));
  a.next_challenge_ms = now_ms() + retry;
  spdlog::warn("node_attestation_{} node={} provider={} kind={} level_was={} retry_ms={} reason={}", status,
               info.node_id, info.provider_id, a.kind, level_name(before), retry, logfmt_value(a.error));
  if (hooks_.audit) {
    hooks_.audit(std::string("provider.attestation_") + status, info.provider_id,
                 boost::json::object{
                     {"node_id", info.node_id}, {"kind", a.kind}, {"level_was", level_name(before)}, {"reason", a.error}});
  }
  // Queued requests that needed this node's level may have nowhere to go now.
  if (before != Level::standard && hooks_.level_changed) hooks_.level_changed(info);
}

void AttestationLifecycle::due(ConnId conn) {
  NodeInfo* info = nullptr;
  NodeState* s = live(conn, info);
  if (!s) return;
  const int64_t now = now_ms();
  if (!s->nonce.empty() && now >= s->challenged_ms + settings_.timeout.count()) {
    nonces_.forget(std::to_string(conn));
    s->nonce.clear();
    lost(conn, *s, *info, "failed",
         "no evidence within " + std::to_string(settings_.timeout.count()) + " ms of the challenge");
  }
  if (info->attestation.status == "verified" && now >= info->attestation.expires_ms) {
    lost(conn, *s, *info, "expired", "the verdict expired before fresh evidence verified");
  }
  if (s->nonce.empty() && s->verifying == 0 && now >= info->attestation.next_challenge_ms) challenge(conn, *s, *info);
  arm(conn, *s, *info);
}

void AttestationLifecycle::arm(ConnId conn, NodeState& s, const NodeInfo& info) {
  (void)conn;
  const NodeAttestation& a = info.attestation;
  int64_t due_ms = s.nonce.empty() ? a.next_challenge_ms : s.challenged_ms + settings_.timeout.count();
  if (s.verifying > 0) due_ms = std::numeric_limits<int64_t>::max();  // verified() re-arms
  if (a.status == "verified") due_ms = std::min(due_ms, a.expires_ms);
  if (due_ms == std::numeric_limits<int64_t>::max()) {
    s.timer->cancel();
    return;
  }
  const auto wait = std::chrono::milliseconds(std::max<int64_t>(0, due_ms - now_ms()));
  s.timer->arm(timers_.clock().now() + wait);
}

}  // namespace agora::gateway
