// The audit trail: entries chain by hash, checkpoints are signed, and
// verify_audit() names every kind of tampering an attacker with write
// access to the database file can do — modify, delete, insert, reorder,
// rewrite the chain from some point on, cut its end, forge a checkpoint —
// by editing the SQLite file through a raw connection, as they would.
#include "store/audit.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <thread>

#include "crypto/ed25519.h"
#include "store/sqlite_store.h"
#include "support/test_models.h"

namespace agora::store {
namespace {

namespace fs = std::filesystem;

struct RawDb {
  explicit RawDb(const fs::path& path) { EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK); }
  ~RawDb() { sqlite3_close_v2(db); }
  void exec(const std::string& sql) {
    char* err = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "") << "\n" << sql;
    sqlite3_free(err);
  }
  std::string scalar(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    std::string out;
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
      out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return out;
  }
  sqlite3* db = nullptr;
};

AuditEvent event(int i) {
  AuditEvent e;
  e.time_ms = 1000 + i;
  e.kind = i % 2 ? "job" : "provider.connected";
  e.key_id = i % 2 ? "key_" + std::to_string(i) : "";
  e.provider_id = "prov_" + std::to_string(i % 3);
  e.data_json = R"({"n":)" + std::to_string(i) + "}";
  return e;
}

class AuditTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = database_path(agora::testing::temp_dir() / "data");
    auto s = open_sqlite_store(path_);
    ASSERT_TRUE(s) << s.error().to_string();
    store_ = std::move(*s);
    auto signer = crypto::Ed25519Signer::from_seed(std::string(32, 'k'));
    ASSERT_TRUE(signer);
    signer_ = std::move(*signer);
  }
  // n entries, signed at the end.
  void fill(int n) {
    std::vector<AuditEvent> events;
    for (int i = 1; i <= n; ++i) events.push_back(event(i));
    ASSERT_TRUE(store_->append_audit(events));
    sign();
  }
  void sign() {
    auto c = checkpoint_audit(*store_, *signer_, 5000);
    ASSERT_TRUE(c) << c.error().to_string();
  }
  AuditReport verify() {
    auto r = verify_audit(*store_, signer_->public_key_hex());
    EXPECT_TRUE(r) << r.error().to_string();
    return r ? *r : AuditReport{};
  }
  // The report names entry `seq` in a problem containing `what`.
  static ::testing::AssertionResult names(const AuditReport& r, int64_t seq, const std::string& what) {
    std::string all;
    for (const auto& p : r.problems) {
      if (p.seq == seq && p.message.find(what) != std::string::npos) return ::testing::AssertionSuccess();
      all += "\n  [" + std::to_string(p.seq) + "] " + p.message;
    }
    return ::testing::AssertionFailure() << "no problem at " << seq << " mentioning '" << what << "'; got:" << all;
  }
  // Recomputes every hash from `from` on, as an attacker who knows the
  // (public) hashing rule would after changing the chain.
  void rehash_from(RawDb& raw, int64_t from) {
    std::vector<AuditEntry> rows;
    ASSERT_TRUE(store_->scan_audit({}, [&](const AuditEntry& e) {
      rows.push_back(e);
      return true;
    }));
    std::string prev(kAuditGenesisHash);
    for (auto& e : rows) {
      if (e.seq >= from) {
        const std::string h = audit_hash(prev, e.entry);
        raw.exec("UPDATE audit_log SET prev_hash = '" + prev + "', hash = '" + h + "' WHERE seq = " +
                 std::to_string(e.seq));
        e.hash = h;
      }
      prev = e.hash;
    }
  }

  fs::path path_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<crypto::Ed25519Signer> signer_;
};

TEST_F(AuditTest, AnIntactChainVerifiesAndLinksEachEntryToTheOneBefore) {
  fill(10);
  auto r = verify();
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.entries, 10);
  EXPECT_EQ(r.checkpoints, 1);
  EXPECT_EQ(r.last_signed_seq, 10);
  std::vector<AuditEntry> rows;
  ASSERT_TRUE(store_->scan_audit({}, [&](const AuditEntry& e) {
    rows.push_back(e);
    return true;
  }));
  ASSERT_EQ(rows.size(), 10u);
  EXPECT_EQ(rows[0].prev_hash, kAuditGenesisHash);
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i].seq, static_cast<int64_t>(i + 1));
    EXPECT_EQ(rows[i].hash, audit_hash(rows[i].prev_hash, rows[i].entry));
    if (i > 0) EXPECT_EQ(rows[i].prev_hash, rows[i - 1].hash);
  }
  EXPECT_EQ(rows[2].entry, audit_entry_text(3, event(3)));
}

