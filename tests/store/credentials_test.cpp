#include "store/credentials.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <fstream>
#include <iterator>

#include "crypto/random.h"
#include "crypto/sha256.h"
#include "store/sqlite_store.h"
#include "support/test_models.h"

namespace agora::store {
namespace {

namespace fs = std::filesystem;

class CredentialsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = agora::testing::temp_dir();
    auto s = open_sqlite_store(database_path(dir_));
    ASSERT_TRUE(s) << s.error().to_string();
    store_ = std::move(*s);
  }
  std::string file_bytes(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), {}};
  }

  fs::path dir_;
  std::unique_ptr<Store> store_;
  std::shared_ptr<const crypto::MasterSecret> master_ = crypto::MasterSecret::from_bytes(std::string(32, 's'));
};

TEST_F(CredentialsTest, IssuedKeyIsStoredOnlyAsAKeyedHash) {
  KeySpec spec;
  spec.name = "app";
  spec.rpm = 10;
  auto k = issue_api_key(*store_, *master_, spec, 1000);
  ASSERT_TRUE(k) << k.error().to_string();
  EXPECT_TRUE(looks_like_secret(k->secret, kClientKeyPrefix)) << k->secret;
  EXPECT_EQ(k->record.hash, master_->hash_api_key(k->secret));
  EXPECT_NE(k->record.hash, crypto::sha256_hex(k->secret));
  EXPECT_EQ(k->record.prefix, k->secret.substr(0, 7));
  // Neither the key nor the part after the display prefix is anywhere in
  // the database file or its WAL.
  store_.reset();
  const std::string tail = k->secret.substr(7);
  for (const char* suffix : {"", "-wal"}) {
    const fs::path p = database_path(dir_).string() + suffix;
    if (!fs::exists(p)) continue;
    EXPECT_EQ(file_bytes(p).find(tail), std::string::npos) << p;
  }
}

TEST_F(CredentialsTest, FindByIdOrSecretAndAdminTokens) {
  KeySpec spec;
  spec.name = "ops";
  spec.role = "admin";
  auto k = issue_api_key(*store_, *master_, spec, 1000);
  ASSERT_TRUE(k);
  EXPECT_TRUE(k->secret.starts_with("at_"));
  EXPECT_EQ(find_api_key(*store_, *master_, k->secret)->id, k->record.id);
  EXPECT_EQ(find_api_key(*store_, *master_, k->record.id)->role, "admin");
  // The same secret under another master secret finds nothing.
  auto other = crypto::MasterSecret::from_bytes(std::string(32, 'o'));
  auto miss = find_api_key(*store_, *other, k->secret);
  ASSERT_FALSE(miss);
  EXPECT_EQ(miss.error().code, Errc::not_found);
  EXPECT_EQ(miss.error().message.find(k->secret.substr(7)), std::string::npos) << "secrets are never echoed";
  EXPECT_EQ(find_api_key(*store_, *master_, "banana").error().code, Errc::invalid_argument);
}

TEST_F(CredentialsTest, LegacySha256KeysAreStillFoundBySecret) {
  const std::string secret = crypto::new_secret("gk_");
  ApiKeyRecord legacy;
  legacy.name = "old";
  legacy.prefix = secret.substr(0, 7);
  legacy.hash = crypto::sha256_hex(secret);
  legacy.hash_scheme = kHashLegacy;
  legacy.created_ms = 1;
  auto created = store_->create_api_key(legacy);
  ASSERT_TRUE(created);
  EXPECT_EQ(find_api_key(*store_, *master_, secret)->id, created->id);
  auto revoked = revoke_api_key(*store_, *master_, secret, 5);
  ASSERT_TRUE(revoked);
  EXPECT_EQ(revoked->revoked_ms, 5);
}

