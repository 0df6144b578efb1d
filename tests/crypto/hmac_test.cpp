#include "crypto/hmac.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace agora::crypto {
namespace {

std::string bytes(size_t n, uint8_t v) { return std::string(n, static_cast<char>(v)); }
std::string range(uint8_t from, uint8_t to_inclusive) {
  std::string s;
  for (unsigned v = from; v <= to_inclusive; ++v) s.push_back(static_cast<char>(v));
  return s;
}

// RFC 4231 test cases 1, 2 and 6 (a key longer than the block).
TEST(HmacSha256, Rfc4231Vectors) {
  EXPECT_EQ(HmacSha256(as_bytes(bytes(20, 0x0b))).mac_hex("Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(HmacSha256(as_bytes("Jefe")).mac_hex("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(HmacSha256(as_bytes(bytes(131, 0xaa))).mac_hex("Test Using Larger Than Block-Size Key - Hash Key First"),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST(HmacSha256, ReusableAndThreadSafe) {
  HmacSha256 h(as_bytes("Jefe"));
  const std::string want = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) mismatches[t] += h.mac_hex("what do ya want for nothing?") != want;
    });
  }
  for (auto& th : threads) th.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
  EXPECT_NE(h.mac_hex("a"), h.mac_hex("b"));
}

// RFC 5869 test cases 1 and 3 (no salt, no info).
TEST(Hkdf, Rfc5869Vectors) {
  const std::string ikm = bytes(22, 0x0b);
  const Digest256 prk1 = hkdf_extract(as_bytes(range(0x00, 0x0c)), as_bytes(ikm));
  EXPECT_EQ(to_hex(prk1), "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5");
  EXPECT_EQ(to_hex(as_bytes(hkdf_expand(prk1, as_bytes(range(0xf0, 0xf9)), 42))),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
  const Digest256 prk3 = hkdf_extract({}, as_bytes(ikm));
  EXPECT_EQ(to_hex(prk3), "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04");
  EXPECT_EQ(to_hex(as_bytes(hkdf_expand(prk3, {}, 42))),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
}

TEST(Hkdf, LengthsAcrossBlockBoundaries) {
  const Digest256 prk = hkdf_extract({}, as_bytes("ikm"));
  const std::string long_out = hkdf_expand(prk, as_bytes("info"), 100);
  ASSERT_EQ(long_out.size(), 100u);
  for (size_t n : {0u, 1u, 31u, 32u, 33u, 64u, 65u}) {
    const std::string out = hkdf_expand(prk, as_bytes("info"), n);
    ASSERT_EQ(out.size(), n);
    EXPECT_EQ(out, long_out.substr(0, n)) << n;  // a prefix of a longer output
  }
}

}  // namespace
}  // namespace agora::crypto
