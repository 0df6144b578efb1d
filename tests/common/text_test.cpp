#include "common/text.h"

#include <gtest/gtest.h>

namespace agora {
namespace {

TEST(SplitList, NonEmptyItemsAsWritten) {
  EXPECT_EQ(split_list(""), std::vector<std::string>{});
  EXPECT_EQ(split_list(",,"), std::vector<std::string>{});
  EXPECT_EQ(split_list("a,,b,"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(split_list(" a , b"), (std::vector<std::string>{" a ", " b"}));
  EXPECT_EQ(split_list("x;y", ';'), (std::vector<std::string>{"x", "y"}));
}

TEST(Trim, AsciiWhitespaceOnBothEnds) {
  EXPECT_EQ(trim(" \t\r\n token \n"), "token");
  EXPECT_EQ(trim("a b"), "a b");
  EXPECT_EQ(trim(" \n "), "");
  EXPECT_EQ(trim("\xc2\xa0x"), "\xc2\xa0x");  // not ASCII whitespace
}

}  // namespace
}  // namespace agora
