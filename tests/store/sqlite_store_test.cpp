#include "store/sqlite_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <set>

#include "crypto/random.h"
#include "crypto/sha256.h"
#include "support/test_models.h"

namespace agora::store {
namespace {

namespace fs = std::filesystem;

std::unique_ptr<Store> open_or_die(const fs::path& path) {
  auto s = open_sqlite_store(path);
  if (!s) ADD_FAILURE() << s.error().to_string();
  return s ? std::move(s).value() : nullptr;
}

// A second, raw connection, to look at what the Store wrote.
struct RawDb {
  explicit RawDb(const fs::path& path) {
    EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
  }
  ~RawDb() { sqlite3_close_v2(db); }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;

  std::string scalar(const char* sql) {
    sqlite3_stmt* s = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql, -1, &s, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    std::string out;
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0)) {
      out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    }
    sqlite3_finalize(s);
    return out;
  }
  void exec(const char* sql) {
    EXPECT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  }

  sqlite3* db = nullptr;
};

unsigned file_mode(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 0777;
}

bool is_id(const std::string& id, std::string_view prefix) {
  if (id.size() != prefix.size() + 16 || id.compare(0, prefix.size(), prefix) != 0) return false;
  for (char c : id.substr(prefix.size())) {
    if (!std::isalnum(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

struct Secret {
  std::string secret, prefix, hash;
};
Secret make_secret(std::string_view kind) {
  Secret s;
  s.secret = crypto::new_secret(kind);
  s.prefix = crypto::secret_display_prefix(s.secret);
  s.hash = crypto::sha256_hex(s.secret);
  return s;
}

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = agora::testing::temp_dir();
    path_ = database_path(dir_ / "data");
    store_ = open_or_die(path_);
    ASSERT_NE(store_, nullptr);
  }

  fs::path dir_, path_;
  std::unique_ptr<Store> store_;
};

TEST(SqliteStore, DatabasePathIsAgoraDbInTheDataDir) {
  EXPECT_EQ(database_path("/var/lib/agora"), fs::path("/var/lib/agora/agora.db"));
}

TEST_F(SqliteStoreTest, CreatesPrivateFileInWalModeAtTheCurrentSchema) {
  ASSERT_TRUE(fs::exists(path_));
  EXPECT_EQ(file_mode(path_), 0600u);
  EXPECT_EQ(file_mode(path_.parent_path()), 0700u);
  ASSERT_TRUE(store_->create_api_key("k", "gk_abcd", "00", 1).ok());  // makes SQLite write the WAL
  const fs::path wal = path_.string() + "-wal";
  ASSERT_TRUE(fs::exists(wal));
  EXPECT_EQ(file_mode(wal), 0600u);
  RawDb raw(path_);
  EXPECT_EQ(raw.scalar("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(raw.scalar("PRAGMA user_version"), std::to_string(kSqliteSchemaVersion));
  for (const char* table : {"api_keys", "providers", "generations", "nodes"}) {
    const std::string sql =
        std::string("SELECT count(*) FROM sqlite_master WHERE type='table' AND name='") + table +
        "'";
    EXPECT_EQ(raw.scalar(sql.c_str()), "1") << table;
  }
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM sqlite_master WHERE type='index' AND name IN "
                       "('api_keys_hash','providers_hash','providers_name')"),
            "3");
}

TEST_F(SqliteStoreTest, ApiKeysCreateListRevoke) {
  const auto s1 = make_secret("gk_"), s2 = make_secret("gk_");
  auto k1 = store_->create_api_key("alice", s1.prefix, s1.hash, 1000);
  ASSERT_TRUE(k1.ok()) << k1.error().to_string();
  auto k2 = store_->create_api_key("bob", s2.prefix, s2.hash, 2000);
  ASSERT_TRUE(k2.ok()) << k2.error().to_string();
  EXPECT_TRUE(is_id(k1->id, "key_")) << k1->id;
  EXPECT_NE(k1->id, k2->id);
  EXPECT_EQ(k1->name, "alice");
  EXPECT_EQ(k1->prefix, s1.prefix);
  EXPECT_EQ(k1->hash, s1.hash);
  EXPECT_EQ(k1->created_ms, 1000);
  EXPECT_FALSE(k1->revoked_ms);

  auto list = store_->list_api_keys();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].id, k1->id);  // oldest first
  EXPECT_EQ((*list)[1].id, k2->id);
  EXPECT_EQ((*list)[1].hash, s2.hash);
  EXPECT_EQ((*list)[1].prefix, s2.prefix);

  // By id; revoking again keeps the first time.
  auto r1 = store_->revoke_api_key(k1->id, 5000);
  ASSERT_TRUE(r1.ok()) << r1.error().to_string();
  EXPECT_EQ(r1->id, k1->id);
  EXPECT_EQ(r1->revoked_ms, 5000);
  auto again = store_->revoke_api_key(k1->id, 6000);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->revoked_ms, 5000);

  // By hash.
  auto r2 = store_->revoke_api_key(s2.hash, 7000);
  ASSERT_TRUE(r2.ok()) << r2.error().to_string();
  EXPECT_EQ(r2->id, k2->id);
  EXPECT_EQ(r2->revoked_ms, 7000);

  list = store_->list_api_keys();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ((*list)[0].revoked_ms, 5000);
  EXPECT_EQ((*list)[1].revoked_ms, 7000);
}

