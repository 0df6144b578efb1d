#include "crypto/master_secret.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

namespace agora::crypto {
namespace {

namespace fs = std::filesystem;

class MasterSecretTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("agora-master-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(MasterSecretTest, CreatedOwnerOnlyAndStable) {
  const auto path = dir_ / "master.key";
  EXPECT_EQ(MasterSecret::load(path, /*create=*/false).error().code, Errc::not_found);
  auto a = MasterSecret::load(path, /*create=*/true);
  ASSERT_TRUE(a) << a.error().to_string();
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(fs::file_size(path), 65u);  // 64 hex digits and a newline
  auto b = MasterSecret::load(path, /*create=*/false);
  ASSERT_TRUE(b);
  EXPECT_EQ((*a)->hash_api_key("gk_x"), (*b)->hash_api_key("gk_x"));
  EXPECT_EQ((*a)->derive("agora/v1/conversations", "key_1", 32), (*b)->derive("agora/v1/conversations", "key_1", 32));
}

TEST_F(MasterSecretTest, DerivedKeysAreSeparatedByPurposeAndContext) {
  auto s = MasterSecret::from_bytes(std::string(32, 'k'));
  const std::string key = "gk_sameinput";
  EXPECT_NE(s->hash_api_key(key), s->hash_provider_token(key));
  EXPECT_EQ(s->hash_api_key(key).size(), 64u);
  EXPECT_NE(s->derive("agora/v1/conversations", "key_a", 32), s->derive("agora/v1/conversations", "key_b", 32));
  EXPECT_NE(s->derive("agora/v1/conversations", "", 32), s->derive("agora/v1/audit-signing", "", 32));
  // A different master secret gives different hashes for the same key.
  auto other = MasterSecret::from_bytes(std::string(32, 'j'));
  EXPECT_NE(s->hash_api_key(key), other->hash_api_key(key));
}

TEST_F(MasterSecretTest, ConcurrentCreatorsAgree) {
  const auto path = dir_ / "master.key";
  std::vector<std::string> hashes(8);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < hashes.size(); ++i) {
    threads.emplace_back([&, i] {
      auto s = MasterSecret::load(path, true);
      if (s) hashes[i] = (*s)->hash_api_key("gk_probe");
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& h : hashes) EXPECT_EQ(h, hashes[0]);
  EXPECT_FALSE(hashes[0].empty());
  // No temporary files left behind.
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir_)) files += e.is_regular_file();
  EXPECT_EQ(files, 1u);
}

TEST_F(MasterSecretTest, RefusesOpenPermissionsAndGarbage) {
  const auto path = dir_ / "master.key";
  ASSERT_TRUE(MasterSecret::load(path, true));
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  auto r = MasterSecret::load(path, false);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::invalid_argument);
  EXPECT_NE(r.error().message.find("chmod 600"), std::string::npos) << r.error().message;

  const auto bad = dir_ / "bad.key";
  { std::ofstream(bad) << "not hex at all\n"; }
  ASSERT_EQ(::chmod(bad.c_str(), 0600), 0);
  auto g = MasterSecret::load(bad, false);
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().code, Errc::corrupt);
  EXPECT_EQ(g.error().message.find("not hex"), std::string::npos) << "the file's content must not be echoed";
}

}  // namespace
}  // namespace agora::crypto
