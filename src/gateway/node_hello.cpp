#include "gateway/node_hello.h"

#include <fmt/format.h>

#include <unordered_set>

namespace agora::gateway {

namespace {

std::optional<std::string> check_fields(const protocol::Hello& h) {
  // Printable ASCII without spaces for what goes into log lines as is: a
  // node cannot forge a line (or an audit checkpoint) in the operator's logs.
  auto printable = [](std::string_view v, bool spaces) {
    for (unsigned char c : v) {
      if (c < (spaces ? 0x20 : 0x21) || c > 0x7e) return false;
    }
    return true;
  };
  if (h.node_id.empty() || h.node_id.size() > 128 || !printable(h.node_id, false)) {
    return std::string("node_id must be 1 to 128 printable ASCII characters without spaces");
  }
  if (!printable(h.region, false)) return std::string("region must be printable ASCII without spaces");
  if (h.models.empty() || h.models.size() > 64) return std::string("a node must serve 1 to 64 models");
  if (!h.attestation.empty() && h.identity_key.empty()) {
    return std::string("attestation binds the node's identity key: a node offering attestation must send identity_key");
  }
  if (h.region.size() > 64) return std::string("region must be at most 64 characters");
  std::unordered_set<std::string> names;
  for (const auto& m : h.models) {
    if (m.name.empty() || m.name.size() > 256 || !printable(m.name, false)) {
      return std::string("model names must be 1 to 256 printable ASCII characters without spaces");
    }
    if (!names.insert(m.name).second) return "model '" + m.name + "' is listed twice";
    if (m.slots < 1 || m.slots > 4096) return "model '" + m.name + "': slots must be 1 to 4096";
    if (m.ctx_per_slot < 1) return "model '" + m.name + "': ctx_per_slot must be positive";
    if (m.sha256.size() != 64) return "model '" + m.name + "': sha256 must be 64 hex characters";
  }
  return std::nullopt;
}

}  // namespace

std::optional<HelloProblem> check_hello(const protocol::Hello& h) {
  using protocol::kMinProtocolVersion, protocol::kProtocolVersion;
  if (h.protocol < kMinProtocolVersion) {
    return HelloProblem{"protocol_version",
                        fmt::format("protocol version {} is no longer supported: run an agora node that speaks protocol "
                                    "{} (this gateway accepts {} to {})",
                                    h.protocol, kProtocolVersion, kMinProtocolVersion, kProtocolVersion)};
  }
  if (h.protocol > kProtocolVersion) {
    return HelloProblem{"protocol_version",
                        fmt::format("protocol version {} is newer than this gateway's: run an agora node that speaks "
                                    "protocol {} (this gateway accepts {} to {}), or upgrade the gateway",
                                    h.protocol, kProtocolVersion, kMinProtocolVersion, kProtocolVersion)};
  }
  if (auto why = check_fields(h)) return HelloProblem{"bad_hello", std::move(*why)};
  return std::nullopt;
}

}  // namespace agora::gateway
