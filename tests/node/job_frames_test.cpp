// The frames that end a job: a sealed job's real finish reason and failure
// are in its sealed final chunk, after its deltas in sequence, and the
// plaintext says no more than usage, the error's class and retryable.
#include "node/job_frames.h"

#include <gtest/gtest.h>

#include "crypto/hpke.h"

namespace agora::node {
namespace {

namespace sealed = protocol::sealed;

// A sealer and the opener that reads it (the node's and the client's ends).
struct Pair {
  sealed::ClientSeal seal;
  std::unique_ptr<sealed::ResponseSealer> sealer;
  std::unique_ptr<sealed::ResponseOpener> opener;
  Pair() {
    const auto key = *crypto::hpke::generate_key_pair();
    protocol::GenerationRequest r;
    r.messages = {{"user", "hi"}};
    const sealed::Recipient rec{"n", key.public_key};
    auto s = sealed::seal_request(sealed::Header{"m", 8, false, 1, {"n"}}, r, std::span(&rec, 1));
    seal = std::move(*s);
    auto opened = sealed::open_request(seal.request.header, seal.request.keys[0], seal.request.ciphertext, key);
    sealer = std::make_unique<sealed::ResponseSealer>(opened->context);
    opener = std::make_unique<sealed::ResponseOpener>(seal.contexts[0].second);
  }
  // Opens a frame's final chunk into the frame it holds.
  protocol::Message open(const protocol::SealedChunk& c) {
    auto pt = opener->open(c.seq, c.final, c.ciphertext);
    EXPECT_TRUE(pt.ok());
    return *protocol::decode(*pt);
  }
};

protocol::Message decoded(const std::string& frame) {
  auto m = protocol::decode(frame);
  EXPECT_TRUE(m.ok()) << frame;
  return *m;
}

TEST(JobFrames, PlainFramesCarryTheRealOutcome) {
  auto f = std::get<protocol::Failed>(decoded(failed_frame(3, Error{Errc::invalid_argument, "bad schema"}, false, nullptr)));
  EXPECT_EQ(f.code, "invalid_argument");
  EXPECT_EQ(f.message, "bad schema");
  EXPECT_FALSE(f.sealed.has_value());
  engine::Completion c;
  c.finish = engine::FinishReason::tool_calls;
  EXPECT_EQ(std::get<protocol::Done>(decoded(done_frame(3, c, nullptr))).finish, protocol::FinishReason::tool_calls);
}

TEST(JobFrames, ASealedFailureFollowsTheDeltasAndKeepsItsReasonSealed) {
  Pair p;
  for (int i = 0; i < 2; ++i) {
    auto ct = p.sealer->seal(protocol::encode(protocol::Message{protocol::Delta{0, "x", {}, std::nullopt}}), false);
    ASSERT_TRUE(p.opener->open(static_cast<uint64_t>(i), false, *ct).ok());
  }
  const auto f = std::get<protocol::Failed>(decoded(
      failed_frame(9, Error{Errc::invalid_argument, "'tools[0].function.description' holds <|eot_id|>"}, false, p.sealer.get())));
  EXPECT_EQ(f.code, "invalid_argument");
  EXPECT_EQ(f.message.find("tools"), std::string::npos) << "the plaintext names nothing of the request";
  ASSERT_TRUE(f.sealed.has_value());
  EXPECT_EQ(f.sealed->seq, 2u);
  EXPECT_TRUE(f.sealed->final);
  const auto inner = std::get<protocol::Failed>(p.open(*f.sealed));
  EXPECT_EQ(inner.message, "'tools[0].function.description' holds <|eot_id|>");
  EXPECT_TRUE(p.opener->finished());
}

TEST(JobFrames, ASealedCallIsAStopInPlaintextAndToolCallsInsideTheSeal) {
  Pair p;
  engine::Completion c;
  c.finish = engine::FinishReason::tool_calls;
  c.usage = {10, 4, 0};
  const auto d = std::get<protocol::Done>(decoded(done_frame(5, c, p.sealer.get())));
  EXPECT_EQ(d.finish, protocol::FinishReason::stop);
  EXPECT_EQ(d.usage.completion_tokens, 4);
  ASSERT_TRUE(d.sealed.has_value());
  EXPECT_EQ(std::get<protocol::Done>(p.open(*d.sealed)).finish, protocol::FinishReason::tool_calls);
  // An engine error on a sealed job is a sealed failure.
  Pair q;
  engine::Completion err;
  err.finish = engine::FinishReason::error;
  err.error = Error{Errc::internal, "sampling failed: the grammar allows no token here"};
  const auto f = std::get<protocol::Failed>(decoded(done_frame(6, err, q.sealer.get())));
  EXPECT_EQ(f.code, "internal");
  ASSERT_TRUE(f.sealed.has_value());
  EXPECT_EQ(std::get<protocol::Failed>(q.open(*f.sealed)).message, "sampling failed: the grammar allows no token here");
}

}  // namespace
}  // namespace agora::node
