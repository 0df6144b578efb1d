// Attestation lifecycle on the gateway's loop (gateway/internal.h):
//
//   hello offers "attestation": KIND
//     -> no verifier for KIND: status "unverifiable", level standard
//     -> challenge {nonce}           (fresh, single use, per connection)
//   evidence {nonce, kind, evidence | error}
//     -> verified: the verdict's level, until it expires; re-challenged
//        attestation_refresh before that (at most half the lifetime)
//     -> refused, or no answer within attestation_timeout: standard at
//        once, challenged again after attestation_retry (doubling, <= 1 h)
//   verdict expiry (no fresh evidence in time): standard at once.
//
// The evidence must carry SHA-256(nonce ‖ the node's X25519 identity key)
// (attest::evidence_nonce on the raw bytes), so it names the key clients
// seal to. Every change is logged and audited.
#include <spdlog/spdlog.h>

#include <limits>

#include "common/file.h"
#include "common/log.h"
#include "common/text.h"
#include "crypto/encoding.h"
#include "gateway/internal.h"

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

void GatewayImpl::attestation_start(const std::shared_ptr<NodeConn>& n, const std::string& kind) {
  NodeInfo* info = router_.find(n->id);
  if (!info || kind.empty()) return;
  info->attestation.kind = kind;
  if (!verifiers_.contains(kind)) {
    info->attestation.status = "unverifiable";
    info->attestation.error = "this gateway has no " + kind + " verifier configured";
    spdlog::info("node_attestation_unverifiable node={} kind={}", n->node_id, kind);
    return;
  }
  n->attest_timer = std::make_unique<asio::steady_timer>(io_);
  challenge(*n);
  arm_attestation(n);
}

void GatewayImpl::challenge(NodeConn& n) {
  NodeInfo* info = router_.find(n.id);
  if (!info) return;
  const int64_t now = clock_.unix_millis();
  n.attest_nonce = nonces_.issue(std::to_string(n.id), now);
  n.challenged_ms = now;
  if (info->attestation.status != "verified") info->attestation.status = "pending";
  n.send_challenge(n.attest_nonce);
  spdlog::info("node_challenged node={} kind={}", n.node_id, info->attestation.kind);
}

