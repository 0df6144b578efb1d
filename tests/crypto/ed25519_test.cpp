// Ed25519 on OpenSSL: RFC 8032's test vectors, and tampering is refused.
#include "crypto/ed25519.h"

#include <gtest/gtest.h>

namespace agora::crypto {
namespace {

struct Vector {
  const char* seed;
  const char* public_key;
  const char* message;  // hex
  const char* signature;
};

// RFC 8032, section 7.1, TEST 1-3.
const Vector kVectors[] = {
    {"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"},
    {"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
    {"c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"},
};

TEST(Ed25519, Rfc8032Vectors) {
  for (const auto& v : kVectors) {
    SCOPED_TRACE(v.public_key);
    auto signer = Ed25519Signer::from_seed(*from_hex(v.seed));
    ASSERT_TRUE(signer) << signer.error().to_string();
    EXPECT_EQ((*signer)->public_key_hex(), v.public_key);
    const std::string message = *from_hex(v.message);
    EXPECT_EQ((*signer)->sign_hex(message), v.signature);
    EXPECT_TRUE(ed25519_verify(v.public_key, message, v.signature));
  }
}

TEST(Ed25519, EveryFlippedBitAndForeignKeyIsRefused) {
  auto signer = Ed25519Signer::from_seed(std::string(32, 's'));
  ASSERT_TRUE(signer);
  const std::string msg = "agora audit checkpoint v1\nseq=3";
  const std::string sig = (*signer)->sign_hex(msg);
  ASSERT_TRUE(ed25519_verify((*signer)->public_key_hex(), msg, sig));
  std::string raw = *from_hex(sig);
  for (size_t i = 0; i < raw.size(); ++i) {
    std::string bad = raw;
    bad[i] = static_cast<char>(bad[i] ^ 0x01);
    EXPECT_FALSE(ed25519_verify((*signer)->public_key_hex(), msg, to_hex(bad))) << "byte " << i;
  }
  std::string other_msg = msg;
  other_msg.back() = '4';
  EXPECT_FALSE(ed25519_verify((*signer)->public_key_hex(), other_msg, sig));
  auto other = Ed25519Signer::from_seed(std::string(32, 't'));
  ASSERT_TRUE(other);
  EXPECT_FALSE(ed25519_verify((*other)->public_key_hex(), msg, sig));
  EXPECT_FALSE(ed25519_verify("zz", msg, sig));
  EXPECT_FALSE(ed25519_verify((*signer)->public_key_hex(), msg, ""));
  EXPECT_FALSE(Ed25519Signer::from_seed("short"));
}

TEST(Hex, RoundTripsAndRefusesNonHex) {
  EXPECT_EQ(to_hex(std::string("\x00\xff\x10", 3)), "00ff10");
  EXPECT_EQ(*from_hex("00FF10"), std::string("\x00\xff\x10", 3));
  EXPECT_FALSE(from_hex("abc"));
  EXPECT_FALSE(from_hex("zz"));
}

}  // namespace
}  // namespace agora::crypto
