#include "crypto/random.h"

#include <gtest/gtest.h>

#include <array>
#include <set>

namespace agora::crypto {
namespace {

bool is_base62(char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

TEST(Random, BytesHaveTheAskedLengthAndDiffer) {
  EXPECT_TRUE(random_bytes(0).empty());
  EXPECT_EQ(random_bytes(1).size(), 1u);
  const auto a = random_bytes(32), b = random_bytes(32);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);  // 2^-256 chance of a false failure
  EXPECT_EQ(random_bytes(100000).size(), 100000u);
}

TEST(Random, Base62LengthAndAlphabet) {
  EXPECT_TRUE(random_base62(0).empty());
  for (size_t n : {1u, 7u, 43u, 200u, 5000u}) {
    const auto s = random_base62(n);
    ASSERT_EQ(s.size(), n);
    for (char c : s) ASSERT_TRUE(is_base62(c)) << "unexpected character " << static_cast<int>(c);
  }
}

// Every one of the 62 characters shows up with roughly equal frequency. With
// 248,000 draws each count is ~Binomial(248000, 1/62): mean 4000, sd ≈ 63, so
// the bounds are > 6 sd away (false failure ≈ 1e-8). A plain `byte % 62`
// would give the first 8 characters 5/256 instead of 4/256 (mean ≈ 4844) and
// break the upper bound.
TEST(Random, Base62IsRoughlyUniform) {
  std::array<int, 256> counts{};
  const auto s = random_base62(248000);
  for (char c : s) ++counts[static_cast<unsigned char>(c)];
  int distinct = 0;
  for (int c = 0; c < 256; ++c) {
    if (counts[c] == 0) continue;
    ++distinct;
    EXPECT_GT(counts[c], 3600) << static_cast<char>(c);
    EXPECT_LT(counts[c], 4400) << static_cast<char>(c);
  }
  EXPECT_EQ(distinct, 62);
}

TEST(Random, SecretsAreDistinctAndPrefixed) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const auto s = new_secret("gk_");
    ASSERT_EQ(s.size(), 3 + kSecretRandomChars);
    ASSERT_EQ(s.substr(0, 3), "gk_");
    for (char c : s.substr(3)) ASSERT_TRUE(is_base62(c));
    EXPECT_TRUE(seen.insert(s).second) << "duplicate secret";
  }
  EXPECT_EQ(new_secret("pt_").substr(0, 3), "pt_");
  EXPECT_EQ(new_secret("").size(), kSecretRandomChars);
}

TEST(Random, DisplayPrefixIsTheFirstSevenCharacters) {
  EXPECT_EQ(secret_display_prefix("gk_3fA9xyzXYZ"), "gk_3fA9");
  EXPECT_EQ(secret_display_prefix("pt_ab"), "pt_ab");
  EXPECT_EQ(secret_display_prefix(""), "");
  const auto s = new_secret("gk_");
  EXPECT_EQ(secret_display_prefix(s), s.substr(0, 7));
}

TEST(Random, ConstantTimeEqual) {
  EXPECT_TRUE(constant_time_equal("", ""));
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("abc", "ab"));
  EXPECT_FALSE(constant_time_equal("", "a"));
  EXPECT_FALSE(constant_time_equal("xbc", "abc"));
  const auto s = new_secret("gk_");
  EXPECT_TRUE(constant_time_equal(s, std::string(s)));
  std::string a("a\0b", 3), b("a\0c", 3);
  EXPECT_FALSE(constant_time_equal(a, b));
  EXPECT_TRUE(constant_time_equal(a, std::string("a\0b", 3)));
}

}  // namespace
}  // namespace agora::crypto