TEST_F(SqliteStoreTest, ApiKeyErrors) {
  auto missing = store_->revoke_api_key("key_doesnotexist00", 1);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, Errc::not_found);
  EXPECT_NE(missing.error().message.find("revoke_api_key"), std::string::npos);
  EXPECT_EQ(store_->revoke_api_key("", 1).error().code, Errc::not_found);

  EXPECT_EQ(store_->create_api_key("", "gk_x", "ab", 1).error().code, Errc::invalid_argument);
  EXPECT_EQ(store_->create_api_key("n", "gk_x", "", 1).error().code, Errc::invalid_argument);

  const auto s = make_secret("gk_");
  ASSERT_TRUE(store_->create_api_key("a", s.prefix, s.hash, 1).ok());
  auto dup = store_->create_api_key("b", s.prefix, s.hash, 2);
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code, Errc::invalid_argument);
  EXPECT_NE(dup.error().message.find("hash"), std::string::npos) << dup.error().message;
  EXPECT_EQ(store_->list_api_keys()->size(), 1u);
}

TEST_F(SqliteStoreTest, ApiKeySpecRoundTrips) {
  const auto s = make_secret("at_");
  ApiKeyRecord spec;
  spec.name = "ops";
  spec.prefix = s.prefix;
  spec.hash = s.hash;
  spec.role = "admin";
  spec.created_ms = 10;
  spec.expires_ms = 99'000;
  spec.rpm = 60;
  spec.tpm = 0;  // no limit
  spec.models = {"llama-3-8b", "tiny"};
  auto k = store_->create_api_key(spec);
  ASSERT_TRUE(k.ok()) << k.error().to_string();
  EXPECT_EQ(k->lineage_id, k->id);
  auto found = store_->find_api_key(k->id);
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->role, "admin");
  EXPECT_EQ(found->hash_scheme, kHashHmac);
  EXPECT_EQ(found->expires_ms, 99'000);
  EXPECT_EQ(found->rpm, 60);
  EXPECT_EQ(found->tpm, 0);
  EXPECT_FALSE(found->max_concurrent);
  EXPECT_EQ(found->models, (std::vector<std::string>{"llama-3-8b", "tiny"}));
  EXPECT_EQ(store_->find_api_key(s.hash)->id, k->id);
  EXPECT_EQ(store_->find_api_key("key_nope").error().code, Errc::not_found);
  EXPECT_TRUE(found->active(98'999));
  EXPECT_FALSE(found->active(99'000));
}

TEST_F(SqliteStoreTest, RotationKeepsTheLineageAndBoundsTheOldKey) {
  const auto s1 = make_secret("gk_"), s2 = make_secret("gk_"), s3 = make_secret("gk_");
  ApiKeyRecord spec;
  spec.name = "app";
  spec.prefix = s1.prefix;
  spec.hash = s1.hash;
  spec.created_ms = 1000;
  spec.rpm = 5;
  auto k1 = store_->create_api_key(spec);
  ASSERT_TRUE(k1.ok());
  const uint64_t v0 = *store_->credentials_version();

  ApiKeyRecord next = *k1;
  next.prefix = s2.prefix;
  next.hash = s2.hash;
  next.created_ms = 2000;
  auto rotated = store_->rotate_api_key(k1->id, next, 2000 + 60'000);
  ASSERT_TRUE(rotated.ok()) << rotated.error().to_string();
  const auto& [old_key, new_key] = *rotated;
  EXPECT_NE(new_key.id, k1->id);
  EXPECT_EQ(new_key.lineage_id, k1->id);
  EXPECT_EQ(new_key.rpm, 5);
  EXPECT_FALSE(new_key.expires_ms);
  EXPECT_EQ(old_key.expires_ms, 62'000);
  EXPECT_EQ(old_key.replaced_by, new_key.id);
  EXPECT_NE(*store_->credentials_version(), v0);

  // Rotating the old key again is refused; the new one can be rotated.
  next.hash = s3.hash;
  auto twice = store_->rotate_api_key(k1->id, next, 70'000);
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.error().code, Errc::invalid_argument);
  EXPECT_NE(twice.error().message.find(new_key.id), std::string::npos) << twice.error().message;
  EXPECT_EQ(store_->list_api_keys()->size(), 2u);  // nothing half-written
  // A grace beyond an existing earlier expiry does not extend it.
  auto r2 = store_->rotate_api_key(new_key.id, next, 3000);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->second.lineage_id, k1->id);
  auto again = store_->rotate_api_key(r2->first.id, next, 1);
  EXPECT_FALSE(again.ok());
  // Revoked keys cannot be rotated.
  ASSERT_TRUE(store_->revoke_api_key(r2->second.id, 4000).ok());
  const auto s4 = make_secret("gk_");
  next.hash = s4.hash;
  EXPECT_EQ(store_->rotate_api_key(r2->second.id, next, 9000).error().code, Errc::invalid_argument);
}

TEST_F(SqliteStoreTest, ProvidersCreateListRevoke) {
  const auto t1 = make_secret("pt_"), t2 = make_secret("pt_"), t3 = make_secret("pt_");
  auto p1 = store_->create_provider("acme", t1.prefix, t1.hash, 10);
  ASSERT_TRUE(p1.ok()) << p1.error().to_string();
  EXPECT_TRUE(is_id(p1->id, "prov_")) << p1->id;
  EXPECT_EQ(p1->prefix, t1.prefix);

  auto dup = store_->create_provider("acme", t2.prefix, t2.hash, 11);
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code, Errc::invalid_argument);
  EXPECT_NE(dup.error().message.find("named 'acme' already exists"), std::string::npos)
      << dup.error().message;
  EXPECT_EQ(store_->create_provider("", t2.prefix, t2.hash, 11).error().code,
            Errc::invalid_argument);

  auto p2 = store_->create_provider("globex", t2.prefix, t2.hash, 12);
  ASSERT_TRUE(p2.ok());
  // A provider *named* like another's id: revoking by that string must pick
  // the id match, and only it.
  auto p3 = store_->create_provider(p1->id, t3.prefix, t3.hash, 13);
  ASSERT_TRUE(p3.ok());

  auto list = store_->list_providers();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ((*list)[0].name, "acme");
  EXPECT_EQ((*list)[1].name, "globex");

  auto by_id = store_->revoke_provider(p1->id, 100);
  ASSERT_TRUE(by_id.ok()) << by_id.error().to_string();
  EXPECT_EQ(by_id->id, p1->id);
  EXPECT_EQ(by_id->revoked_ms, 100);
  list = store_->list_providers();
  EXPECT_FALSE((*list)[2].revoked_ms) << "the provider named like an id was revoked too";

  auto by_name = store_->revoke_provider("globex", 200);
  ASSERT_TRUE(by_name.ok());
  EXPECT_EQ(by_name->id, p2->id);
  auto by_hash = store_->revoke_provider(t3.hash, 300);
  ASSERT_TRUE(by_hash.ok());
  EXPECT_EQ(by_hash->id, p3->id);
  EXPECT_EQ(store_->revoke_provider("globex", 400)->revoked_ms, 200);

  auto missing = store_->revoke_provider("nobody", 1);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, Errc::not_found);
}

GenerationRecord generation(int i) {
  GenerationRecord g;
  g.id = "gen-" + std::to_string(i);
  g.key_id = "key_k" + std::to_string(i % 2);
  g.provider_id = "prov_p";
  g.node_id = "node-" + std::to_string(i);
  g.model = "tiny";
  g.model_sha256 = std::string(64, 'a');
  g.attestation = "standard";
  g.finish_reason = i % 2 ? "length" : "stop";
  g.stream = i % 2 == 1;
  g.prompt_tokens = 10 + i;
  g.completion_tokens = 20 + i;
  g.cached_prompt_tokens = i;
  g.queued_ms = 0.25 + i;
  g.prompt_ms = 1.5 + i;
  g.decode_ms = 30.125 + i;
  g.total_ms = 40.0625 + i;
  g.created_ms = 1700000000000 + i;
  return g;
}

void expect_same(const GenerationRecord& a, const GenerationRecord& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.key_id, b.key_id);
  EXPECT_EQ(a.provider_id, b.provider_id);
  EXPECT_EQ(a.node_id, b.node_id);
  EXPECT_EQ(a.model, b.model);
  EXPECT_EQ(a.model_sha256, b.model_sha256);
  EXPECT_EQ(a.attestation, b.attestation);
  EXPECT_EQ(a.finish_reason, b.finish_reason);
  EXPECT_EQ(a.stream, b.stream);
  EXPECT_EQ(a.prompt_tokens, b.prompt_tokens);
  EXPECT_EQ(a.completion_tokens, b.completion_tokens);
  EXPECT_EQ(a.cached_prompt_tokens, b.cached_prompt_tokens);
  EXPECT_EQ(a.queued_ms, b.queued_ms);
  EXPECT_EQ(a.prompt_ms, b.prompt_ms);
  EXPECT_EQ(a.decode_ms, b.decode_ms);
  EXPECT_EQ(a.total_ms, b.total_ms);
  EXPECT_EQ(a.created_ms, b.created_ms);
}

TEST_F(SqliteStoreTest, GenerationsBatchInsertAndGet) {
  EXPECT_TRUE(store_->insert_generations({}).ok());
  std::vector<GenerationRecord> batch;
  for (int i = 0; i < 50; ++i) batch.push_back(generation(i));
  auto st = store_->insert_generations(batch);
  ASSERT_TRUE(st.ok()) << st.error().to_string();
  for (const auto& g : batch) {
    auto got = store_->get_generation(g.id);
    ASSERT_TRUE(got.ok()) << g.id;
    expect_same(*got, g);
  }
  auto missing = store_->get_generation("gen-nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, Errc::not_found);
}

TEST_F(SqliteStoreTest, GenerationBatchIsAllOrNothing) {
  ASSERT_TRUE(store_->insert_generations(std::vector{generation(1)}).ok());
  // gen-2 is new, but gen-1 is a duplicate: the whole batch is refused.
  auto st = store_->insert_generations(std::vector{generation(2), generation(1)});
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::invalid_argument);
  EXPECT_NE(st.error().message.find("insert_generations"), std::string::npos) << st.error().message;
  EXPECT_EQ(store_->get_generation("gen-2").error().code, Errc::not_found);
  // The store is usable after the rollback.
  EXPECT_TRUE(store_->insert_generations(std::vector{generation(2)}).ok());
  EXPECT_TRUE(store_->get_generation("gen-2").ok());
}

NodeRecord node(const std::string& id, const std::string& provider, int64_t connected) {
  NodeRecord n;
  n.node_id = id;
  n.provider_id = provider;
  n.region = "eu-west";
  n.agent = "agora/0.1.0";
  n.models_json = R"([{"name":"tiny","sha256":"ab","quantization":"q8_0","slots":4,"busy":1}])";
  n.slots = 4;
  n.slots_busy = 1;
  n.connected_ms = connected;
  n.updated_ms = connected + 500;
  return n;
}

TEST_F(SqliteStoreTest, NodesReplaceAndList) {
  auto empty = store_->list_nodes();
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());

  ASSERT_TRUE(
      store_->replace_nodes(std::vector{node("n2", "prov_b", 5), node("n1", "prov_a", 7)}).ok());
  auto list = store_->list_nodes();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].node_id, "n1");  // by provider, then connection time
  const auto& n = (*list)[1];
  EXPECT_EQ(n.node_id, "n2");
  EXPECT_EQ(n.provider_id, "prov_b");
  EXPECT_EQ(n.region, "eu-west");
  EXPECT_EQ(n.agent, "agora/0.1.0");
  EXPECT_EQ(n.models_json, node("n2", "prov_b", 5).models_json);
  EXPECT_EQ(n.slots, 4);
  EXPECT_EQ(n.slots_busy, 1);
  EXPECT_EQ(n.connected_ms, 5);
  EXPECT_EQ(n.updated_ms, 505);

  ASSERT_TRUE(store_->replace_nodes(std::vector{node("n3", "prov_a", 9)}).ok());
  list = store_->list_nodes();
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].node_id, "n3");

  // A bad snapshot (duplicate node id) leaves the previous one in place.
  auto st = store_->replace_nodes(std::vector{node("n4", "prov_a", 1), node("n4", "prov_a", 2)});
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::invalid_argument);
  list = store_->list_nodes();
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].node_id, "n3");

  ASSERT_TRUE(store_->replace_nodes({}).ok());
  EXPECT_TRUE(store_->list_nodes()->empty());
}

