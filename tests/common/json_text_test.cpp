#include "common/json_text.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace agora {
namespace {

std::string number(double v) {
  std::string out;
  append_json_number(out, v);
  return out;
}

TEST(AppendJsonNumber, ShortestRoundTripForm) {
  EXPECT_EQ(number(1.5), "1.5");
  EXPECT_EQ(number(0.1), "0.1");
  EXPECT_EQ(number(1e10), "1e+10");  // shorter than 10000000000
  EXPECT_EQ(number(250.0), "250");
}

TEST(AppendJsonNumber, NegativeZeroIsZero) {
  // A decoder reads "-0" as the integer 0; writing 0 keeps encode(decode(x))
  // a fixed point.
  EXPECT_EQ(number(-0.0), "0");
  EXPECT_EQ(number(0.0), "0");
}

TEST(AppendJsonNumber, NonFiniteIsZero) {
  EXPECT_EQ(number(std::numeric_limits<double>::infinity()), "0");
  EXPECT_EQ(number(std::nan("")), "0");
}

TEST(AppendJsonString, EscapesControlsAndQuotes) {
  std::string out;
  append_json_string(out, "a\"b\\\n\x01");
  EXPECT_EQ(out, "\"a\\\"b\\\\\\n\\u0001\"");
}

}  // namespace
}  // namespace agora
