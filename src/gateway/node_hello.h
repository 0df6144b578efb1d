// The gateway's check of a node's hello, before the node is admitted: a
// pure function of the frame (the protocol version, printable ids that
// cannot forge log lines, bounded model lists, an identity key where
// attestation is offered). Fuzzed with the node frames (tests/fuzz).
#pragma once

#include <optional>
#include <string>

#include "protocol/messages.h"

namespace agora::gateway {

struct HelloProblem {
  std::string code;     // the reject's code: "protocol_version" or "bad_hello"
  std::string message;  // what is wrong; for the version, the version to run
};

// Why the hello is refused, or nullopt. Protocol versions from
// kMinProtocolVersion to kProtocolVersion are accepted.
std::optional<HelloProblem> check_hello(const protocol::Hello& h);

}  // namespace agora::gateway