// The gateway notices keys created or revoked by the CLI (another Store on
// the same file) through credentials_version; its own writes of generation
// records and node snapshots leave it alone.
TEST_F(SqliteStoreTest, CredentialsVersionFollowsKeyAndProviderChangesOnly) {
  auto cli = open_or_die(path_);
  ASSERT_NE(cli, nullptr);
  auto v0 = store_->credentials_version();
  ASSERT_TRUE(v0.ok()) << v0.error().to_string();
  EXPECT_EQ(*store_->credentials_version(), *v0);  // nothing happened

  const auto s = make_secret("gk_");
  auto key = cli->create_api_key("from-cli", s.prefix, s.hash, 1);
  ASSERT_TRUE(key.ok());
  auto v1 = store_->credentials_version();
  ASSERT_TRUE(v1.ok());
  EXPECT_NE(*v1, *v0);
  auto seen = store_->list_api_keys();
  ASSERT_EQ(seen->size(), 1u);
  EXPECT_EQ((*seen)[0].id, key->id);

  ASSERT_TRUE(cli->revoke_api_key(key->id, 2).ok());
  auto v2 = store_->credentials_version();
  EXPECT_NE(*v2, *v1);
  EXPECT_EQ((*store_->list_api_keys())[0].revoked_ms, 2);

  const auto p = make_secret("pt_");
  auto prov = cli->create_provider("from-cli", p.prefix, p.hash, 3);
  ASSERT_TRUE(prov.ok());
  auto v3 = store_->credentials_version();
  EXPECT_NE(*v3, *v2);
  ASSERT_TRUE(cli->revoke_provider(prov->id, 4).ok());
  auto v4 = store_->credentials_version();
  EXPECT_NE(*v4, *v3);

  // Reads, generation records and node snapshots (from either connection)
  // change nothing.
  ASSERT_TRUE(cli->list_providers().ok());
  store::GenerationRecord g;
  g.id = "gen-v";
  g.key_id = key->id;
  ASSERT_TRUE(cli->insert_generations(std::span(&g, 1)).ok());
  ASSERT_TRUE(store_->replace_nodes({}).ok());
  EXPECT_EQ(*store_->credentials_version(), *v4);
}

