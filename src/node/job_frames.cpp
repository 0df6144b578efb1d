#include "node/job_frames.h"

#include "node/wire_convert.h"

namespace agora::node {

std::string failed_frame(protocol::JobId id, const Error& e, bool retryable, protocol::sealed::ResponseSealer* sealer) {
  protocol::Failed f{id, std::string(errc_name(e.code)), e.message, retryable};
  if (!sealer) return protocol::encode(f);
  auto ct = sealer->seal(protocol::encode(protocol::Failed{0, f.code, f.message, false}), /*final=*/true);
  if (!ct) return protocol::encode(protocol::Failed{id, "internal", "cannot seal the response", false});
  f.message = "the sealed request failed (the reason is in its sealed answer)";
  f.sealed = protocol::SealedChunk{sealer->next_sequence() - 1, true, std::move(*ct)};
  return protocol::encode(f);
}

std::string done_frame(protocol::JobId id, const engine::Completion& c, protocol::sealed::ResponseSealer* sealer) {
  if (c.finish == engine::FinishReason::error) {
    const Error e = c.error ? *c.error : Error{Errc::internal, "generation failed"};
    return failed_frame(id, e, false, sealer);
  }
  protocol::Done d{id, to_wire(c.finish), to_wire(c.usage), to_wire(c.timings), std::nullopt};
  if (sealer) {
    const std::string plain = protocol::encode(protocol::Done{0, d.finish, d.usage, d.timings, std::nullopt});
    // The gateway learns no more than usage tells it: a call is a "stop".
    if (d.finish == protocol::FinishReason::tool_calls) d.finish = protocol::FinishReason::stop;
    auto ct = sealer->seal(plain, /*final=*/true);
    if (!ct) return protocol::encode(protocol::Failed{id, "internal", "cannot seal the response: " + ct.error().message, false});
    d.sealed = protocol::SealedChunk{sealer->next_sequence() - 1, true, std::move(*ct)};
  }
  return protocol::encode(d);
}

}  // namespace agora::node
