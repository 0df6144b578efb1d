// Provider trust driven directly: agreement offers and acceptances, holds
// for unaccepted agreements and suspended providers, disconnection of a
// revoked or terminated provider's nodes (what tests/e2e checks through
// processes, here one rule at a time).
#include "gateway/provider_trust.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "fakes/manual_clock.h"
#include "protocol/messages.h"

namespace agora::gateway {
namespace {

struct Recorder {
  std::vector<std::pair<ConnId, std::string>> sent;
  std::vector<ConnId> disconnected;
  std::map<ConnId, bool> held;  // the last set_held per node
  std::vector<std::pair<store::AcceptanceRecord, store::AuditEvent>> accepted;
  std::set<ConnId> closing;  // sessions the gateway is closing

  ProviderTrust::Hooks hooks() {
    return {[this](ConnId c) { return !closing.contains(c); },
            [this](ConnId c, const std::string& f) { sent.emplace_back(c, f); },
            [this](ConnId c) { disconnected.push_back(c); },
            [this](ConnId c, bool h) { held[c] = h; },
            [this](store::AcceptanceRecord a, store::AuditEvent e) { accepted.emplace_back(std::move(a), std::move(e)); }};
  }
};

store::ProviderRecord provider(const crypto::MasterSecret& m, std::string id, std::string status) {
  store::ProviderRecord r;
  r.id = std::move(id);
  r.name = r.id;
  r.hash = m.hash_provider_token("pt_" + r.id);
  r.status = std::move(status);
  return r;
}

store::AgreementRecord agreement(int32_t version, std::string sha) {
  return store::AgreementRecord{version, std::move(sha), "text of v" + std::to_string(version), 1};
}

class ProviderTrustTest : public ::testing::Test {
 protected:
  void load(std::vector<store::ProviderRecord> providers) {
    table.load({}, providers, clock.unix_millis(), KeyLimits{});
  }
  void reload(std::vector<store::ProviderRecord> providers, std::optional<store::AgreementRecord> a) {
    load(std::move(providers));
    trust.credentials_changed(std::move(a));
  }