TEST_F(SqliteStoreTest, ReopeningKeepsData) {
  const auto s = make_secret("gk_");
  auto key = store_->create_api_key("kept", s.prefix, s.hash, 42);
  ASSERT_TRUE(key.ok());
  ASSERT_TRUE(store_->insert_generations(std::vector{generation(7)}).ok());
  store_.reset();

  auto again = open_or_die(path_);
  ASSERT_NE(again, nullptr);
  auto keys = again->list_api_keys();
  ASSERT_TRUE(keys.ok());
  ASSERT_EQ(keys->size(), 1u);
  EXPECT_EQ((*keys)[0].id, key->id);
  EXPECT_EQ((*keys)[0].hash, s.hash);
  EXPECT_EQ((*keys)[0].created_ms, 42);
  EXPECT_TRUE(again->get_generation("gen-7").ok());
  RawDb raw(path_);
  EXPECT_EQ(raw.scalar("PRAGMA user_version"), std::to_string(kSqliteSchemaVersion));
}

// Makes a current (schema-5) database look like schema 3 again.
void drop_schema4(RawDb& raw) {
  raw.exec("ALTER TABLE nodes DROP COLUMN attestation");  // schema 5
  raw.exec("DROP TRIGGER agreements_insert");
  for (const char* t : {"agreements", "agreement_acceptances", "audit_log", "audit_checkpoints", "conversations"}) {
    raw.exec(("DROP TABLE " + std::string(t)).c_str());
  }
  raw.exec("ALTER TABLE providers DROP COLUMN status");
  raw.exec("ALTER TABLE nodes DROP COLUMN identity_key");
  raw.exec("ALTER TABLE providers DROP COLUMN status_ms");
}

