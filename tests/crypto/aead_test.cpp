// AES-256-GCM: the GCM specification's test vectors, round trips, and any
// change to key, nonce, associated data, ciphertext or tag is refused.
#include "crypto/aead.h"

#include <gtest/gtest.h>

#include "crypto/ed25519.h"

namespace agora::crypto {
namespace {

std::string hex(std::string_view h) { return *from_hex(h); }

// McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 13-16
// (AES-256).
TEST(Aes256Gcm, SpecificationVectors) {
  const std::string zero_key(32, '\0'), zero_iv(12, '\0');
  EXPECT_EQ(to_hex(*aes256gcm_seal(zero_key, zero_iv, "", "")), "530f8afbc74536b9a963b4f1c4cb738b");
  EXPECT_EQ(to_hex(*aes256gcm_seal(zero_key, zero_iv, "", std::string(16, '\0'))),
            "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919");
  const std::string key = hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
  const std::string iv = hex("cafebabefacedbaddecaf888");
  const std::string p15 = hex(
      "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657"
      "ba637b391aafd255");
  EXPECT_EQ(to_hex(*aes256gcm_seal(key, iv, "", p15)),
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a"
            "0abcc9f662898015ad"
            "b094dac5d93471bdec1a502270e3cc6c");
  const std::string p16 = p15.substr(0, 60);
  const std::string aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
  const std::string sealed = *aes256gcm_seal(key, iv, aad, p16);
  EXPECT_EQ(to_hex(sealed),
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a"
            "0abcc9f662"
            "76fc6ece0f4e1768cddf8853bb2d551b");
  EXPECT_EQ(*aes256gcm_open(key, iv, aad, sealed), p16);
}

TEST(Aes256Gcm, EveryChangeIsRefused) {
  const std::string key(32, 'k'), iv(12, 'n'), aad = "owner\0id", msg = "a conversation";
  const std::string sealed = *aes256gcm_seal(key, iv, aad, msg);
  ASSERT_EQ(sealed.size(), msg.size() + kAeadTagBytes);
  EXPECT_EQ(*aes256gcm_open(key, iv, aad, sealed), msg);
  for (size_t i = 0; i < sealed.size(); ++i) {
    std::string bad = sealed;
    bad[i] = static_cast<char>(bad[i] ^ 0x80);
    auto r = aes256gcm_open(key, iv, aad, bad);
    ASSERT_FALSE(r) << "byte " << i;
    EXPECT_EQ(r.error().code, Errc::corrupt);
  }
  EXPECT_FALSE(aes256gcm_open(std::string(32, 'K'), iv, aad, sealed));
  EXPECT_FALSE(aes256gcm_open(key, std::string(12, 'N'), aad, sealed));
  EXPECT_FALSE(aes256gcm_open(key, iv, "other owner", sealed));
  EXPECT_FALSE(aes256gcm_open(key, iv, aad, sealed.substr(0, 10)));
  EXPECT_EQ(aes256gcm_seal("short", iv, aad, msg).error().code, Errc::invalid_argument);
  EXPECT_EQ(aes256gcm_seal(key, "short", aad, msg).error().code, Errc::invalid_argument);
}

TEST(SecureWipe, ZeroesAndEmpties) {
  std::string s = "secret";
  secure_wipe(s);
  EXPECT_TRUE(s.empty());
}

}  // namespace
}  // namespace agora::crypto

#include "crypto/encoding.h"

namespace agora::crypto {
namespace {

TEST(Base64, Rfc4648VectorsAndOnlyCanonicalInput) {
  const std::pair<const char*, const char*> v[] = {{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
                                                   {"foo", "Zm9v"},  {"foob", "Zm9vYg=="},  {"fooba", "Zm9vYmE="},
                                                   {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, enc] : v) {
    EXPECT_EQ(to_base64(plain), enc);
    EXPECT_EQ(*from_base64(enc), plain);
  }
  EXPECT_EQ(*from_base64(to_base64(std::string("\x00\xff\x10", 3))), std::string("\x00\xff\x10", 3));
  for (const char* bad : {"Zg=", "Zg==\n", "Z=g=", "Zh==", "Zm9v!", "====", "Zg==Zg=="}) {
    EXPECT_FALSE(from_base64(bad)) << bad;
  }
}

}  // namespace
}  // namespace agora::crypto