  std::shared_ptr<const crypto::MasterSecret> master = crypto::MasterSecret::from_bytes(std::string(32, '\x07'));
  CredentialTable table{master};
  fakes::ManualClock clock;
  Recorder rec;
  ProviderTrust trust{table, clock, rec.hooks()};
};

TEST_F(ProviderTrustTest, WithoutAnAgreementAnActiveProvidersNodeServes) {
  reload({provider(*master, "prov_a", store::kProviderActive)}, std::nullopt);
  const auto s = trust.join(1, "node-1", "prov_a", {});
  EXPECT_TRUE(s.agreed);
  EXPECT_FALSE(s.suspended);
  EXPECT_FALSE(s.held());
  trust.welcomed(1);
  EXPECT_TRUE(rec.sent.empty());
  EXPECT_TRUE(rec.accepted.empty());
}

TEST_F(ProviderTrustTest, AHelloListingTheCurrentAgreementIsRecordedAsAccepted) {
  reload({provider(*master, "prov_a", store::kProviderActive)}, agreement(2, "d2"));
  const auto s = trust.join(1, "node-1", "prov_a", {"d1", "d2"});
  EXPECT_TRUE(s.agreed);
  EXPECT_FALSE(s.held());
  trust.welcomed(1);
  EXPECT_TRUE(rec.sent.empty());
  ASSERT_EQ(rec.accepted.size(), 1u);
  const auto& [a, e] = rec.accepted[0];
  EXPECT_EQ(a.provider_id, "prov_a");
  EXPECT_EQ(a.node_id, "node-1");
  EXPECT_EQ(a.version, 2);
  EXPECT_EQ(a.sha256, "d2");
  EXPECT_EQ(a.accepted_ms, clock.unix_millis());
  EXPECT_EQ(e.kind, "provider.agreement_accepted");
  EXPECT_NE(e.data_json.find("\"via\":\"hello\""), std::string::npos);
}

TEST_F(ProviderTrustTest, ANodeWithoutTheAgreementIsHeldAndOfferedItUntilItAccepts) {
  reload({provider(*master, "prov_a", store::kProviderActive)}, agreement(2, "d2"));
  const auto s = trust.join(1, "node-1", "prov_a", {"d1"});
  EXPECT_FALSE(s.agreed);
  EXPECT_TRUE(s.held());
  trust.welcomed(1);
  ASSERT_EQ(rec.sent.size(), 1u);
  EXPECT_EQ(rec.sent[0].first, 1u);
  auto offer = protocol::decode(rec.sent[0].second);
  ASSERT_TRUE(offer);
  auto* o = std::get_if<protocol::AgreementOffer>(&*offer);
  ASSERT_NE(o, nullptr);
  EXPECT_EQ(o->version, 2);
  EXPECT_EQ(o->sha256, "d2");
  EXPECT_EQ(o->text, "text of v2");

  trust.on_accept(1, "d1");  // an older version is not enough
  EXPECT_TRUE(rec.accepted.empty());
  EXPECT_FALSE(rec.held.contains(1));
  trust.on_accept(1, "d2");
  ASSERT_EQ(rec.accepted.size(), 1u);
  EXPECT_NE(rec.accepted[0].second.data_json.find("\"via\":\"accept\""), std::string::npos);
  EXPECT_EQ(rec.held.at(1), false);  // released
  trust.on_accept(1, "d2");          // once is enough
  EXPECT_EQ(rec.accepted.size(), 1u);
}

TEST_F(ProviderTrustTest, ANewAgreementHoldsTheNodesThatHaveNotAcceptedIt) {
  reload({provider(*master, "prov_a", store::kProviderActive)}, agreement(1, "d1"));
  trust.join(1, "node-1", "prov_a", {"d1"});
  trust.join(2, "node-2", "prov_a", {"d1", "d2"});  // already accepts the next version
  trust.welcomed(1);
  trust.welcomed(2);
  rec.accepted.clear();
  reload({provider(*master, "prov_a", store::kProviderActive)}, agreement(2, "d2"));
  EXPECT_EQ(rec.held.at(1), true);
  EXPECT_FALSE(rec.held.contains(2));  // never held
  ASSERT_EQ(rec.sent.size(), 1u);      // only node 1 is offered it
  EXPECT_EQ(rec.sent[0].first, 1u);
  ASSERT_EQ(rec.accepted.size(), 1u);  // node 2's hello counts
  EXPECT_EQ(rec.accepted[0].first.node_id, "node-2");
  EXPECT_EQ(rec.accepted[0].first.version, 2);
  // The same agreement reported again changes nothing.
  reload({provider(*master, "prov_a", store::kProviderActive)}, agreement(2, "d2"));
  EXPECT_EQ(rec.sent.size(), 1u);
  EXPECT_EQ(rec.accepted.size(), 1u);
}

TEST_F(ProviderTrustTest, SuspensionHoldsAndReinstatementReleases) {
  reload({provider(*master, "prov_s", store::kProviderSuspended)}, std::nullopt);
  EXPECT_TRUE(trust.join(1, "node-1", "prov_s", {}).held());
  reload({provider(*master, "prov_s", store::kProviderActive)}, std::nullopt);
  EXPECT_EQ(rec.held.at(1), false);
  reload({provider(*master, "prov_s", store::kProviderSuspended)}, std::nullopt);
  EXPECT_EQ(rec.held.at(1), true);
  EXPECT_TRUE(rec.disconnected.empty());  // suspended nodes stay connected
}

TEST_F(ProviderTrustTest, RevokedOrTerminatedProvidersNodesAreDisconnected) {
  reload({provider(*master, "prov_a", store::kProviderActive), provider(*master, "prov_b", store::kProviderActive)},
         std::nullopt);
  trust.join(1, "node-1", "prov_a", {});
  trust.join(2, "node-2", "prov_b", {});
  trust.join(3, "node-3", "prov_a", {});
  reload({provider(*master, "prov_a", store::kProviderTerminated), provider(*master, "prov_b", store::kProviderActive)},
         std::nullopt);
  std::sort(rec.disconnected.begin(), rec.disconnected.end());
  EXPECT_EQ(rec.disconnected, (std::vector<ConnId>{1, 3}));
  EXPECT_EQ(trust.nodes(), 1u);
  EXPECT_FALSE(trust.provider_active("prov_a"));
  // A provider the store no longer lists (its token revoked) goes too.
  reload({}, std::nullopt);
  std::sort(rec.disconnected.begin(), rec.disconnected.end());
  EXPECT_EQ(rec.disconnected, (std::vector<ConnId>{1, 2, 3}));
  EXPECT_EQ(trust.nodes(), 0u);
}

TEST_F(ProviderTrustTest, AClosingSessionIsLeftAlone) {
  reload({provider(*master, "prov_a", store::kProviderActive)}, agreement(1, "d1"));
  trust.join(1, "node-1", "prov_a", {"d1", "d2"});  // being replaced by a reconnect of the same node
  trust.join(2, "node-1", "prov_a", {"d1", "d2"});
  trust.welcomed(2);
  rec.accepted.clear();
  rec.closing.insert(1);
  reload({provider(*master, "prov_a", store::kProviderActive)}, agreement(2, "d2"));
  ASSERT_EQ(rec.accepted.size(), 1u);  // the open session's acceptance only
  reload({provider(*master, "prov_a", store::kProviderTerminated)}, std::nullopt);
  EXPECT_EQ(rec.disconnected, (std::vector<ConnId>{2}));
}

TEST_F(ProviderTrustTest, ALeftNodeIsForgotten) {
  reload({provider(*master, "prov_a", store::kProviderActive)}, agreement(1, "d1"));
  trust.join(1, "node-1", "prov_a", {});
  trust.leave(1);
  trust.on_accept(1, "d1");
  EXPECT_TRUE(rec.accepted.empty());
  reload({provider(*master, "prov_a", store::kProviderActive)}, agreement(2, "d2"));
  EXPECT_TRUE(rec.sent.empty());
  EXPECT_TRUE(rec.held.empty());
}

}  // namespace
}  // namespace agora::gateway