TEST_F(AuditTest, AModifiedEntryIsNamed) {
  fill(8);
  RawDb raw(path_);
  raw.exec(R"(UPDATE audit_log SET entry = replace(entry, '"n":5', '"n":6') WHERE seq = 5)");
  auto r = verify();
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(names(r, 5, "modified"));
}

TEST_F(AuditTest, AModifiedQueryColumnIsNamed) {
  fill(4);
  RawDb raw(path_);
  raw.exec("UPDATE audit_log SET provider_id = 'prov_innocent' WHERE seq = 2");
  EXPECT_TRUE(names(verify(), 2, "columns differ"));
}

TEST_F(AuditTest, ADeletedEntryIsNamed) {
  fill(8);
  RawDb raw(path_);
  raw.exec("DELETE FROM audit_log WHERE seq = 4");
  auto r = verify();
  EXPECT_TRUE(names(r, 4, "missing (deleted)"));
  EXPECT_TRUE(names(r, 5, "does not follow"));
}

TEST_F(AuditTest, DeletingAndRenumberingIsCaughtByTheLinksAndTheCheckpoint) {
  fill(8);
  RawDb raw(path_);
  raw.exec("DELETE FROM audit_log WHERE seq = 4");
  for (int s = 5; s <= 8; ++s) raw.exec("UPDATE audit_log SET seq = " + std::to_string(s - 1) + " WHERE seq = " + std::to_string(s));
  auto r = verify();
  EXPECT_TRUE(names(r, 4, "another position"));  // the entry text carries its seq
  EXPECT_TRUE(names(r, 8, "entries that are gone"));
}

TEST_F(AuditTest, AnInsertedEntryIsNamedEvenWithTheChainRecomputed) {
  fill(6);
  {
    RawDb raw(path_);
    for (int s = 6; s >= 3; --s) {
      raw.exec("UPDATE audit_log SET seq = " + std::to_string(s + 1) + " WHERE seq = " + std::to_string(s));
    }
    AuditEvent forged = event(99);
    raw.exec("INSERT INTO audit_log (seq, time_ms, kind, key_id, provider_id, entry, prev_hash, hash) VALUES (3, " +
             std::to_string(forged.time_ms) + ", '" + forged.kind + "', '" + forged.key_id + "', '" +
             forged.provider_id + "', '" + audit_entry_text(3, forged) + "', 'x', 'x')");
    rehash_from(raw, 3);
  }
  auto r = verify();
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(names(r, 4, "another position"));  // the shifted entry knows it was entry 3
  EXPECT_TRUE(names(r, 6, "differs from what the checkpoint signed"));
}

TEST_F(AuditTest, ReorderedEntriesAreNamed) {
  fill(6);
  RawDb raw(path_);
  // Swap the whole rows of entries 2 and 3 (content, links and hashes).
  raw.exec("UPDATE audit_log SET seq = -2 WHERE seq = 2");
  raw.exec("UPDATE audit_log SET seq = 2 WHERE seq = 3");
  raw.exec("UPDATE audit_log SET seq = 3 WHERE seq = -2");
  auto r = verify();
  EXPECT_TRUE(names(r, 2, "does not follow"));
  EXPECT_TRUE(names(r, 2, "another position"));
  EXPECT_TRUE(names(r, 3, "another position"));
}

TEST_F(AuditTest, ARewrittenChainFailsAtTheSignedCheckpoint) {
  fill(6);
  {
    RawDb raw(path_);
    raw.exec(R"(UPDATE audit_log SET entry = replace(entry, '"n":2', '"n":7') WHERE seq = 2)");
    rehash_from(raw, 2);  // every link consistent again
  }
  auto r = verify();
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(names(r, 6, "differs from what the checkpoint signed"));
  EXPECT_EQ(r.checkpoints, 0);
}

// Rewriting from some point on and deleting the checkpoints that would
// show it: only a hash known from outside the database can tell.
TEST_F(AuditTest, ARewriteWithItsCheckpointsDeletedIsCaughtByAnOutsideAnchor) {
  fill(6);
  std::string hash6;
  ASSERT_TRUE(store_->scan_audit({}, [&](const AuditEntry& e) {
    if (e.seq == 6) hash6 = e.hash;
    return true;
  }));
  {
    RawDb raw(path_);
    raw.exec(R"(UPDATE audit_log SET entry = replace(entry, '"n":3', '"n":8') WHERE seq = 3)");
    rehash_from(raw, 3);
    raw.exec("DELETE FROM audit_checkpoints");
  }
  EXPECT_TRUE(verify().ok());  // what the database alone can show
  const std::vector<AuditAnchor> anchors{{6, hash6}};
  auto r = verify_audit(*store_, signer_->public_key_hex(), anchors);
  ASSERT_TRUE(r);
  EXPECT_TRUE(names(*r, 6, "differs from the anchor"));
  const std::vector<AuditAnchor> beyond{{9, hash6}};
  EXPECT_TRUE(names(*verify_audit(*store_, signer_->public_key_hex(), beyond), 9, "vouches for entries that are gone"));
}