void drop_schema3_columns(RawDb& raw) {
  for (const char* c : {"hash_scheme", "role", "expires_ms", "rpm", "tpm", "max_concurrent", "models",
                        "lineage_id", "replaced_by"}) {
    raw.exec(("ALTER TABLE api_keys DROP COLUMN " + std::string(c)).c_str());
  }
  raw.exec("ALTER TABLE providers DROP COLUMN hash_scheme");
}

// A version-2 database's keys and providers were hashed with plain SHA-256:
// after the migration they are marked so (the gateway still accepts them),
// with default limits, no expiry, and their own lineage.
TEST_F(SqliteStoreTest, MigratesAVersionTwoDatabaseMarkingLegacyHashes) {
  const auto s = make_secret("gk_");
  const auto t = make_secret("pt_");
  ASSERT_TRUE(store_->create_api_key("old", s.prefix, s.hash, 1).ok());
  ASSERT_TRUE(store_->create_provider("oldp", t.prefix, t.hash, 1).ok());
  store_.reset();
  {
    RawDb raw(path_);
    drop_schema4(raw);
    drop_schema3_columns(raw);
    raw.exec("PRAGMA user_version = 2");
  }
  auto again = open_or_die(path_);
  ASSERT_NE(again, nullptr);
  auto k = (*again->list_api_keys())[0];
  EXPECT_EQ(k.hash, s.hash);
  EXPECT_EQ(k.hash_scheme, kHashLegacy);
  EXPECT_EQ(k.role, "client");
  EXPECT_EQ(k.lineage_id, k.id);
  EXPECT_FALSE(k.expires_ms || k.rpm || k.tpm || k.max_concurrent || k.replaced_by);
  EXPECT_TRUE(k.models.empty());
  EXPECT_EQ((*again->list_providers())[0].hash_scheme, kHashLegacy);
  // New rows are keyed hashes.
  const auto s2 = make_secret("gk_");
  EXPECT_EQ(again->create_api_key("new", s2.prefix, s2.hash, 2)->hash_scheme, kHashHmac);
}

