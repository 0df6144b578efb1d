// The frames that end a job on the node: pure functions of the outcome and,
// for a sealed job, its response sealer (docs/PROTOCOL.md, "done", "failed",
// "Sealed requests"). A sealed job's real finish reason, usage and failure
// travel in its sealed final chunk; the plaintext says no more than the
// gateway needs (usage, an Errc class, retryable).
#pragma once

#include <string>

#include "common/result.h"
#include "engine/engine.h"
#include "protocol/messages.h"
#include "protocol/sealed.h"

namespace agora::node {

// A job's failure (`sealer` null: a plain job). Sealed: the real code and
// message as a Failed frame in the final chunk, the plaintext message generic.
std::string failed_frame(protocol::JobId id, const Error& e, bool retryable, protocol::sealed::ResponseSealer* sealer);

// A finished job: done (an engine error: failed). Sealed: the real done in
// the final chunk; the plaintext reports a call as "stop".
std::string done_frame(protocol::JobId id, const engine::Completion& c, protocol::sealed::ResponseSealer* sealer);

}  // namespace agora::node
