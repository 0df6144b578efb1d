// The gateway's attestation verifiers, built from its configuration: one
// per kind of evidence ("nvidia_cc", "play_integrity"), present only when
// the operator configured its pinned root or keys (docs/SECURITY.md,
// "Attestation levels"). The challenge / evidence lifecycle itself is in
// attestation.cpp, as part of GatewayImpl.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "attest/verifier.h"
#include "common/result.h"
#include "gateway/gateway.h"

namespace agora::gateway {

using Verifiers = std::map<std::string, std::shared_ptr<const attest::AttestationVerifier>, std::less<>>;

// Errors: invalid_argument or not_found naming the setting (an unreadable
// root or key file, a key of the wrong size or type, a missing package).
Result<Verifiers> load_verifiers(const GatewayConfig& config);

}  // namespace agora::gateway