// A version-1 database from a version-1 build (keys, no credentials counter) is
// migrated in place: its rows stay, and the counter works from then on.
TEST_F(SqliteStoreTest, MigratesAVersionOneDatabase) {
  const auto s = make_secret("gk_");
  auto key = store_->create_api_key("old", s.prefix, s.hash, 1);
  ASSERT_TRUE(key.ok());
  store_.reset();
  {
    RawDb raw(path_);
    drop_schema4(raw);
    for (const char* t : {"api_keys", "providers"}) {
      for (const char* e : {"insert", "update", "delete"}) {
        raw.exec(("DROP TRIGGER " + std::string(t) + "_" + e).c_str());
      }
    }
    raw.exec("DROP TABLE credentials_version");
    drop_schema3_columns(raw);
    raw.exec("PRAGMA user_version = 1");
  }
  auto again = open_or_die(path_);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ((*again->list_api_keys())[0].id, key->id);
  auto v0 = again->credentials_version();
  ASSERT_TRUE(v0.ok()) << v0.error().to_string();
  ASSERT_TRUE(again->revoke_api_key(key->id, 2).ok());
  EXPECT_NE(*again->credentials_version(), *v0);
  RawDb raw(path_);
  EXPECT_EQ(raw.scalar("PRAGMA user_version"), std::to_string(kSqliteSchemaVersion));
}

