// StoreWorker: every record reaches the store, in order, even when the
// writer is far behind (record() then waits instead of growing memory or
// dropping records); stop() flushes what is queued.
#include "gateway/store_worker.h"

#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include "store/audit.h"
#include "store/sqlite_store.h"

namespace agora::gateway {
namespace {

// A real SQLite store whose insert_generations can be held shut, so the test
// decides exactly when the writer makes progress (no timing involved).
class GatedStore : public store::Store {
 public:
  explicit GatedStore(std::unique_ptr<store::Store> inner) : inner_(std::move(inner)) {}

  void close_gate() { std::lock_guard l(mu_); open_ = false; }
  void open_gate() { { std::lock_guard l(mu_); open_ = true; } cv_.notify_all(); }
  void wait_for_inserts(int n) { std::unique_lock l(mu_); cv_.wait(l, [&] { return inserts_started_ >= n; }); }

  Status insert_generations(std::span<const store::GenerationRecord> r,
                            std::span<const store::AuditEvent> a) override {
    {
      std::unique_lock l(mu_);
      ++inserts_started_;
      cv_.notify_all();
      cv_.wait(l, [&] { return open_; });
    }
    return inner_->insert_generations(r, a);
  }
  Result<store::ProviderRecord> find_provider(const std::string& k) override { return inner_->find_provider(k); }
  Result<store::ProviderRecord> set_provider_status(const std::string& k, const std::string& s, int64_t t,
                                                    std::span<const store::AuditEvent> a) override {
    return inner_->set_provider_status(k, s, t, a);
  }
  Result<store::ProviderTotals> provider_totals(const std::string& id) override { return inner_->provider_totals(id); }
  Status publish_agreement(const store::AgreementRecord& a, std::span<const store::AuditEvent> e) override {
    return inner_->publish_agreement(a, e);
  }
  Result<std::optional<store::AgreementRecord>> current_agreement() override { return inner_->current_agreement(); }
  Result<store::AgreementRecord> get_agreement(int32_t v) override { return inner_->get_agreement(v); }
  Result<bool> record_acceptance(const store::AcceptanceRecord& a, std::span<const store::AuditEvent> e) override {
    return inner_->record_acceptance(a, e);
  }
  Result<std::vector<store::AcceptanceRecord>> list_acceptances() override { return inner_->list_acceptances(); }
  Status append_audit(std::span<const store::AuditEvent> e) override { return inner_->append_audit(e); }
  Status scan_audit(const store::AuditFilter& f, const std::function<bool(const store::AuditEntry&)>& each) override {
    return inner_->scan_audit(f, each);
  }
  Result<std::optional<store::AuditCheckpoint>> checkpoint_audit(const std::function<std::string(std::string_view)>& sign,
                                                                 const std::string& pk, int64_t t) override {
    return inner_->checkpoint_audit(sign, pk, t);
  }
  Result<std::vector<store::AuditCheckpoint>> list_audit_checkpoints() override {
    return inner_->list_audit_checkpoints();
  }
  Result<std::optional<store::ConversationRecord>> get_conversation(const std::string& o, const std::string& i) override {
    return inner_->get_conversation(o, i);
  }
  Status put_conversation(const store::ConversationRecord& c) override { return inner_->put_conversation(c); }
  Result<bool> delete_conversation(const std::string& o, const std::string& i) override {
    return inner_->delete_conversation(o, i);
  }
  Result<int64_t> delete_expired_conversations(int64_t t) override { return inner_->delete_expired_conversations(t); }
  Status purge_deleted() override { return inner_->purge_deleted(); }
  using store::Store::create_api_key;
  Result<store::ApiKeyRecord> create_api_key(const store::ApiKeyRecord& spec) override {
    return inner_->create_api_key(spec);
  }
  Result<std::vector<store::ApiKeyRecord>> list_api_keys() override { return inner_->list_api_keys(); }
  Result<store::ApiKeyRecord> find_api_key(const std::string& k) override { return inner_->find_api_key(k); }
  Result<std::pair<store::ApiKeyRecord, store::ApiKeyRecord>> rotate_api_key(const std::string& id,
                                                                             const store::ApiKeyRecord& s,
                                                                             int64_t until) override {
    return inner_->rotate_api_key(id, s, until);
  }
  Result<store::ApiKeyRecord> revoke_api_key(const std::string& k, int64_t t) override { return inner_->revoke_api_key(k, t); }
  Result<store::ProviderRecord> create_provider(const std::string& n, const std::string& p, const std::string& h,
                                                int64_t t) override { return inner_->create_provider(n, p, h, t); }
  Result<std::vector<store::ProviderRecord>> list_providers() override { return inner_->list_providers(); }
  Result<store::ProviderRecord> revoke_provider(const std::string& k, int64_t t) override { return inner_->revoke_provider(k, t); }
  Result<store::GenerationRecord> get_generation(const std::string& id) override { return inner_->get_generation(id); }
  Status replace_nodes(std::span<const store::NodeRecord> n) override { return inner_->replace_nodes(n); }
  Result<std::vector<store::NodeRecord>> list_nodes() override { return inner_->list_nodes(); }
  Result<uint64_t> credentials_version() override { return inner_->credentials_version(); }

