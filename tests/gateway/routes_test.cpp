#include "gateway/routes.h"

#include <gtest/gtest.h>

#include <set>

namespace agora::gateway {
namespace {

TEST(Routes, ExactPathsAndPrefixes) {
  auto m = match_route("POST", "/v1/chat/completions");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.route->id, RouteId::chat);
  EXPECT_TRUE(m.method_allowed);
  EXPECT_TRUE(m.route->client_key);

  m = match_route("GET", "/v1/generations/gen-abc");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.route->id, RouteId::generation);
  EXPECT_EQ(m.rest, "gen-abc");

  m = match_route("DELETE", "/v1/conversations/c1");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.route->id, RouteId::conversation);
  EXPECT_TRUE(m.method_allowed);
  EXPECT_EQ(m.rest, "c1");

  m = match_route("PUT", "/admin/v1/keys/k1");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.route->id, RouteId::admin);
  EXPECT_TRUE(m.method_allowed);  // the admin API checks its own methods
  EXPECT_FALSE(m.route->client_key);
}

TEST(Routes, UnknownPathsMatchNothing) {
  for (const char* p : {"/", "/v1", "/v1/chat/completions/", "/v1/chat/completion", "/v1/models/x", "/healthz/",
                        "/admin", "/v1/generations", "/V1/models"}) {
    EXPECT_EQ(match_route("GET", p).route, nullptr) << p;
  }
}

TEST(Routes, WrongMethodsNameWhatIsAllowed) {
  auto m = match_route("GET", "/v1/chat/completions");
  ASSERT_NE(m.route, nullptr);
  EXPECT_FALSE(m.method_allowed);
  EXPECT_EQ(m.route->methods, "POST");
  EXPECT_EQ(m.route->label, "chat");

  m = match_route("POST", "/v1/conversations/c1");
  EXPECT_FALSE(m.method_allowed);
  EXPECT_EQ(m.route->methods, "GET, DELETE");
  EXPECT_FALSE(match_route("DEL", "/v1/conversations/c1").method_allowed);  // whole names only
  EXPECT_FALSE(match_route("POST", "/v1/models").method_allowed);
  EXPECT_FALSE(match_route("get", "/v1/models").method_allowed);  // methods are case-sensitive (RFC 9110 §9.1)
}

TEST(Routes, OperatorProbesTakeAnyMethodWithoutAKey) {
  for (const char* p : {"/healthz", "/readyz", "/metrics"}) {
    auto m = match_route("HEAD", p);
    ASSERT_NE(m.route, nullptr) << p;
    EXPECT_TRUE(m.method_allowed);
    EXPECT_FALSE(m.route->client_key);
  }
}

TEST(Routes, TheTableIsIndexedByItsIds) {
  // http_session.cpp's handler array is indexed by RouteId in table order.
  std::set<std::string_view> labels;
  for (size_t i = 0; i < routes().size(); ++i) {
    EXPECT_EQ(static_cast<size_t>(routes()[i].id), i);
    labels.insert(routes()[i].label);
  }
  EXPECT_EQ(routes().size(), kRouteCount);
  EXPECT_EQ(labels.size(), kRouteCount);
}

}  // namespace
}  // namespace agora::gateway