TEST_F(SqliteStoreTest, RefusesASchemaFromANewerBuild) {
  store_.reset();
  {
    RawDb raw(path_);
    raw.exec("PRAGMA user_version = 99");
  }
  auto s = open_sqlite_store(path_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, Errc::unsupported);
  EXPECT_NE(s.error().message.find("99"), std::string::npos) << s.error().message;
}

TEST(SqliteStore, NotADatabaseIsCorrupt) {
  const auto path = agora::testing::temp_dir() / "agora.db";
  std::ofstream(path) << std::string(8192, 'x');
  auto s = open_sqlite_store(path);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, Errc::corrupt) << s.error().to_string();
}

TEST(SqliteStore, UnwritableLocationIsAnIoError) {
  const auto dir = agora::testing::temp_dir();
  std::ofstream(dir / "file") << "x";
  auto s = open_sqlite_store(dir / "file" / "agora.db");  // parent is a file
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, Errc::io_error) << s.error().to_string();
  auto d = open_sqlite_store(dir);  // a directory, not a file
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().code, Errc::io_error) << d.error().to_string();
}

}  // namespace
}  // namespace agora::store
namespace agora::store {
// The gateway keeps two connections to its database while the CLI, another
// process, opens and closes its own to create and revoke keys. Opening the
// second connection must not drop the first one's file locks (closing any
// descriptor of the file would), or the CLI takes itself for the last user,
// deletes the WAL on close, and the gateway reads a stale snapshot for ever.
TEST(SqliteStore, TwoConnectionsInOneProcessSeeAnotherProcessesWrites) {
  const auto path = agora::testing::temp_dir() / "agora.db";
  auto a = open_or_die(path);
  auto b = open_or_die(path);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(a->list_api_keys().ok());
  ASSERT_TRUE(b->list_api_keys().ok());
  for (int i = 0; i < 3; ++i) {
    // Another process: open, write, close.
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // A fresh process image (a forked copy would share this process's
      // SQLite lock bookkeeping): this binary in its child role (kIsChild).
      const std::string db = "AGORA_STORE_CHILD_DB=" + path.string();
      const std::string name = "AGORA_STORE_CHILD_NAME=cli-" + std::to_string(i);
      char* const argv[] = {const_cast<char*>("store_test"), nullptr};
      char* const envp[] = {const_cast<char*>(db.c_str()), const_cast<char*>(name.c_str()), nullptr};
      ::execve("/proc/self/exe", argv, envp);
      ::_exit(127);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child " << i;
    auto seen_a = a->list_api_keys();
    auto seen_b = b->list_api_keys();
    ASSERT_TRUE(seen_a && seen_b);
    EXPECT_EQ(seen_a->size(), size_t(i + 1)) << "after write " << i;
    EXPECT_EQ(seen_b->size(), size_t(i + 1)) << "after write " << i;
  }
}

// The other process of the test above: when this binary starts with
// AGORA_STORE_CHILD_DB set, it creates one key in that database and exits
// before any test runs.
const bool kIsChild = [] {
  const char* db = std::getenv("AGORA_STORE_CHILD_DB");
  const char* name = std::getenv("AGORA_STORE_CHILD_NAME");
  if (!db || !name) return false;
  bool ok = false;
  {
    auto cli = open_sqlite_store(db);
    const auto s = make_secret("gk_");
    ok = cli && (*cli)->create_api_key(name, s.prefix, s.hash, 1).ok();
  }
  ::_exit(ok ? 0 : 1);
}();
}  // namespace agora::store

namespace agora::store {
namespace {

class ProviderStatusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = open_sqlite_store(database_path(agora::testing::temp_dir() / "data"));
    ASSERT_TRUE(s) << s.error().to_string();
    store_ = std::move(*s);
  }
  std::unique_ptr<Store> store_;
};

