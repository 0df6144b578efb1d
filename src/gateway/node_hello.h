// The gateway's check of a node's hello, before the node is admitted: a
// pure function of the frame (the protocol version, printable ids that
// cannot forge log lines, bounded model lists, an identity key where
// attestation is offered). Fuzzed with the node frames (tests/fuzz).
#pragma once

#include <optional>
#include <string>

#include "protocol/messages.h"

namespace agora::gateway {

// Why the hello is refused (the reject's message), or nullopt.
std::optional<std::string> check_hello(const protocol::Hello& h);

}  // namespace agora::gateway
