// POST /v1/chat/completions bodies: parse_chat_request with the gateway's
// default limits. A request it accepts must survive the trip to the node:
// the job frame the gateway builds from it (gateway.cpp dispatch: the model,
// the generation request, a sealed request's header and one node's share)
// encodes to a frame that decodes, and re-encodes to the same bytes.
#include "fuzz_check.h"
#include "openai/openai.h"
#include "protocol/messages.h"

using namespace agora;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const openai::RequestLimits limits;
  auto parsed = openai::parse_chat_request(fuzz::as_text(data, size), limits);
  auto* req = std::get_if<openai::ChatRequest>(&parsed);
  if (!req) {
    const auto& err = std::get<openai::ApiError>(parsed);
    FUZZ_CHECK(err.status >= 400 && err.status < 500, "a bad request must be a 4xx");
    FUZZ_CHECK(!err.message.empty(), "an error must say what is wrong");
    return 0;
  }
  protocol::Job frame;
  frame.job = 1;
  frame.model = req->model;
  frame.request = req->generation;
  if (!req->max_tokens_given) frame.request.max_tokens = 512;  // the node's context, as dispatch does
  if (const auto& sr = req->sealed) {
    FUZZ_CHECK(!sr->keys.empty() && !sr->header.recipients.empty(), "a sealed request names its recipients");
    const auto& k = sr->keys.front();
    frame.sealed = protocol::SealedJob{sr->header.issued_ms, sr->header.stream, sr->header.recipients, k.enc,
                                       k.wrapped, sr->ciphertext};
  }
  const std::string wire = protocol::encode(frame);
  auto back = protocol::decode(wire);
  FUZZ_CHECK(back.ok(), "an accepted request must reach the node as a valid job frame");
  FUZZ_CHECK(protocol::encode(*back) == wire, "the job frame must round-trip");
  return 0;
}