TEST_F(ProviderStatusTest, SuspendResumeTerminateAndTerminatedIsFinal) {
  auto p = store_->create_provider("p", "pt_abcd", std::string(64, 'a'), 1);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->status, kProviderActive);
  const auto v0 = *store_->credentials_version();
  auto s = store_->set_provider_status("p", kProviderSuspended, 2, {});
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_EQ(s->status, kProviderSuspended);
  EXPECT_EQ(s->status_ms, 2);
  EXPECT_FALSE(s->revoked_ms);
  EXPECT_NE(*store_->credentials_version(), v0);  // a running gateway notices
  ASSERT_TRUE(store_->set_provider_status(p->id, kProviderActive, 3, {}));
  auto t = store_->set_provider_status(p->id, kProviderTerminated, 4, {});
  ASSERT_TRUE(t);
  EXPECT_EQ(t->status, kProviderTerminated);
  EXPECT_EQ(t->revoked_ms, 4);  // the token stops working
  auto again = store_->set_provider_status(p->id, kProviderActive, 5, {});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::invalid_argument);
  EXPECT_FALSE(store_->set_provider_status(p->id, "paused", 6, {}));
  EXPECT_EQ(store_->set_provider_status("nobody", kProviderSuspended, 6, {}).error().code, Errc::not_found);
}

TEST_F(ProviderStatusTest, TotalsCountWhatAProviderServed) {
  GenerationRecord g;
  g.key_id = "key_a";
  g.provider_id = "prov_x";
  g.prompt_tokens = 3;
  g.completion_tokens = 5;
  std::vector<GenerationRecord> gens;
  for (int i = 0; i < 3; ++i) {
    g.id = "gen-" + std::to_string(i);
    gens.push_back(g);
  }
  ASSERT_TRUE(store_->insert_generations(gens));
  auto t = store_->provider_totals("prov_x");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->jobs, 3);
  EXPECT_EQ(t->prompt_tokens, 9);
  EXPECT_EQ(t->completion_tokens, 15);
  EXPECT_EQ(store_->provider_totals("prov_y")->jobs, 0);
}

TEST_F(ProviderStatusTest, AgreementsOnlyMoveForwardAndAcceptancesAreRecordedOnce) {
  EXPECT_FALSE(*store_->current_agreement());
  const auto v0 = *store_->credentials_version();
  ASSERT_TRUE(store_->publish_agreement({1, std::string(64, '1'), "Version: 1", 10}, {}));
  EXPECT_NE(*store_->credentials_version(), v0);
  EXPECT_EQ(store_->publish_agreement({1, std::string(64, '2'), "Version: 1b", 11}, {}).error().code,
            Errc::invalid_argument);
  EXPECT_EQ(store_->publish_agreement({2, std::string(64, '1'), "Version: 1", 11}, {}).error().code,
            Errc::invalid_argument);  // the same text again
  ASSERT_TRUE(store_->publish_agreement({2, std::string(64, '2'), "Version: 2", 12}, {}));
  auto cur = store_->current_agreement();
  ASSERT_TRUE(cur && *cur);
  EXPECT_EQ((*cur)->version, 2);
  EXPECT_EQ(store_->get_agreement(1)->text, "Version: 1");
  EXPECT_EQ(store_->get_agreement(9).error().code, Errc::not_found);

  AcceptanceRecord a{"prov_x", "node-1", 2, std::string(64, '2'), 20};
  const AuditEvent e{20, "provider.agreement_accepted", "", "prov_x", "{}"};
  EXPECT_TRUE(*store_->record_acceptance(a, std::span<const AuditEvent>(&e, 1)));
  a.accepted_ms = 30;
  EXPECT_FALSE(*store_->record_acceptance(a, std::span<const AuditEvent>(&e, 1)));  // the first time stays
  int entries = 0;
  ASSERT_TRUE(store_->scan_audit({}, [&](const AuditEntry&) { return ++entries > 0; }));
  EXPECT_EQ(entries, 1);  // the entry only with the new acceptance, in its transaction
  auto list = store_->list_acceptances();
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].accepted_ms, 20);
}

}  // namespace
}  // namespace agora::store
