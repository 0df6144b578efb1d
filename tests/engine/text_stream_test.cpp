#include "engine/text_stream.h"

#include <gtest/gtest.h>

#include "common/utf8.h"

namespace agora::engine {
namespace {

TEST(StopMatcher, NoStopsPassesEverythingThrough) {
  StopMatcher m({});
  auto out = m.push("hello");
  EXPECT_EQ(out.text, "hello");
  EXPECT_FALSE(out.stopped);
}

TEST(StopMatcher, HoldsBackAPossibleStopPrefixAndReleasesItWhenItDiverges) {
  StopMatcher m({"END"});
  auto a = m.push("abc E");
  EXPECT_EQ(a.text, "abc ");
  auto b = m.push("N");
  EXPECT_EQ(b.text, "");
  auto c = m.push("x");
  EXPECT_EQ(c.text, "ENx");
  EXPECT_FALSE(c.stopped);
}

TEST(StopMatcher, StopSplitAcrossPushesIsFoundAndNeverEmitted) {
  StopMatcher m({"<stop>"});
  std::string out;
  bool stopped = false;
  for (const char* piece : {"one two <s", "to", "p> three"}) {
    auto r = m.push(piece);
    out += r.text;
    if (r.stopped) {
      stopped = true;
      break;
    }
  }
  EXPECT_TRUE(stopped);
  EXPECT_EQ(out, "one two ");
}

TEST(StopMatcher, EarliestOfSeveralStopsWins) {
  StopMatcher m({"cd", "b"});
  auto r = m.push("abcd");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "a");
}

TEST(StopMatcher, FlushReleasesHeldText) {
  StopMatcher m({"xyz"});
  EXPECT_EQ(m.push("abx").text, "ab");
  EXPECT_EQ(m.flush(), "x");
}

TEST(TokenTextStream, StopSpanningTokensCutsTextAndLogprobs) {
  TokenTextStream s({"lo wo"});
  std::string text;
  std::vector<TokenLogprob> lps;
  bool stopped = false;
  const char* toks[] = {"hel", "lo", " wor", "ld"};
  for (int i = 0; i < 4 && !stopped; ++i) {
    TokenLogprob lp;
    lp.token = i;
    auto ev = s.push(toks[i], lp, true, stopped);
    text += ev.text;
    lps.insert(lps.end(), ev.logprobs.begin(), ev.logprobs.end());
  }
  EXPECT_TRUE(stopped);
  EXPECT_EQ(text, "hel");
  ASSERT_EQ(lps.size(), 1u);  // only "hel" lies wholly before the stop
  EXPECT_EQ(lps[0].token, 0);
  EXPECT_TRUE(s.finish().text.empty());
}

TEST(TokenTextStream, SplitCharacterIsReleasedWholeWithBothTokens) {
  TokenTextStream s({});
  bool stopped = false;
  auto a = s.push("a\xE2\x82", {}, true, stopped);
  EXPECT_EQ(a.text, "a");
  EXPECT_TRUE(a.logprobs.empty());  // its character is not complete yet
  auto b = s.push("\xAC", {}, true, stopped);
  EXPECT_EQ(b.text, "\xE2\x82\xAC");
  EXPECT_EQ(b.logprobs.size(), 2u);
  EXPECT_TRUE(is_valid_utf8(a.text) && is_valid_utf8(b.text));
}

TEST(TokenTextStream, FinishFlushesHeldTextAndLogprobs) {
  TokenTextStream s({"STOP"});
  bool stopped = false;
  auto a = s.push("abc ST", {}, true, stopped);
  EXPECT_EQ(a.text, "abc ");
  auto end = s.finish();
  EXPECT_EQ(end.text, "ST");
  EXPECT_EQ(end.logprobs.size(), 1u);
}

}  // namespace
}  // namespace agora::engine
