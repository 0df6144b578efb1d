#include "gateway/providers_query.h"

#include <gtest/gtest.h>

namespace agora::gateway {
namespace {

ProvidersQuery ok(std::string_view q) {
  auto r = parse_providers_query(q);
  EXPECT_TRUE(std::holds_alternative<ProvidersQuery>(r)) << (std::holds_alternative<ApiError>(r) ? std::get<ApiError>(r).message : "");
  return std::holds_alternative<ProvidersQuery>(r) ? std::get<ProvidersQuery>(r) : ProvidersQuery{};
}

std::string refused(std::string_view q) {
  auto r = parse_providers_query(q);
  if (!std::holds_alternative<ApiError>(r)) return "(accepted)";
  EXPECT_EQ(std::get<ApiError>(r).status, 400);
  return std::get<ApiError>(r).param;
}

TEST(ProvidersQuery, ReadsEveryParameter) {
  auto q = ok("model=ti%6Ey&privacyLevel=verified&region=eu-west,us+east&confidential=true&limit=16&other=x");
  EXPECT_EQ(q.model, "tiny");
  EXPECT_EQ(q.routing.privacy_level, "verified");
  EXPECT_EQ(q.routing.regions, (std::vector<std::string>{"eu-west", "us east"}));
  EXPECT_TRUE(q.routing.confidential);
  EXPECT_EQ(q.limit, 16u);
}

TEST(ProvidersQuery, Defaults) {
  auto q = ok("model=tiny");
  EXPECT_EQ(q.routing.privacy_level, "standard");
  EXPECT_TRUE(q.routing.regions.empty());
  EXPECT_FALSE(q.routing.confidential);
  EXPECT_EQ(q.limit, kDefaultProvidersLimit);
}

TEST(ProvidersQuery, RefusesNamingTheParameter) {
  EXPECT_EQ(refused(""), "model");
  EXPECT_EQ(refused("region=eu"), "model");
  EXPECT_EQ(refused("model=tiny&limit=0"), "limit");
  EXPECT_EQ(refused("model=tiny&limit=1001"), "limit");
  EXPECT_EQ(refused("model=tiny&limit=1x"), "limit");
  EXPECT_EQ(refused("model=tiny&limit=99999999999999999999999"), "limit");
  EXPECT_EQ(refused("model=tiny&privacyLevel=secret"), "privacyLevel");
  EXPECT_EQ(refused("model=tiny&confidential=yes"), "confidential");
  EXPECT_EQ(refused("model=%zz"), "");  // a bad escape: the whole query
  EXPECT_EQ(ok("model=tiny&limit=1000").limit, 1000u);
}

}  // namespace
}  // namespace agora::gateway