void GatewayImpl::on_evidence(NodeConn& n, protocol::Evidence e) {
  NodeInfo* info = router_.find(n.id);
  if (!info) return;
  const int64_t now = clock_.unix_millis();
  if (n.attest_nonce.empty() || e.nonce != n.attest_nonce || !nonces_.consume(std::to_string(n.id), e.nonce, now)) {
    // Late (after the timeout), replayed or never asked for: ignored; a
    // node that keeps sending them is cut off (bounded log lines).
    if (++n.attest_unexpected > kMaxUnexpectedEvidence) {
      spdlog::warn("node_evidence_flood node={} reason=\"too many evidence frames for no challenge\"", n.node_id);
      n.close_reason = "too many evidence frames for no challenge";
      n.close(net::ws::kClosePolicy);
      return;
    }
    spdlog::warn("node_evidence_unexpected node={} reason=\"not the outstanding challenge\"", n.node_id);
    return;
  }
  n.attest_nonce.clear();
  std::shared_ptr<NodeConn> conn = n.shared_from_this();
  auto finish = [&](const char* status, const std::string& why) {
    attestation_lost(n, status, why);
    arm_attestation(conn);
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
  ++n.attest_verifying;
  asio::post(*attest_pool_, [weak = weak_from_this(), wn = std::weak_ptr<NodeConn>(conn), verifier = it->second,
                             e = std::move(e), expected, now, &io = io_]() mutable {
    auto verdict = verifier->verify(e.evidence, expected, now);
    asio::post(io, [weak, wn, e = std::move(e), verdict = std::move(verdict)]() mutable {
      auto self = weak.lock();
      auto c = wn.lock();
      if (!self || !c) return;
      --c->attest_verifying;
      self->evidence_verified(c, std::move(e), std::move(verdict));
    });
  });
}

void GatewayImpl::evidence_verified(const std::shared_ptr<NodeConn>& conn, protocol::Evidence e,
                                    Result<attest::Verdict> verdict) {
  NodeConn& n = *conn;
  NodeInfo* info = router_.find(n.id);
  if (!info || n.closing) return;
  if (!verdict) {
    attestation_lost(n, "failed", verdict.error().message);
    arm_attestation(conn);
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
  a.next_challenge_ms = a.expires_ms - std::min<int64_t>(config_.attestation_refresh.count(), lifetime / 2);
  n.attest_failures = 0;
  metrics_.attestation("verified");
  const bool changed = info->level != level;
  router_.set_level(n.id, level);
  spdlog::info("node_attested node={} provider={} kind={} level={} expires_ms={}", n.node_id, n.provider_id,
               e.kind, verdict->level, a.expires_ms);
  audit("provider.attested", n.provider_id,
        boost::json::object{{"node_id", n.node_id},
                            {"kind", e.kind},
                            {"level", verdict->level},
                            {"verified_ms", a.verified_ms},
                            {"expires_ms", a.expires_ms},
                            {"summary", a.summary}});
  arm_attestation(conn);
  if (changed) {
    // Requests queued for this level may go to it now.
    scheduler_.drain_models_of(*info);
    nodes_changed();
  }
}

void GatewayImpl::attestation_lost(NodeConn& n, const char* status, const std::string& why) {
  NodeInfo* info = router_.find(n.id);
  if (!info) return;
  NodeAttestation& a = info->attestation;
  const Level before = info->level;
  router_.set_level(n.id, Level::standard);
  a.status = status;
  a.error = bounded(why);
  a.verified_ms = a.expires_ms = 0;
  a.summary.clear();
  a.evidence.clear();
  a.nonce.clear();
  if (std::string_view(status) != "expired") ++n.attest_failures;  // expiry is the lack of news, not a refusal
  metrics_.attestation(status);
  const int64_t retry = std::min<int64_t>(
      kMaxRetryMs, config_.attestation_retry.count() << std::clamp(n.attest_failures - 1, 0, 20));
  a.next_challenge_ms = clock_.unix_millis() + retry;
  spdlog::warn("node_attestation_{} node={} provider={} kind={} level_was={} retry_ms={} reason={}", status,
               n.node_id, n.provider_id, a.kind, level_name(before), retry, logfmt_value(a.error));
  audit(std::string("provider.attestation_") + status, n.provider_id,
        boost::json::object{{"node_id", n.node_id}, {"kind", a.kind}, {"level_was", level_name(before)}, {"reason", a.error}});
  // Queued requests that needed this node's level may have nowhere to go now.
  if (before != Level::standard) {
    scheduler_.drain_models_of(*info);
    nodes_changed();
  }
}

void GatewayImpl::attestation_due(const std::shared_ptr<NodeConn>& n) {
  NodeInfo* info = router_.find(n->id);
  if (!info || n->closing) return;
  const int64_t now = clock_.unix_millis();
  if (!n->attest_nonce.empty() && now >= n->challenged_ms + config_.attestation_timeout.count()) {
    nonces_.forget(std::to_string(n->id));
    n->attest_nonce.clear();
    attestation_lost(*n, "failed",
                     "no evidence within " + std::to_string(config_.attestation_timeout.count()) + " ms of the challenge");
  }
  if (info->attestation.status == "verified" && now >= info->attestation.expires_ms) {
    attestation_lost(*n, "expired", "the verdict expired before fresh evidence verified");
  }
  if (n->attest_nonce.empty() && n->attest_verifying == 0 && now >= info->attestation.next_challenge_ms) challenge(*n);
  arm_attestation(n);
}

void GatewayImpl::arm_attestation(const std::shared_ptr<NodeConn>& n) {
  const NodeInfo* info = router_.find(n->id);
  if (!info || !n->attest_timer || n->closing) return;
  const NodeAttestation& a = info->attestation;
  int64_t due = n->attest_nonce.empty() ? a.next_challenge_ms : n->challenged_ms + config_.attestation_timeout.count();
  if (n->attest_verifying > 0) due = std::numeric_limits<int64_t>::max();  // evidence_verified re-arms
  if (a.status == "verified") due = std::min(due, a.expires_ms);
  if (due == std::numeric_limits<int64_t>::max()) return;
  const int64_t wait = std::max<int64_t>(0, due - clock_.unix_millis());
  n->attest_timer->expires_after(std::chrono::milliseconds(wait));
  n->attest_timer->async_wait([weak = weak_from_this(), wn = std::weak_ptr<NodeConn>(n)](boost::system::error_code ec) {
    auto self = weak.lock();
    auto conn = wn.lock();
    if (ec || !self || !conn) return;
    self->attestation_due(conn);
  });
}

void GatewayImpl::attestation_end(NodeConn& n) {
  if (n.attest_timer) n.attest_timer->cancel();
  nonces_.forget(std::to_string(n.id));
}

}  // namespace agora::gateway
