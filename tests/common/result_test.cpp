#include "common/result.h"

#include <gtest/gtest.h>

#include <memory>

namespace agora {
namespace {

Result<int> parse_positive(int v) {
  if (v <= 0) return make_error(Errc::invalid_argument, "not positive");
  return v;
}

TEST(Result, CarriesAValueOrAnError) {
  auto ok = parse_positive(3);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 3);
  auto bad = parse_positive(-1);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, Errc::invalid_argument);
  EXPECT_EQ(bad.error().to_string(), "invalid_argument: not positive");
}

TEST(Result, HoldsMoveOnlyValues) {
  Result<std::unique_ptr<int>> r(std::make_unique<int>(7));
  ASSERT_TRUE(r);
  std::unique_ptr<int> p = std::move(r).value();
  EXPECT_EQ(*p, 7);
}

TEST(Status, DefaultsToOk) {
  Status s;
  EXPECT_TRUE(s.ok());
  Status e = make_error(Errc::not_found, "x");
  EXPECT_FALSE(e.ok());
  EXPECT_EQ(e.error().code, Errc::not_found);
}

}  // namespace
}  // namespace agora
