#include "common/utf8.h"

#include <gtest/gtest.h>

namespace agora {
namespace {

const std::string kEuro = "\xE2\x82\xAC";          // U+20AC, 3 bytes
const std::string kSmile = "\xF0\x9F\x98\x80";     // U+1F600, 4 bytes
const std::string kFffd = "\xEF\xBF\xBD";

TEST(Utf8, ValidatesWellFormedText) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("plain ascii"));
  EXPECT_TRUE(is_valid_utf8("caf\xC3\xA9 " + kEuro + kSmile));
}

TEST(Utf8, RejectsMalformedText) {
  EXPECT_FALSE(is_valid_utf8("\x80"));              // lone continuation
  EXPECT_FALSE(is_valid_utf8("\xC0\xAF"));          // overlong
  EXPECT_FALSE(is_valid_utf8("\xE0\x80\xAF"));      // overlong
  EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(is_valid_utf8("\xE2\x82"));          // truncated
  EXPECT_FALSE(is_valid_utf8("\xFF"));
}

TEST(Utf8StreamDecoder, HoldsSplitCharactersUntilComplete) {
  Utf8StreamDecoder d;
  EXPECT_EQ(d.push("a\xE2"), "a");
  EXPECT_EQ(d.pending(), 1u);
  EXPECT_EQ(d.push("\x82"), "");
  EXPECT_EQ(d.push("\xAC" "b"), kEuro + "b");
  EXPECT_EQ(d.pending(), 0u);
  // A 4-byte character fed one byte at a time.
  std::string out;
  for (char c : kSmile) out += d.push(std::string(1, c));
  EXPECT_EQ(out, kSmile);
}

TEST(Utf8StreamDecoder, ReplacesInvalidBytesAndNeverEmitsInvalidText) {
  Utf8StreamDecoder d;
  EXPECT_EQ(d.push("\x80"), kFffd);
  EXPECT_EQ(d.push("\xE2\x82" "x"), kFffd + "x");  // maximal subpart -> one U+FFFD
  EXPECT_EQ(d.push("\xE2"), "");
  EXPECT_EQ(d.flush(), kFffd);  // unfinished at the end
  EXPECT_EQ(d.flush(), "");
}

TEST(Utf8StreamDecoder, EveryPieceValidAndConcatenationMatchesForAllSplits) {
  const std::string text = "h\xC3\xA9llo " + kEuro + " " + kSmile + " \xE4\xB8\xAD\xE6\x96\x87";
  for (size_t a = 0; a <= text.size(); ++a) {
    for (size_t b = a; b <= text.size(); ++b) {
      Utf8StreamDecoder d;
      const std::string p1 = d.push(text.substr(0, a));
      const std::string p2 = d.push(text.substr(a, b - a));
      const std::string p3 = d.push(text.substr(b));
      const std::string p4 = d.flush();
      for (const auto& p : {p1, p2, p3, p4}) ASSERT_TRUE(is_valid_utf8(p)) << a << "," << b;
      ASSERT_EQ(p1 + p2 + p3 + p4, text) << a << "," << b;
    }
  }
}

}  // namespace
}  // namespace agora
