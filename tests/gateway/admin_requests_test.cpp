#include "gateway/admin_requests.h"

#include <gtest/gtest.h>

namespace agora::gateway {
namespace {

constexpr int64_t kNow = 1'800'000'000'000;

std::string refused_param(std::string_view body) {
  auto r = parse_key_spec(body, kNow);
  if (!std::holds_alternative<ApiError>(r)) return "(accepted)";
  EXPECT_EQ(std::get<ApiError>(r).status, 400);
  return std::get<ApiError>(r).param;
}

TEST(AdminRequests, KeySpecReadsEveryField) {
  auto r = parse_key_spec(R"({"name":"alice","rpm":60,"tpm":null,"max_concurrent":4,"expires_in":"1d","models":["tiny"]})",
                          kNow);
  ASSERT_TRUE(std::holds_alternative<store::KeySpec>(r)) << std::get<ApiError>(r).message;
  const auto& s = std::get<store::KeySpec>(r);
  EXPECT_EQ(s.name, "alice");
  EXPECT_EQ(s.rpm, 60);
  EXPECT_EQ(s.tpm, 0);  // null: no limit
  EXPECT_EQ(s.max_concurrent, 4);
  EXPECT_EQ(s.expires_ms, kNow + 24LL * 3600 * 1000);
  EXPECT_EQ(s.models, std::vector<std::string>{"tiny"});
}

TEST(AdminRequests, KeySpecRefusalsNameTheField) {
  EXPECT_EQ(refused_param(R"({"rpm":1})"), "name");
  EXPECT_EQ(refused_param(R"({"name":"a","rpm":0})"), "rpm");
  EXPECT_EQ(refused_param(R"({"name":"a","tpm":1.5})"), "tpm");
  EXPECT_EQ(refused_param(R"({"name":"a","max_concurrent":"4"})"), "max_concurrent");
  EXPECT_EQ(refused_param(R"({"name":"a","expires_in":"-1d"})"), "expires_in");
  EXPECT_EQ(refused_param(R"({"name":"a","expires_in":5})"), "expires_in");
  EXPECT_EQ(refused_param(R"({"name":"a","models":"tiny"})"), "models");
  EXPECT_EQ(refused_param(R"({"name":"a","models":[1]})"), "models");
  EXPECT_EQ(refused_param("[]"), "");
  EXPECT_EQ(refused_param(R"({"name":[[[[[[[[[]]]]]]]]]})"), "");  // deeper than 8
}

TEST(AdminRequests, RotateGrace) {
  EXPECT_EQ(std::get<int64_t>(parse_rotate_grace("")), kDefaultRotateGraceMs);
  EXPECT_EQ(std::get<int64_t>(parse_rotate_grace("{}")), kDefaultRotateGraceMs);
  EXPECT_EQ(std::get<int64_t>(parse_rotate_grace(R"({"grace":"2h"})")), 2LL * 3600 * 1000);
  EXPECT_EQ(std::get<ApiError>(parse_rotate_grace(R"({"grace":2})")).param, "grace");
  EXPECT_EQ(std::get<ApiError>(parse_rotate_grace(R"({"grace":"soon"})")).param, "grace");
  EXPECT_EQ(std::get<ApiError>(parse_rotate_grace("not json")).status, 400);
}

}  // namespace
}  // namespace agora::gateway
