#include "crypto/sha256.h"

#include <gtest/gtest.h>

#include <fstream>

#include "support/test_models.h"

namespace agora::crypto {
namespace {

// FIPS 180-2 examples.
TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex(std::string_view("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(std::string_view("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(Sha256, FileMatchesInMemoryAndReportsProgress) {
  const auto dir = testing::temp_dir();
  std::string data(3 * (1 << 20) + 123, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 31 + 7);
  {
    std::ofstream(dir / "f", std::ios::binary) << data;
  }
  uint64_t last = 0, calls = 0;
  auto h = sha256_file_hex(dir / "f", [&](uint64_t done, uint64_t total) {
    EXPECT_EQ(total, data.size());
    EXPECT_GT(done, last);
    last = done;
    ++calls;
  });
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(*h, sha256_hex(data));
  EXPECT_EQ(last, data.size());
  EXPECT_GE(calls, 4u);
}

TEST(Sha256, MissingFileIsAnError) {
  auto h = sha256_file_hex(testing::temp_dir() / "absent");
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.error().code, Errc::not_found);
}

}  // namespace
}  // namespace agora::crypto