TEST_F(CredentialsTest, RotationGivesANewSecretAndAGracePeriod) {
  KeySpec spec;
  spec.name = "app";
  spec.tpm = 1000;
  spec.models = {"tiny"};
  auto k = issue_api_key(*store_, *master_, spec, 1000);
  ASSERT_TRUE(k);
  auto r = rotate_api_key(*store_, *master_, k->secret, 60'000, 2000);
  ASSERT_TRUE(r) << r.error().to_string();
  const auto& [old_key, fresh] = *r;
  EXPECT_NE(fresh.secret, k->secret);
  EXPECT_EQ(fresh.record.hash, master_->hash_api_key(fresh.secret));
  EXPECT_EQ(fresh.record.lineage_id, k->record.id);
  EXPECT_EQ(fresh.record.tpm, 1000);
  EXPECT_EQ(fresh.record.models, spec.models);
  EXPECT_EQ(old_key.expires_ms, 62'000);
  EXPECT_TRUE(old_key.active(61'999));
  EXPECT_FALSE(old_key.active(62'000));
  EXPECT_TRUE(fresh.record.active(1'000'000));
  // Grace 0: the old key stops at once.
  auto r2 = rotate_api_key(*store_, *master_, fresh.record.id, 0, 3000);
  ASSERT_TRUE(r2);
  EXPECT_FALSE(r2->first.active(3000));
  EXPECT_EQ(rotate_api_key(*store_, *master_, fresh.record.id, -1, 3000).error().code, Errc::invalid_argument);
}

TEST_F(CredentialsTest, SpecValidationNamesTheField) {
  auto check = [&](KeySpec s, const char* field) {
    auto st = validate_key_spec(s, 1000);
    ASSERT_FALSE(st) << field;
    EXPECT_EQ(st.error().code, Errc::invalid_argument);
    EXPECT_TRUE(st.error().message.starts_with(field)) << st.error().message;
  };
  KeySpec ok;
  ok.name = "n";
  EXPECT_TRUE(validate_key_spec(ok, 1000));
  KeySpec s = ok;
  s.name = "";
  check(s, "name");
  s = ok;
  s.name = "a\nb";
  check(s, "name");
  s = ok;
  s.rpm = -1;
  check(s, "rpm");
  s = ok;
  s.max_concurrent = -5;
  check(s, "max_concurrent");
  s = ok;
  s.role = "root";
  check(s, "role");
  s = ok;
  s.expires_ms = 999;
  check(s, "expires");
  s = ok;
  s.models = {"a,b"};
  check(s, "models");
}

TEST_F(CredentialsTest, ProviderTokensHashedAndRevocableByToken) {
  auto t = issue_provider_token(*store_, *master_, "acme", 1);
  ASSERT_TRUE(t) << t.error().to_string();
  EXPECT_TRUE(t->secret.starts_with("pt_"));
  EXPECT_EQ(t->record.hash, master_->hash_provider_token(t->secret));
  EXPECT_NE(t->record.hash, master_->hash_api_key(t->secret));  // purpose-separated
  auto r = revoke_provider(*store_, *master_, t->secret, 7);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->revoked_ms, 7);
  EXPECT_EQ(revoke_provider(*store_, *master_, crypto::new_secret("pt_"), 8).error().code, Errc::not_found);
}

TEST(ParseDuration, UnitsAndErrors) {
  EXPECT_EQ(*parse_duration_ms("30d"), 30LL * 86'400'000);
  EXPECT_EQ(*parse_duration_ms("12h"), 12LL * 3'600'000);
  EXPECT_EQ(*parse_duration_ms("90m"), 90LL * 60'000);
  EXPECT_EQ(*parse_duration_ms("45s"), 45'000);
  EXPECT_EQ(*parse_duration_ms("500ms"), 500);
  EXPECT_EQ(*parse_duration_ms("0s"), 0);
  for (const char* bad : {"", "d", "30", "30y", "-1d", "1.5h", "99999999999999999999d"}) {
    EXPECT_FALSE(parse_duration_ms(bad)) << bad;
  }
}

}  // namespace
}  // namespace agora::store
