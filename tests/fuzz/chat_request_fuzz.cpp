// POST /v1/chat/completions bodies: parse_chat_request with the gateway's
// default limits. A request it accepts must survive the trip to the node:
// its generation request encodes to a job payload that decodes back to the
// same encoding (protocol::encode_request / decode_request).
#include "fuzz_check.h"
#include "gateway/openai.h"
#include "protocol/messages.h"

using namespace agora;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const gateway::RequestLimits limits;
  auto parsed = gateway::parse_chat_request(fuzz::as_text(data, size), limits);
  auto* req = std::get_if<gateway::ChatRequest>(&parsed);
  if (!req) {
    const auto& err = std::get<gateway::ApiError>(parsed);
    FUZZ_CHECK(err.status >= 400 && err.status < 500, "a bad request must be a 4xx");
    FUZZ_CHECK(!err.message.empty(), "an error must say what is wrong");
    return 0;
  }
  if (req->sealed) return 0;  // the payload is opaque to the gateway
  const std::string wire = protocol::encode_request(req->generation);
  auto back = protocol::decode_request(wire);
  FUZZ_CHECK(back.ok(), "an accepted request must decode on the node");
  FUZZ_CHECK(protocol::encode_request(*back) == wire, "the job payload must round-trip");
  return 0;
}
