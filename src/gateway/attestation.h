// The gateway's attestation verifiers, built from its configuration: one
// per kind of evidence ("nvidia_cc", "play_integrity"), present only when
// the operator configured its pinned root or keys (docs/SECURITY.md,
// "Attestation levels"); and the challenge / evidence lifecycle of the
// nodes that offer evidence (AttestationLifecycle, below).
#pragma once

#include <boost/json.hpp>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "attest/verifier.h"
#include "common/result.h"
#include "common/timer.h"
#include "gateway/gateway.h"
#include "gateway/metrics.h"
#include "gateway/provider_link.h"
#include "gateway/router.h"

namespace agora::gateway {

using Verifiers = std::map<std::string, std::shared_ptr<const attest::AttestationVerifier>, std::less<>>;

// Errors: invalid_argument or not_found naming the setting (an unreadable
// root or key file, a key of the wrong size or type, a missing package).
Result<Verifiers> load_verifiers(const GatewayConfig& config);

// The attestation lifecycle of every node that offers evidence, on the
// gateway's loop, sans-I/O (its timers from the TimerService, its
// verifications handed to Hooks::verify, its challenges sent on the node's
// ProviderLink):
//
//   hello offers "attestation": KIND
//     -> no verifier for KIND: status "unverifiable", level standard
//     -> challenge {nonce}           (fresh, single use, per connection)
//   evidence {nonce, kind, evidence | error}
//     -> verified: the verdict's level, until it expires; re-challenged
//        `refresh` before that (at most half the lifetime)
//     -> refused, or no answer within `timeout`: standard at once,
//        challenged again after `retry` (doubling, <= 1 h)
//   verdict expiry (no fresh evidence in time): standard at once.
//
// The evidence must carry SHA-256(nonce ‖ the node's X25519 identity key)
// (attest::evidence_nonce on the raw bytes), so it names the key clients
// seal to. Every change is logged, audited and counted; the node's level
// and listing live in the router (NodeInfo::level, NodeInfo::attestation).
class AttestationLifecycle {
 public:
  struct Settings {
    std::chrono::milliseconds timeout{60'000};    // evidence is due within this of a challenge
    std::chrono::milliseconds refresh{3'600'000};  // re-challenge this long before expiry
    std::chrono::milliseconds retry{60'000};      // after a failure (doubling, at most an hour)
  };
  struct Hooks {
    // Verifies off the loop; `done` must run on the loop (not inside verify).
    std::function<void(std::shared_ptr<const attest::AttestationVerifier> verifier, std::string evidence,
                       std::string expected_nonce, int64_t now_ms, std::function<void(Result<attest::Verdict>)> done)>
        verify;
    // The node's level changed: queued jobs may go to it, or have nowhere to go.
    std::function<void(const NodeInfo& node)> level_changed;
    std::function<void(std::string kind, std::string provider_id, boost::json::object data)> audit;
    // Ends the node's session (an evidence flood).
    std::function<void(ConnId conn, std::string reason)> close;
  };

  AttestationLifecycle(Router& router, TimerService& timers, Metrics& metrics, Verifiers verifiers, Settings settings,
                       Hooks hooks);
  const Verifiers& verifiers() const { return verifiers_; }

  // The node (in the router already) offered `kind` in its hello.
  void start(ConnId conn, ProviderLink& link, const std::string& kind);
  void on_evidence(ConnId conn, protocol::Evidence e);
  // The node's session ended.
  void end(ConnId conn);

 private:
  struct NodeState {
    ProviderLink* link = nullptr;
    std::string nonce;  // the outstanding challenge ("" none)
    int64_t challenged_ms = 0;
    int failures = 0;    // in a row
    int verifying = 0;   // evidence on the verification thread
    int unexpected = 0;  // evidence frames for no outstanding challenge
    std::unique_ptr<Timer> timer;  // the next event: evidence due, verdict expiry, re-challenge
  };
  NodeState* live(ConnId conn, NodeInfo*& info);
  int64_t now_ms() const { return timers_.clock().unix_millis(); }
  void challenge(ConnId conn, NodeState& s, NodeInfo& info);
  void verified(ConnId conn, protocol::Evidence e, Result<attest::Verdict> verdict);
  void lost(ConnId conn, NodeState& s, NodeInfo& info, const char* status, const std::string& why);
  void due(ConnId conn);
  void arm(ConnId conn, NodeState& s, const NodeInfo& info);

  Router& router_;
  TimerService& timers_;
  Metrics& metrics_;
  Verifiers verifiers_;
  Settings settings_;
  Hooks hooks_;
  attest::NonceRegistry nonces_;  // by connection id
  std::unordered_map<ConnId, NodeState> nodes_;
};

}  // namespace agora::gateway
