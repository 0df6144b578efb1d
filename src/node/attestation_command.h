// Runs the operator's attestation command (agora node --attestation-cmd):
// the program that obtains evidence from the device or from NVIDIA's
// attestation service, given the evidence nonce, and prints the token.
//
//   /bin/sh -c 'CMD "$@"' agora-attestation EVIDENCE_NONCE
//
// so the nonce is CMD's last argument; it is also in the environment as
// AGORA_EVIDENCE_NONCE, with AGORA_GATEWAY_NONCE, AGORA_IDENTITY_KEY (the
// node's X25519 public key, hex) and AGORA_ATTESTATION_KIND. The command
// runs in its own process group, which is killed on timeout or cancel.
// Blocking: call it off the event loop.
#pragma once

#include <atomic>
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/result.h"

namespace agora::node {

struct AttestationCommand {
  std::string command;  // a shell command line
  std::vector<std::pair<std::string, std::string>> env;  // added to the node's environment
  std::string nonce;                                     // the last argument
  std::chrono::milliseconds timeout{60'000};
  size_t max_output = 128u << 10;
};

// The command's standard output, without surrounding whitespace. Errors:
// unavailable (could not start, killed on timeout or cancel, exited with a
// failure: the message has the status and the end of its standard error),
// too_large (more output than max_output), invalid_argument (empty output,
// or not UTF-8 text).
Result<std::string> run_attestation_command(const AttestationCommand& c, const std::atomic<bool>& cancel,
                                            const Clock& clock = SystemClock::instance());

}  // namespace agora::node
