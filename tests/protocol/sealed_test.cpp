// Sealed requests and responses: only a named recipient opens the request,
// every part is bound to the header, and a response stream that is
// truncated, reordered, replayed or altered fails to open; nodes refuse
// replays and stale requests.
#include "protocol/sealed.h"

#include <gtest/gtest.h>

#include "crypto/random.h"

namespace agora::protocol::sealed {
namespace {

namespace hpke = crypto::hpke;

struct Node {
  std::string id;
  hpke::KeyPair key;
};

Node node(std::string id) { return Node{std::move(id), *hpke::generate_key_pair()}; }

protocol::GenerationRequest payload() {
  protocol::GenerationRequest r;
  r.messages = {{"system", "be terse"}, {"user", "the secret plan"}};
  r.max_tokens = 32;
  r.sampling.temperature = 0.5f;
  r.sampling.seed = 7;
  return r;
}

Header header() {
  Header h;
  h.model = "tiny";
  h.max_tokens = 32;
  h.stream = true;
  h.issued_ms = 1'000'000;
  return h;
}

ClientSeal seal_for(const std::vector<Node>& nodes) {
  std::vector<Recipient> rs;
  for (const auto& n : nodes) rs.push_back({n.id, n.key.public_key});
  auto s = seal_request(header(), payload(), rs);
  EXPECT_TRUE(s) << s.error().to_string();
  return std::move(*s);
}

TEST(Sealed, EachRecipientOpensTheSameRequestAndNoOneElse) {
  const std::vector<Node> nodes{node("a"), node("b"), node("c")};
  auto s = seal_for(nodes);
  EXPECT_EQ(s.request.header.recipients, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(s.request.ciphertext.find("secret plan"), std::string::npos);
  for (size_t i = 0; i < nodes.size(); ++i) {
    auto o = open_request(s.request.header, s.request.keys[i], s.request.ciphertext, nodes[i].key);
    ASSERT_TRUE(o) << o.error().to_string();
    ASSERT_EQ(o->request.messages.size(), 2u);
    EXPECT_EQ(o->request.messages[1].content, "the secret plan");
    EXPECT_EQ(o->request.sampling.seed, 7u);
  }
  // b's share with a's key, a stranger's key, a share relabelled to another node.
  EXPECT_FALSE(open_request(s.request.header, s.request.keys[1], s.request.ciphertext, nodes[0].key));
  EXPECT_FALSE(open_request(s.request.header, s.request.keys[0], s.request.ciphertext, node("x").key));
  WrappedKey relabelled = s.request.keys[0];
  relabelled.node_id = "b";
  EXPECT_FALSE(open_request(s.request.header, relabelled, s.request.ciphertext, nodes[0].key));
  WrappedKey outsider = s.request.keys[0];
  outsider.node_id = "z";
  EXPECT_EQ(open_request(s.request.header, outsider, s.request.ciphertext, nodes[0].key).error().code,
            Errc::invalid_argument);
}

TEST(Sealed, TheGatewayCannotChangeTheHeaderOrTheCiphertext) {
  const std::vector<Node> nodes{node("a"), node("b")};
  auto s = seal_for(nodes);
  auto opens = [&](const Header& h, std::string_view ct) {
    return static_cast<bool>(open_request(h, s.request.keys[0], ct, nodes[0].key));
  };
  ASSERT_TRUE(opens(s.request.header, s.request.ciphertext));
  Header h = s.request.header;
  h.max_tokens = 4096;
  EXPECT_FALSE(opens(h, s.request.ciphertext));
  h = s.request.header;
  h.model = "other";
  EXPECT_FALSE(opens(h, s.request.ciphertext));
  h = s.request.header;
  h.stream = false;
  EXPECT_FALSE(opens(h, s.request.ciphertext));
  h = s.request.header;
  h.issued_ms += 1;
  EXPECT_FALSE(opens(h, s.request.ciphertext));
  h = s.request.header;
  h.recipients.pop_back();  // dropping a candidate
  EXPECT_FALSE(opens(h, s.request.ciphertext));
  for (size_t i = 0; i < s.request.ciphertext.size(); ++i) {
    std::string bad = s.request.ciphertext;
    bad[i] = static_cast<char>(bad[i] ^ 0x01);
    EXPECT_FALSE(opens(s.request.header, bad)) << "byte " << i;
  }
  WrappedKey k = s.request.keys[0];
  k.wrapped[3] ^= 0x10;
  EXPECT_FALSE(open_request(s.request.header, k, s.request.ciphertext, nodes[0].key));
}

TEST(Sealed, BadRecipientListsAreRefused) {
  EXPECT_FALSE(seal_request(header(), payload(), {}));
  const Node a = node("a");
  const std::vector<Recipient> twice{{"a", a.key.public_key}, {"a", a.key.public_key}};
  EXPECT_FALSE(seal_request(header(), payload(), twice));
  const std::vector<Recipient> bad_key{{"a", "short"}};
  EXPECT_FALSE(seal_request(header(), payload(), bad_key));
  std::vector<Recipient> many(kMaxRecipients + 1, Recipient{"n", a.key.public_key});
  for (size_t i = 0; i < many.size(); ++i) many[i].node_id = "n" + std::to_string(i);
  EXPECT_FALSE(seal_request(header(), payload(), many));
}

// The client's context for the node that served and the node's own give
// the same response keys; every deviation from the sealed order fails.
class SealedStream : public ::testing::Test {
 protected:
  void SetUp() override {
    nodes_ = {node("a"), node("b")};
    seal_ = seal_for(nodes_);
    auto o = open_request(seal_.request.header, seal_.request.keys[1], seal_.request.ciphertext, nodes_[1].key);
    ASSERT_TRUE(o);
    ResponseSealer sealer(o->context);
    for (int i = 0; i < 4; ++i) chunks_.push_back(*sealer.seal("token " + std::to_string(i), i == 3));
    EXPECT_FALSE(sealer.seal("more", true));  // nothing after the final chunk
  }
  ResponseOpener opener() { return ResponseOpener(seal_.contexts[1].second); }

  std::vector<Node> nodes_;
  ClientSeal seal_;
  std::vector<std::string> chunks_;
};

TEST_F(SealedStream, InOrderItOpensAndEndsAtTheFinalChunk) {
  auto op = opener();
  for (uint64_t i = 0; i < 4; ++i) {
    auto pt = op.open(i, i == 3, chunks_[i]);
    ASSERT_TRUE(pt) << pt.error().to_string();
    EXPECT_EQ(*pt, "token " + std::to_string(i));
    EXPECT_EQ(op.finished(), i == 3);
  }
  EXPECT_FALSE(op.open(4, true, chunks_[3]));  // a chunk after the end
  // The other candidate's context cannot read node b's answer.
  ResponseOpener wrong(seal_.contexts[0].second);
  EXPECT_FALSE(wrong.open(0, false, chunks_[0]));
}

TEST_F(SealedStream, TruncationIsDetectedTheStreamNeverFinishes) {
  auto op = opener();
  for (uint64_t i = 0; i < 3; ++i) ASSERT_TRUE(op.open(i, false, chunks_[i]));
  EXPECT_FALSE(op.finished());  // the stream ends here: the client reports it incomplete
  // Claiming the third chunk was the final one does not open.
  auto early = opener();
  ASSERT_TRUE(early.open(0, false, chunks_[0]));
  ASSERT_TRUE(early.open(1, false, chunks_[1]));
  EXPECT_FALSE(early.open(2, true, chunks_[2]));
}

TEST_F(SealedStream, ReorderedReplayedOrAlteredChunksFail) {
  auto reordered = opener();
  ASSERT_TRUE(reordered.open(0, false, chunks_[0]));
  EXPECT_FALSE(reordered.open(1, false, chunks_[2]));  // chunk 2 in slot 1
  EXPECT_FALSE(reordered.open(2, false, chunks_[2]));  // skipping ahead
  auto replayed = opener();
  ASSERT_TRUE(replayed.open(0, false, chunks_[0]));
  EXPECT_FALSE(replayed.open(0, false, chunks_[0]));   // the same chunk again
  EXPECT_FALSE(replayed.open(1, false, chunks_[0]));   // an old chunk as the next
  auto altered = opener();
  std::string bad = chunks_[0];
  bad.back() = static_cast<char>(bad.back() ^ 1);
  EXPECT_FALSE(altered.open(0, false, bad));
  EXPECT_TRUE(altered.open(0, false, chunks_[0]));  // a failure does not advance
}

TEST(ReplayCache, RefusesReplaysStaleAndFutureRequestsAndForgetsAfterTheWindow) {
  ReplayCache c(3);
  const int64_t now = 10'000'000;
  EXPECT_TRUE(c.accept("enc-1", now, now));
  EXPECT_EQ(c.accept("enc-1", now, now + 1).error().code, Errc::invalid_argument);
  EXPECT_FALSE(c.accept("enc-2", now - kFreshnessMs - 1, now));
  EXPECT_FALSE(c.accept("enc-3", now + kFutureSkewMs + 1, now));
  EXPECT_TRUE(c.accept("enc-4", now, now));
  EXPECT_TRUE(c.accept("enc-5", now, now));
  EXPECT_EQ(c.accept("enc-6", now, now).error().code, Errc::unavailable);  // full of fresh entries
  // Past the window the old entries go; a replay of them is stale anyway.
  const int64_t later = now + kFreshnessMs + 1;
  EXPECT_FALSE(c.accept("enc-1", now, later));
  EXPECT_TRUE(c.accept("enc-7", later, later));
  EXPECT_EQ(c.size(), 1u);
}

}  // namespace
}  // namespace agora::protocol::sealed
