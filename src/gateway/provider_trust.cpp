#include "gateway/provider_trust.h"

#include <algorithm>

#include <boost/json.hpp>
#include <spdlog/spdlog.h>

#include "common/log.h"
#include "protocol/messages.h"

namespace agora::gateway {

ProviderTrust::Standing ProviderTrust::join(ConnId conn, std::string node_id, std::string provider_id,
                                            std::vector<std::string> agreements) {
  Node n{std::move(node_id), std::move(provider_id), std::move(agreements), {}, false};
  n.standing.suspended = credentials_.provider_suspended(n.provider_id);
  n.standing.agreed = !agreement_ || lists_current(n);
  n.held = n.standing.held();
  const Standing s = n.standing;
  nodes_.insert_or_assign(conn, std::move(n));
  return s;
}

void ProviderTrust::welcomed(ConnId conn) {
  auto it = nodes_.find(conn);
  if (it == nodes_.end() || !agreement_) return;
  if (it->second.standing.agreed) {
    record_acceptance(it->second, "hello");
  } else {
    offer(conn, it->second, offer_frame());
  }
}

void ProviderTrust::on_accept(ConnId conn, const std::string& sha256) {
  auto it = nodes_.find(conn);
  if (it == nodes_.end()) return;
  Node& n = it->second;
  if (!agreement_ || sha256 != agreement_->sha256) {
    // An older version, or one this gateway never offered: not enough.
    spdlog::warn("node_accepted_other_agreement node={} sha256={}", logfmt_value(n.node_id), logfmt_value(sha256));
    return;
  }
  if (n.standing.agreed) return;
  n.standing.agreed = true;
  record_acceptance(n, "accept");
  spdlog::info("node_agreement_accepted node={} provider={} version={}", n.node_id, n.provider_id,
               agreement_->version);
  update_hold(conn, n);
}

void ProviderTrust::credentials_changed(std::optional<store::AgreementRecord> agreement) {
  const bool new_agreement = agreement && (!agreement_ || agreement_->sha256 != agreement->sha256);
  if (new_agreement) {
    agreement_ = std::move(agreement);
    spdlog::info("agreement_current version={} sha256={}", agreement_->version, agreement_->sha256);
  }
  // Encoded once for every node it goes to.
  const std::string frame = new_agreement ? offer_frame() : std::string();
  std::vector<ConnId> revoked;
  for (auto& [conn, n] : nodes_) {
    if (!hooks_.open(conn)) continue;
    if (!credentials_.provider_active(n.provider_id)) {
      revoked.push_back(conn);
      continue;
    }
    n.standing.suspended = credentials_.provider_suspended(n.provider_id);
    if (new_agreement) {
      // A hello may already have accepted the new version.
      n.standing.agreed = lists_current(n);
      if (n.standing.agreed) record_acceptance(n, "hello");
      else offer(conn, n, frame);
    }
    update_hold(conn, n);
  }
  for (ConnId conn : revoked) {
    const Node& n = nodes_.at(conn);
    spdlog::info("node_disconnected_revoked node={} provider={}", n.node_id, n.provider_id);
    nodes_.erase(conn);
    hooks_.disconnect(conn);
  }
}

std::string ProviderTrust::offer_frame() const {
  return protocol::encode(protocol::AgreementOffer{agreement_->version, agreement_->sha256, agreement_->text});
}

bool ProviderTrust::lists_current(const Node& n) const {
  return agreement_ && std::find(n.agreements.begin(), n.agreements.end(), agreement_->sha256) != n.agreements.end();
}

void ProviderTrust::record_acceptance(const Node& n, const char* how) {
  const int64_t now = clock_.unix_millis();
  store::AcceptanceRecord a{n.provider_id, n.node_id, agreement_->version, agreement_->sha256, now};
  store::AuditEvent e{now, "provider.agreement_accepted", "", n.provider_id,
                      boost::json::serialize(boost::json::object{{"node_id", n.node_id},
                                                                 {"version", agreement_->version},
                                                                 {"sha256", agreement_->sha256},
                                                                 {"via", how}})};
  hooks_.accepted(std::move(a), std::move(e));
}

void ProviderTrust::offer(ConnId conn, const Node& n, const std::string& frame) {
  hooks_.send(conn, frame);
  spdlog::info("node_agreement_required node={} provider={} version={}", n.node_id, n.provider_id,
               agreement_->version);
}

void ProviderTrust::update_hold(ConnId conn, Node& n) {
  const bool hold = n.standing.held();
  if (n.held == hold) return;
  n.held = hold;
  spdlog::info("node_{} node={} provider={} agreed={} suspended={}", hold ? "held" : "released", n.node_id,
               n.provider_id, n.standing.agreed, n.standing.suspended);
  hooks_.set_held(conn, hold);
}

}  // namespace agora::gateway