TEST_F(AuditTest, CuttingTheEndBelowACheckpointIsNamed) {
  fill(6);
  RawDb raw(path_);
  raw.exec("DELETE FROM audit_log WHERE seq > 4");
  EXPECT_TRUE(names(verify(), 6, "the log ends at entry 4"));
}

TEST_F(AuditTest, AForgedOrForeignCheckpointIsNamed) {
  fill(3);
  {
    RawDb raw(path_);
    raw.exec("UPDATE audit_checkpoints SET time_ms = time_ms + 1");  // the signature covers it
  }
  EXPECT_TRUE(names(verify(), 3, "signature does not verify"));
  // A checkpoint signed with another key (an attacker's own) does not count.
  auto other = crypto::Ed25519Signer::from_seed(std::string(32, 'x'));
  ASSERT_TRUE(other);
  ASSERT_TRUE(store_->append_audit(std::vector<AuditEvent>{event(4)}));
  ASSERT_TRUE(checkpoint_audit(*store_, **other, 6000));
  EXPECT_TRUE(names(verify(), 4, "signed by another key"));
}

TEST_F(AuditTest, UnsignedEntriesAfterTheLastCheckpointAreReportedNotFailed) {
  fill(3);
  ASSERT_TRUE(store_->append_audit(std::vector<AuditEvent>{event(4), event(5)}));
  auto r = verify();
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.last_seq, 5);
  EXPECT_EQ(r.last_signed_seq, 3);
  // Signing twice with nothing new adds nothing.
  sign();
  auto again = checkpoint_audit(*store_, *signer_, 7000);
  ASSERT_TRUE(again);
  EXPECT_FALSE(*again);
}

// Two connections (a gateway and the CLI) appending at once still make one
// chain: each append is one write transaction that reads the last entry.
TEST_F(AuditTest, ConcurrentAppendersFromTwoConnectionsMakeOneChain) {
  auto second = open_sqlite_store(path_);
  ASSERT_TRUE(second);
  auto run = [](Store* s, int base) {
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(s->append_audit(std::vector<AuditEvent>{event(base + i)}));
  };
  std::thread a(run, store_.get(), 0), b(run, second->get(), 1000);
  a.join();
  b.join();
  sign();
  auto r = verify();
  EXPECT_TRUE(r.ok()) << (r.problems.empty() ? "" : r.problems[0].message);
  EXPECT_EQ(r.entries, 100);
}

TEST_F(AuditTest, QueriesFilterByKeyProviderKindAndTime) {
  fill(12);
  auto count = [&](AuditFilter f) {
    int n = 0;
    EXPECT_TRUE(store_->scan_audit(f, [&](const AuditEntry&) {
      ++n;
      return true;
    }));
    return n;
  };
  AuditFilter by_provider;
  by_provider.provider_id = "prov_1";
  EXPECT_EQ(count(by_provider), 4);  // 1, 4, 7, 10
  AuditFilter by_key;
  by_key.key_id = "key_7";
  EXPECT_EQ(count(by_key), 1);
  AuditFilter by_kind;
  by_kind.kind = "job";
  EXPECT_EQ(count(by_kind), 6);
  AuditFilter by_time;
  by_time.since_ms = 1005;
  by_time.until_ms = 1008;
  EXPECT_EQ(count(by_time), 3);
  AuditFilter limited;
  limited.limit = 5;
  EXPECT_EQ(count(limited), 5);
}

TEST(AuditFormat, JobEntriesCarryMetadataOnly) {
  GenerationRecord g;
  g.id = "gen-1";
  g.key_id = "key_a";
  g.provider_id = "prov_b";
  g.node_id = "n";
  g.model = "m";
  g.model_sha256 = std::string(64, 'c');
  g.finish_reason = "stop";
  g.prompt_tokens = 3;
  g.completion_tokens = 4;
  g.created_ms = 10'000;
  g.total_ms = 25;
  const AuditEvent e = audit_event_for(g);
  EXPECT_EQ(e.kind, "job");
  EXPECT_EQ(e.key_id, "key_a");
  EXPECT_EQ(e.provider_id, "prov_b");
  EXPECT_EQ(e.time_ms, 10'025);
  const std::string text = audit_entry_text(1, e);
  for (const char* field : {"\"generation_id\":\"gen-1\"", "\"prompt_tokens\":3", "\"completion_tokens\":4",
                            "\"outcome\":\"stop\"", "\"model_sha256\""}) {
    EXPECT_NE(text.find(field), std::string::npos) << field << " in " << text;
  }
}

}  // namespace
}  // namespace agora::store