 private:
  std::unique_ptr<store::Store> inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = true;
  int inserts_started_ = 0;
};

store::GenerationRecord gen(int i) {
  store::GenerationRecord r;
  r.id = "gen-test-" + std::to_string(i);
  r.key_id = "key_test";
  r.model = "m";
  r.finish_reason = "stop";
  r.completion_tokens = i;
  r.created_ms = 1000 + i;
  return r;
}

class StoreWorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("agora-store-worker-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::unique_ptr<store::Store> open() {
    auto s = store::open_sqlite_store((dir_ / "agora.db").string());
    EXPECT_TRUE(s) << s.error().to_string();
    return std::move(*s);
  }
  std::filesystem::path dir_;
};

TEST_F(StoreWorkerTest, BacklogAtTheCapMakesRecordWaitAndLosesNothing) {
  boost::asio::io_context io;
  auto gated = std::make_unique<GatedStore>(open());
  GatedStore* gate = gated.get();
  StoreWorker::Options opt;
  opt.batch = 4;
  opt.txn_records = 3;  // batches span several transactions
  opt.max_backlog = 8;
  StoreWorker w(std::move(gated), open(), io.get_executor(), {}, opt);
  ASSERT_TRUE(w.start());

  gate->close_gate();
  for (int i = 0; i < 4; ++i) w.record(gen(i));  // a full batch wakes the writer...
  gate->wait_for_inserts(1);                     // ...which takes it and blocks in the store
  for (int i = 4; i < 12; ++i) w.record(gen(i)); // fills the backlog to the cap
  EXPECT_EQ(w.backpressure_waits(), 0u);

  std::thread producer([&] { w.record(gen(12)); });  // must wait for the writer
  while (w.backpressure_waits() == 0) std::this_thread::yield();
  gate->open_gate();
  producer.join();
  w.stop();

  auto check = open();
  for (int i = 0; i <= 12; ++i) {
    auto r = check->get_generation(gen(i).id);
    ASSERT_TRUE(r) << "record " << i << " lost: " << r.error().to_string();
    EXPECT_EQ(r->completion_tokens, i);
  }
  EXPECT_EQ(w.backpressure_waits(), 1u);
}

// Key changes reach the event loop through the control thread even while
// the writer is stuck inside a transaction (or starved of CPU).
TEST_F(StoreWorkerTest, CredentialChangesArriveWhileTheWriterIsStuck) {
  boost::asio::io_context io;
  auto guard = boost::asio::make_work_guard(io);
  auto gated = std::make_unique<GatedStore>(open());
  GatedStore* gate = gated.get();
  std::vector<std::vector<store::ApiKeyRecord>> seen;
  StoreWorker::Options opt;
  opt.batch = 1;
  opt.poll_interval = std::chrono::milliseconds(10);
  StoreWorker w(std::move(gated), open(), io.get_executor(),
                {[&](StoreWorker::Credentials c) { seen.push_back(std::move(c.keys)); }},
                opt);
  ASSERT_TRUE(w.start());
  ASSERT_EQ(seen.size(), 1u);  // the initial load, on this thread
  EXPECT_TRUE(seen[0].empty());

  gate->close_gate();
  w.record(gen(0));
  gate->wait_for_inserts(1);  // the writer is now stuck in insert_generations

  auto cli = open();
  auto key = cli->create_api_key("late", "gk_late", std::string(64, 'a'), 5);
  ASSERT_TRUE(key) << key.error().to_string();
  while (seen.size() < 2) io.run_one();
  ASSERT_EQ(seen[1].size(), 1u);
  EXPECT_EQ(seen[1][0].id, key->id);

  for (int i = 0; i < 3; ++i) {  // and each later change, from a connection that comes and goes
    auto key2 = open()->create_api_key("later-" + std::to_string(i), "gk_late", std::string(63, 'b') + char('0' + i), 6);
    ASSERT_TRUE(key2) << key2.error().to_string();
    while (seen.size() < size_t(3 + i)) io.run_one();
    EXPECT_EQ(seen.back().size(), size_t(2 + i));
  }

  gate->open_gate();
  w.stop();
  EXPECT_TRUE(open()->get_generation(gen(0).id));
}

TEST_F(StoreWorkerTest, StopFlushesRecordsBelowOneBatch) {
  boost::asio::io_context io;
  StoreWorker w(open(), open(), io.get_executor(), {});
  ASSERT_TRUE(w.start());
  for (int i = 0; i < 3; ++i) w.record(gen(i));
  w.stop();
  auto check = open();
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(check->get_generation(gen(i).id)) << i;
}

// Every generation record gets its "job" audit entry in the same
// transaction, the loop's events are appended, and stop() signs the end of
// the chain: the whole log then verifies under the signer's key.
TEST_F(StoreWorkerTest, JobsAndEventsAreAuditedAndStopSignsACheckpoint) {
  boost::asio::io_context io;
  auto signer = crypto::Ed25519Signer::from_seed(std::string(32, '\x07'));
  ASSERT_TRUE(signer);
  StoreWorker::Options opt;
  opt.audit_signer = std::move(*signer);
  opt.checkpoint_interval = std::chrono::hours(1);  // only the one at stop
  const std::string public_key = opt.audit_signer->public_key_hex();
  StoreWorker w(open(), open(), io.get_executor(), {}, opt);
  ASSERT_TRUE(w.start());
  w.audit(store::AuditEvent{5, "provider.connected", "", "prov_x", R"({"node_id":"n1"})"});
  w.accept_agreement(store::AcceptanceRecord{"prov_x", "n1", 1, std::string(64, 'e'), 6},
                     store::AuditEvent{6, "provider.agreement_accepted", "", "prov_x", R"({"node_id":"n1"})"});
  for (int i = 0; i < 3; ++i) w.record(gen(i));
  w.stop();

  auto check = open();
  std::vector<store::AuditEntry> entries;
  ASSERT_TRUE(check->scan_audit({}, [&](const store::AuditEntry& e) {
    entries.push_back(e);
    return true;
  }));
  ASSERT_EQ(entries.size(), 5u);
  EXPECT_EQ(entries[0].kind, "provider.connected");
  EXPECT_EQ(entries[1].kind, "provider.agreement_accepted");
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(entries[2 + i].kind, "job");
    EXPECT_EQ(entries[2 + i].key_id, "key_test");
    EXPECT_NE(entries[2 + i].entry.find(gen(i).id), std::string::npos);
  }
  auto acceptances = check->list_acceptances();
  ASSERT_TRUE(acceptances);
  ASSERT_EQ(acceptances->size(), 1u);
  auto report = store::verify_audit(*check, public_key);
  ASSERT_TRUE(report) << report.error().to_string();
  EXPECT_TRUE(report->ok()) << report->problems.front().message;
  EXPECT_EQ(report->checkpoints, 1);
  EXPECT_EQ(report->last_signed_seq, 5);
}

}  // namespace
}  // namespace agora::gateway
