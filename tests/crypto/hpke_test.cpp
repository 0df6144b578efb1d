// HPKE (RFC 9180) base mode with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256:
// the RFC's Appendix A vectors (A.1.1 AES-128-GCM, A.2.1 ChaCha20-Poly1305;
// the RFC has none for AES-256-GCM, which shares everything but the AEAD,
// itself checked against the GCM specification in aead_test.cpp), round
// trips, and every single-byte change to enc, ciphertext or tag refused.
#include "crypto/hpke.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <fstream>
#include <iterator>

#include "crypto/ed25519.h"

namespace agora::crypto::hpke {
namespace {

namespace json = boost::json;

std::string unhex(const json::value& v) { return *from_hex(std::string(v.as_string())); }
std::string field(const json::object& o, const char* k) { return unhex(o.at(k)); }

json::array vectors() {
  std::ifstream in(AGORA_TEST_DATA "/rfc9180_base_x25519_sha256.json");
  EXPECT_TRUE(in) << AGORA_TEST_DATA;
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return json::parse(text).as_array();
}

AeadAlgorithm aead_of(int64_t id) {
  return id == 1 ? AeadAlgorithm::aes128gcm : id == 2 ? AeadAlgorithm::aes256gcm : AeadAlgorithm::chacha20poly1305;
}

TEST(Hpke, Rfc9180AppendixAVectors) {
  const auto all = vectors();
  ASSERT_GE(all.size(), 2u);
  for (const auto& v : all) {
    const auto& o = v.as_object();
    SCOPED_TRACE(std::string(o.at("name").as_string()));
    const AeadAlgorithm aead = aead_of(o.at("aead_id").as_int64());
    auto eph = derive_key_pair(field(o, "ikmE"));
    ASSERT_TRUE(eph);
    EXPECT_EQ(to_hex(eph->private_key), to_hex(field(o, "skEm")));
    EXPECT_EQ(to_hex(eph->public_key), to_hex(field(o, "pkEm")));
    auto rec = derive_key_pair(field(o, "ikmR"));
    ASSERT_TRUE(rec);
    EXPECT_EQ(to_hex(rec->private_key), to_hex(field(o, "skRm")));
    EXPECT_EQ(to_hex(rec->public_key), to_hex(field(o, "pkRm")));

    const std::string info = field(o, "info");
    auto sender = setup_base_sender(aead, rec->public_key, info, *eph);
    ASSERT_TRUE(sender) << sender.error().to_string();
    EXPECT_EQ(to_hex(sender->enc), to_hex(field(o, "enc")));
    EXPECT_EQ(to_hex(sender->context.key()), to_hex(field(o, "key")));
    EXPECT_EQ(to_hex(sender->context.base_nonce()), to_hex(field(o, "base_nonce")));
    EXPECT_EQ(to_hex(sender->context.exporter_secret()), to_hex(field(o, "exporter_secret")));
    auto recipient = setup_base_recipient(aead, sender->enc, rec->private_key, info);
    ASSERT_TRUE(recipient) << recipient.error().to_string();
    EXPECT_EQ(to_hex(recipient->key()), to_hex(field(o, "key")));

    for (const auto& e : o.at("encryptions").as_array()) {
      const auto& x = e.as_object();
      const auto seq = static_cast<uint64_t>(x.at("seq").as_int64());
      SCOPED_TRACE(seq);
      // Jump both contexts to the vector's sequence number (the RFC lists 0,
      // 1, 2, 4, 255, 256): the nonce is base_nonce XOR the sequence.
      sender->context.skip_to_sequence_for_testing(seq);
      recipient->skip_to_sequence_for_testing(seq);
      auto ct = sender->context.seal(field(x, "aad"), field(x, "pt"));
      ASSERT_TRUE(ct);
      EXPECT_EQ(to_hex(*ct), to_hex(field(x, "ct")));
      auto pt = recipient->open(field(x, "aad"), field(x, "ct"));
      ASSERT_TRUE(pt) << pt.error().to_string();
      EXPECT_EQ(*pt, field(x, "pt"));
      EXPECT_EQ(recipient->sequence(), seq + 1);
    }
    for (const auto& e : o.at("exports").as_array()) {
      const auto& x = e.as_object();
      EXPECT_EQ(to_hex(recipient->export_secret(field(x, "context"), static_cast<size_t>(x.at("length").as_int64()))),
                std::string(x.at("value").as_string()));
    }
  }
}

TEST(Hpke, RoundTripsInOrderForEveryAead) {
  for (auto aead : {AeadAlgorithm::aes128gcm, AeadAlgorithm::aes256gcm, AeadAlgorithm::chacha20poly1305}) {
    auto r = generate_key_pair();
    ASSERT_TRUE(r);
    auto s = setup_base_sender(aead, r->public_key, "agora info");
    ASSERT_TRUE(s);
    auto c = setup_base_recipient(aead, s->enc, r->private_key, "agora info");
    ASSERT_TRUE(c);
    EXPECT_EQ(s->context.export_secret("stream", 32), c->export_secret("stream", 32));
    EXPECT_NE(s->context.export_secret("stream", 32), s->context.export_secret("other", 32));
    std::vector<std::string> sealed;
    for (int i = 0; i < 3; ++i) sealed.push_back(*s->context.seal("aad", "message " + std::to_string(i)));
    EXPECT_FALSE(c->open("aad", sealed[1]));  // out of order: the nonce differs
    EXPECT_EQ(c->sequence(), 0u);              // a failed open does not advance
    for (int i = 0; i < 3; ++i) EXPECT_EQ(*c->open("aad", sealed[i]), "message " + std::to_string(i));
    EXPECT_FALSE(c->open("aad", sealed[2]));  // a replay within the context
    // Another info, another key.
    auto wrong = setup_base_recipient(aead, s->enc, r->private_key, "other info");
    ASSERT_TRUE(wrong);
    EXPECT_FALSE(wrong->open("aad", sealed[0]));
  }
}

TEST(Hpke, EverySingleByteFlipOfEncCiphertextOrTagIsRefused) {
  auto r = generate_key_pair();
  ASSERT_TRUE(r);
  auto s = setup_base_sender(AeadAlgorithm::aes256gcm, r->public_key, "info");
  ASSERT_TRUE(s);
  const std::string ct = *s->context.seal("aad", "a prompt for one node only");
  for (size_t i = 0; i < s->enc.size(); ++i) {
    std::string enc = s->enc;
    enc[i] = static_cast<char>(enc[i] ^ 0x01);
    auto c = setup_base_recipient(AeadAlgorithm::aes256gcm, enc, r->private_key, "info");
    // Either the flipped point is refused outright or it yields other keys.
    if (c) EXPECT_FALSE(c->open("aad", ct)) << "enc byte " << i;
  }
  for (size_t i = 0; i < ct.size(); ++i) {  // ciphertext bytes, then the 16 tag bytes
    std::string bad = ct;
    bad[i] = static_cast<char>(bad[i] ^ 0x80);
    auto c = setup_base_recipient(AeadAlgorithm::aes256gcm, s->enc, r->private_key, "info");
    ASSERT_TRUE(c);
    EXPECT_FALSE(c->open("aad", bad)) << "byte " << i;
  }
  auto c = setup_base_recipient(AeadAlgorithm::aes256gcm, s->enc, r->private_key, "info");
  EXPECT_EQ(*c->open("aad", ct), "a prompt for one node only");
}

TEST(Hpke, LowOrderPointsAndBadSizesAreRefused) {
  auto r = generate_key_pair();
  ASSERT_TRUE(r);
  // The all-zero point (and 1, a small-order point) give an all-zero DH.
  for (const std::string point : {std::string(32, '\0'), std::string(1, '\x01') + std::string(31, '\0')}) {
    EXPECT_EQ(setup_base_sender(AeadAlgorithm::aes256gcm, point, "").error().code, Errc::invalid_argument);
    EXPECT_EQ(setup_base_recipient(AeadAlgorithm::aes256gcm, point, r->private_key, "").error().code,
              Errc::invalid_argument);
  }
  EXPECT_FALSE(setup_base_sender(AeadAlgorithm::aes256gcm, "short", ""));
  EXPECT_FALSE(setup_base_recipient(AeadAlgorithm::aes256gcm, "short", r->private_key, ""));
  EXPECT_FALSE(derive_key_pair("too short"));
}

TEST(Hpke, TheSequenceNumberCannotOverflow) {
  auto r = generate_key_pair();
  ASSERT_TRUE(r);
  auto s = setup_base_sender(AeadAlgorithm::aes256gcm, r->public_key, "");
  ASSERT_TRUE(s);
  s->context.skip_to_sequence_for_testing(UINT64_MAX - 1);
  EXPECT_TRUE(s->context.seal("", "last"));
  auto refused = s->context.seal("", "one too many");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Errc::unavailable);
  EXPECT_EQ(s->context.sequence(), UINT64_MAX);
}

}  // namespace
}  // namespace agora::crypto::hpke
