#include "gateway/credential_table.h"

#include <gtest/gtest.h>

#include "crypto/sha256.h"

namespace agora::gateway {
namespace {

constexpr int64_t kNow = 1'700'000'000'000;

std::shared_ptr<const crypto::MasterSecret> master() {
  return crypto::MasterSecret::from_bytes(std::string(32, '\x07'));
}

store::ApiKeyRecord key(const crypto::MasterSecret& m, std::string id, std::string secret) {
  store::ApiKeyRecord r;
  r.id = std::move(id);
  r.name = r.id;
  r.hash = m.hash_api_key(secret);
  return r;
}

store::ProviderRecord provider(const crypto::MasterSecret& m, std::string id, std::string token,
                               std::string status = store::kProviderActive) {
  store::ProviderRecord r;
  r.id = std::move(id);
  r.name = r.id;
  r.hash = m.hash_provider_token(token);
  r.status = std::move(status);
  return r;
}

TEST(CredentialTable, BearerTokens) {
  EXPECT_EQ(bearer_token("Bearer gk_abc"), "gk_abc");
  EXPECT_EQ(bearer_token("bearer   gk_abc  "), "gk_abc");
  EXPECT_EQ(bearer_token("Basic gk_abc"), "");
  EXPECT_EQ(bearer_token("Bearer "), "");
  EXPECT_EQ(bearer_token("gk_abc"), "");
}

TEST(CredentialTable, ActiveKeysAuthenticateWithTheirLimitsOrTheDefaults) {
  auto m = master();
  CredentialTable t(m);
  auto own = key(*m, "key_own", "gk_ownownown");
  own.rpm = 7;
  own.lineage_id = "key_first";
  own.models = {"tiny"};
  auto plain = key(*m, "key_plain", "gk_plainplain");
  auto revoked = key(*m, "key_gone", "gk_gonegonegone");
  revoked.revoked_ms = kNow - 1;
  auto expiring = key(*m, "key_soon", "gk_soonsoonsoon");
  expiring.expires_ms = kNow + 1000;
  auto admin = key(*m, "key_admin", "at_adminadmin");
  admin.role = "admin";
  t.load({own, plain, revoked, expiring, admin}, {}, kNow, KeyLimits{60, 1000, 4});

  const KeyEntry* e = t.authenticate("Bearer gk_ownownown", false, kNow);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->id, "key_own");
  EXPECT_EQ(e->lineage, "key_first");
  EXPECT_EQ(e->limits.rpm, 7);
  EXPECT_EQ(e->limits.tpm, 1000);
  EXPECT_TRUE(e->allows("tiny"));
  EXPECT_FALSE(e->allows("big"));
  e = t.authenticate("Bearer gk_plainplain", false, kNow);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->lineage, "key_plain");
  EXPECT_EQ(e->limits.max_concurrent, 4);
  EXPECT_TRUE(e->allows("anything"));

  EXPECT_EQ(t.authenticate("Bearer gk_gonegonegone", false, kNow), nullptr);
  EXPECT_NE(t.authenticate("Bearer gk_soonsoonsoon", false, kNow + 999), nullptr);
  EXPECT_EQ(t.authenticate("Bearer gk_soonsoonsoon", false, kNow + 1000), nullptr);  // expiry needs no reload
  EXPECT_EQ(t.authenticate("Bearer gk_unknownkey", false, kNow), nullptr);
  // Admin tokens only where an admin token is asked for, and the other way round.
  EXPECT_EQ(t.authenticate("Bearer at_adminadmin", false, kNow), nullptr);
  EXPECT_NE(t.authenticate("Bearer at_adminadmin", true, kNow), nullptr);
  EXPECT_EQ(t.authenticate("Bearer gk_plainplain", true, kNow), nullptr);
  EXPECT_EQ(t.key_count(), 4u);
}

TEST(CredentialTable, LegacyShaKeysStillWork) {
  auto m = master();
  CredentialTable t(m);
  store::ApiKeyRecord old;
  old.id = "key_old";
  old.hash = crypto::sha256_hex(std::string_view("gk_oldoldold"));
  old.hash_scheme = store::kHashLegacy;
  t.load({old}, {}, kNow, KeyLimits{});
  ASSERT_NE(t.authenticate("Bearer gk_oldoldold", false, kNow), nullptr);
  EXPECT_EQ(t.legacy_key_count(), 1u);
}

TEST(CredentialTable, ProvidersActiveSuspendedTerminated) {
  auto m = master();
  CredentialTable t(m);
  auto revoked = provider(*m, "prov_r", "pt_revokedrev");
  revoked.revoked_ms = 1;
  t.load({},
         {provider(*m, "prov_a", "pt_activeact"), provider(*m, "prov_s", "pt_suspsusp", store::kProviderSuspended),
          provider(*m, "prov_t", "pt_termterm", store::kProviderTerminated), revoked},
         kNow, KeyLimits{});
  const ProviderEntry* p = t.authenticate_provider("Bearer pt_activeact");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->id, "prov_a");
  EXPECT_NE(t.authenticate_provider("Bearer pt_suspsusp"), nullptr);  // connects, but is held
  EXPECT_TRUE(t.provider_suspended("prov_s"));
  EXPECT_FALSE(t.provider_suspended("prov_a"));
  EXPECT_EQ(t.authenticate_provider("Bearer pt_termterm"), nullptr);
  EXPECT_EQ(t.authenticate_provider("Bearer pt_revokedrev"), nullptr);
  EXPECT_FALSE(t.provider_active("prov_t"));
  EXPECT_FALSE(t.provider_active("prov_r"));
  EXPECT_TRUE(t.provider_active("prov_s"));
  EXPECT_EQ(t.authenticate_provider("Bearer gk_activeact"), nullptr);  // wrong kind of token
  // A reload replaces the table: a provider terminated since is gone.
  t.load({}, {provider(*m, "prov_a", "pt_activeact", store::kProviderTerminated)}, kNow, KeyLimits{});
  EXPECT_EQ(t.authenticate_provider("Bearer pt_activeact"), nullptr);
}

}  // namespace
}  // namespace agora::gateway
