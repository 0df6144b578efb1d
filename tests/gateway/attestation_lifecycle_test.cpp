// The attestation lifecycle on a manual clock: challenges, verdicts, expiry,
// evidence timeouts and back-off, with a fake verifier and a fake link (the
// real verifiers are tested in tests/attest, the whole path through
// processes in tests/clients/attestation.test.mjs).
#include "gateway/attestation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "crypto/encoding.h"
#include "fakes/fake_link.h"
#include "fakes/manual_clock.h"

namespace agora::gateway {
namespace {

using fakes::FakeLink;
using fakes::ManualClock;
using std::chrono::milliseconds;
using ::testing::HasSubstr;

constexpr int64_t kLifetimeMs = 100'000;
const std::string kIdentityKey(64, 'd');

// Accepts evidence "good" for the nonce it was asked for, as a GPU TEE
// verdict that lasts kLifetimeMs.
class FakeVerifier final : public attest::AttestationVerifier {
 public:
  std::string_view kind() const override { return "nvidia_cc"; }
  Result<attest::Verdict> verify(std::string_view evidence, std::string_view expected_nonce,
                                 int64_t now_ms) const override {
    last_expected = std::string(expected_nonce);
    if (evidence != "good") return make_error(Errc::invalid_argument, "bad evidence");
    return attest::Verdict{"confidential", "nvidia_cc", now_ms, now_ms + kLifetimeMs, "fake GPU"};
  }
  mutable std::string last_expected;
};

struct Harness {
  Harness() {
    NodeInfo n;
    n.conn = 1;
    n.node_id = "node-1";
    n.provider_id = "prov-1";
    n.identity_key = kIdentityKey;
    protocol::ModelAdvert a;
    a.name = "m";
    a.slots = 1;
    n.models.push_back(NodeModel{a, 0});
    router.add(std::move(n));
    Verifiers v;
    v.emplace("nvidia_cc", verifier);
    AttestationLifecycle::Hooks h;
    // Verification "off the loop": held until the test completes it.
    h.verify = [this](auto, std::string evidence, std::string expected, int64_t now_ms, auto done) {
      pending.push_back([this, evidence, expected, now_ms, done] { done(verifier->verify(evidence, expected, now_ms)); });
    };
    h.level_changed = [this](const NodeInfo& node) { level_changes.push_back(node.level); };
    h.audit = [this](std::string kind, std::string, boost::json::object) { audits.push_back(kind); };
    h.close = [this](ConnId, std::string reason) { closed = reason; };
    AttestationLifecycle::Settings s{milliseconds(1'000), milliseconds(10'000), milliseconds(5'000)};
    life = std::make_unique<AttestationLifecycle>(router, clock, metrics, std::move(v), s, std::move(h));
  }
  const NodeInfo& node() { return *router.find(1); }
  void answer(std::string evidence, std::string nonce = "") {
    protocol::Evidence e;
    e.nonce = nonce.empty() ? link.challenges.back() : nonce;
    e.kind = "nvidia_cc";
    e.evidence = std::move(evidence);
    life->on_evidence(1, std::move(e));
  }
  void complete_verifications() {
    auto work = std::move(pending);
    pending.clear();
    for (auto& w : work) w();
  }

  ManualClock clock;
  Router router;
  Metrics metrics;
  FakeLink link;
  std::shared_ptr<FakeVerifier> verifier = std::make_shared<FakeVerifier>();
  std::vector<std::function<void()>> pending;
  std::vector<Level> level_changes;
  std::vector<std::string> audits;
  std::string closed;
  std::unique_ptr<AttestationLifecycle> life;
};

TEST(AttestationLifecycle, EvidenceOfAKindWithNoVerifierIsUnverifiable) {
  Harness h;
  h.life->start(1, h.link, "play_integrity");
  EXPECT_EQ(h.node().attestation.status, "unverifiable");
  EXPECT_THAT(h.node().attestation.error, HasSubstr("no play_integrity verifier"));
  EXPECT_TRUE(h.link.challenges.empty());
  EXPECT_EQ(h.clock.timers_armed(), 0u);
}

TEST(AttestationLifecycle, AVerdictRaisesTheLevelUntilItExpiresAndIsRefreshedBefore) {
  Harness h;
  h.life->start(1, h.link, "nvidia_cc");
  ASSERT_EQ(h.link.challenges.size(), 1u);
  EXPECT_EQ(h.node().attestation.status, "pending");
  h.answer("good");
  EXPECT_EQ(h.node().level, Level::standard);  // not before the verifier answers
  h.complete_verifications();
  // The verifier was asked for SHA-256(nonce ‖ identity key).
  EXPECT_EQ(h.verifier->last_expected, attest::evidence_nonce(*crypto::from_hex(h.link.challenges[0]),
                                                              *crypto::from_hex(kIdentityKey)));
  EXPECT_EQ(h.node().level, Level::confidential);
  EXPECT_EQ(h.node().attestation.status, "verified");
  EXPECT_EQ(h.node().attestation.evidence, "good");
  EXPECT_EQ(h.level_changes, (std::vector<Level>{Level::confidential}));
  // Re-challenged `refresh` (10 s) before the verdict's end (100 s).
  h.clock.advance(milliseconds(kLifetimeMs - 10'000 - 1));
  EXPECT_EQ(h.link.challenges.size(), 1u);
  h.clock.advance(milliseconds(1));
  ASSERT_EQ(h.link.challenges.size(), 2u);
  EXPECT_EQ(h.node().level, Level::confidential);  // still live meanwhile
  // No answer: the challenge times out after 1 s and the level drops at once.
  h.clock.advance(milliseconds(1'000));
  EXPECT_EQ(h.node().level, Level::standard);
  EXPECT_EQ(h.node().attestation.status, "failed");
  EXPECT_THAT(h.node().attestation.error, HasSubstr("no evidence within 1000 ms"));
  EXPECT_EQ(h.level_changes.back(), Level::standard);
  EXPECT_EQ(h.audits, (std::vector<std::string>{"provider.attested", "provider.attestation_failed"}));
}

TEST(AttestationLifecycle, AVerdictExpiresOnTimeEvenWhileFreshEvidenceIsBeingVerified) {
  Harness h;
  h.life->start(1, h.link, "nvidia_cc");
  h.answer("good");
  h.complete_verifications();
  h.clock.advance(milliseconds(kLifetimeMs - 10'000));  // the refresh challenge
  h.answer("good");                                     // ... answered, but the verifier is slow
  h.clock.advance(milliseconds(10'000));
  EXPECT_EQ(h.node().level, Level::standard);
  EXPECT_EQ(h.node().attestation.status, "expired");
  h.complete_verifications();  // then the fresh verdict arrives
  EXPECT_EQ(h.node().level, Level::confidential);
}

TEST(AttestationLifecycle, FailuresBackOffDoublingFromTheRetrySetting) {
  Harness h;
  h.life->start(1, h.link, "nvidia_cc");
  h.answer("forged");
  h.complete_verifications();
  EXPECT_EQ(h.node().attestation.status, "failed");
  EXPECT_EQ(h.node().attestation.error, "bad evidence");
  EXPECT_TRUE(h.level_changes.empty());  // it never was above standard
  h.clock.advance(milliseconds(5'000 - 1));
  EXPECT_EQ(h.link.challenges.size(), 1u);
  h.clock.advance(milliseconds(1));  // retry after 5 s
  ASSERT_EQ(h.link.challenges.size(), 2u);
  h.answer("forged");
  h.complete_verifications();
  h.clock.advance(milliseconds(10'000 - 1));
  EXPECT_EQ(h.link.challenges.size(), 2u);
  h.clock.advance(milliseconds(1));  // then after 10 s
  EXPECT_EQ(h.link.challenges.size(), 3u);
  h.answer("good");
  h.complete_verifications();
  EXPECT_EQ(h.node().level, Level::confidential);
}

TEST(AttestationLifecycle, EvidenceForNoOutstandingChallengeIsIgnoredThenAFloodClosesTheNode) {
  Harness h;
  h.life->start(1, h.link, "nvidia_cc");
  const std::string wrong(64, '0');
  for (int i = 0; i < 8; ++i) h.answer("good", wrong);
  EXPECT_TRUE(h.pending.empty());
  EXPECT_TRUE(h.closed.empty());
  h.answer("good", wrong);
  EXPECT_EQ(h.closed, "too many evidence frames for no challenge");
  // A replay of a consumed nonce is as unexpected.
  Harness r;
  r.life->start(1, r.link, "nvidia_cc");
  r.answer("good");
  r.answer("good", r.link.challenges[0]);
  EXPECT_EQ(r.pending.size(), 1u);
}

TEST(AttestationLifecycle, TheNodesOwnErrorOrAnotherKindFails) {
  Harness h;
  h.life->start(1, h.link, "nvidia_cc");
  protocol::Evidence e;
  e.nonce = h.link.challenges.back();
  e.kind = "nvidia_cc";
  e.error = "no GPU";
  h.life->on_evidence(1, e);
  EXPECT_EQ(h.node().attestation.status, "failed");
  EXPECT_THAT(h.node().attestation.error, HasSubstr("could not produce evidence: no GPU"));
  h.clock.advance(milliseconds(5'000));
  e.nonce = h.link.challenges.back();
  e.kind = "play_integrity";
  e.error.clear();
  h.life->on_evidence(1, e);
  EXPECT_THAT(h.node().attestation.error, HasSubstr("evidence of kind play_integrity after a hello offering nvidia_cc"));
}

TEST(AttestationLifecycle, AnEndedOrClosingSessionHearsNothingMore) {
  Harness h;
  h.life->start(1, h.link, "nvidia_cc");
  h.answer("good");
  h.life->end(1);
  EXPECT_EQ(h.clock.timers_armed(), 0u);
  h.complete_verifications();  // a verdict for a session that ended
  EXPECT_EQ(h.node().level, Level::standard);
  Harness c;
  c.life->start(1, c.link, "nvidia_cc");
  c.link.is_open = false;
  c.clock.advance(milliseconds(1'000));
  EXPECT_EQ(c.node().attestation.status, "pending");  // a closing node is not judged
}

}  // namespace
}  // namespace agora::gateway
