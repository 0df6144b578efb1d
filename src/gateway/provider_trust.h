// Provider trust: which connected nodes may take jobs, by their provider's
// standing (active, suspended, revoked or terminated, from the credential
// table) and by the provider agreement (the version every node must have
// accepted, in its hello or with an Accept frame). A node is *held* (kept
// connected, given no new jobs) while it has not accepted the current
// version or its provider is suspended; a revoked or terminated provider's
// nodes are disconnected. Sans-I/O: what it decides goes out through Hooks
// (the gateway sends the frames, moves the router, writes the store), and
// tests/gateway/provider_trust_test.cpp drives it directly.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "gateway/credential_table.h"
#include "gateway/router.h"
#include "store/store.h"

namespace agora::gateway {

class ProviderTrust {
 public:
  struct Hooks {
    // Whether the node's session is still open: one that is closing is
    // going away and is left alone.
    std::function<bool(ConnId)> open;
    // Sends `frame` (an encoded agreement offer) to the node.
    std::function<void(ConnId, const std::string& frame)> send;
    // The node's provider was revoked or terminated: close its session.
    std::function<void(ConnId)> disconnect;
    // The node's hold changed (released nodes take queued jobs at once).
    std::function<void(ConnId, bool held)> set_held;
    // The node accepted the current agreement: persist both in one write.
    std::function<void(store::AcceptanceRecord, store::AuditEvent)> accepted;
  };

  // What join() decided for a node, for its NodeInfo and welcome.
  struct Standing {
    bool agreed = false;
    bool suspended = false;
    bool held() const { return !agreed || suspended; }
  };

  ProviderTrust(const CredentialTable& credentials, Clock& clock, Hooks hooks)
      : credentials_(credentials), clock_(clock), hooks_(std::move(hooks)) {}

  // The version nodes must accept; none until the store reports one.
  const std::optional<store::AgreementRecord>& agreement() const { return agreement_; }
  // Neither revoked nor terminated (a hello may race a revocation).
  bool provider_active(const std::string& provider_id) const { return credentials_.provider_active(provider_id); }

  // A node passed its hello, listing the agreement digests it accepts.
  Standing join(ConnId conn, std::string node_id, std::string provider_id, std::vector<std::string> agreements);
  // After its welcome went out: records the acceptance the hello carried,
  // or offers the current agreement.
  void welcomed(ConnId conn);
  // An Accept frame for the agreement with digest `sha256`.
  void on_accept(ConnId conn, const std::string& sha256);
  void leave(ConnId conn) { nodes_.erase(conn); }

  // The credential table was reloaded (and `agreement` is the current
  // version, if any): disconnects, holds and releases nodes to match, and
  // offers a new version to the nodes that have not accepted it.
  void credentials_changed(std::optional<store::AgreementRecord> agreement);

  size_t nodes() const { return nodes_.size(); }

 private:
  struct Node {
    std::string node_id, provider_id;
    std::vector<std::string> agreements;  // the digests its hello listed
    Standing standing;
    bool held = false;  // as last told through set_held (or join's answer)
  };
  bool lists_current(const Node& n) const;
  std::string offer_frame() const;  // the current agreement, encoded
  void record_acceptance(const Node& n, const char* how);
  void offer(ConnId conn, const Node& n, const std::string& frame);
  void update_hold(ConnId conn, Node& n);

  const CredentialTable& credentials_;
  Clock& clock_;
  Hooks hooks_;
  std::optional<store::AgreementRecord> agreement_;
  std::unordered_map<ConnId, Node> nodes_;
};

}  // namespace agora::gateway
