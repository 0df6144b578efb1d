// The gateway's check of a node's hello: the protocol versions it accepts
// (this one and the previous one), the reject code and the version to run
// for the others, and the field rules.
#include "gateway/node_hello.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace agora::gateway {
namespace {

using ::testing::HasSubstr;

protocol::Hello valid(int version) {
  protocol::Hello h;
  h.protocol = version;
  h.node_id = "node-1";
  protocol::ModelAdvert a;
  a.name = "tiny";
  a.sha256 = std::string(64, 'a');
  a.ctx_per_slot = 512;
  a.slots = 1;
  h.models.push_back(a);
  return h;
}

TEST(NodeHello, TheCurrentAndThePreviousVersionAreAccepted) {
  EXPECT_FALSE(check_hello(valid(protocol::kProtocolVersion)).has_value());
  EXPECT_FALSE(check_hello(valid(protocol::kMinProtocolVersion)).has_value());
}

TEST(NodeHello, OlderAndNewerVersionsAreRefusedNamingTheVersionToRun) {
  for (int v : {protocol::kMinProtocolVersion - 1, protocol::kProtocolVersion + 1}) {
    auto p = check_hello(valid(v));
    ASSERT_TRUE(p.has_value()) << v;
    EXPECT_EQ(p->code, "protocol_version");
    EXPECT_THAT(p->message, HasSubstr("protocol " + std::to_string(protocol::kProtocolVersion)));
    EXPECT_THAT(p->message, HasSubstr(std::to_string(v)));
  }
}

TEST(NodeHello, FieldProblemsAreBadHellos) {
  auto h = valid(protocol::kProtocolVersion);
  h.node_id = "has space";
  auto p = check_hello(h);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->code, "bad_hello");
  EXPECT_THAT(p->message, HasSubstr("node_id"));
}

}  // namespace
}  // namespace agora::gateway
