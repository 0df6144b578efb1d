// Node protocol frames in both directions (protocol::decode): whatever a node
// or a gateway sends. A frame that decodes must encode to a frame that
// decodes to the same encoding (encode(decode(x)) is a fixed point), and a
// Delta's hot-path encoder must agree with the generic one. The same bytes
// also go through decode_request (a sealed job's opened payload); a hello
// that decodes goes through the gateway's check_hello, and an accepted one
// has what the gateway then relies on.
#include "fuzz_check.h"
#include "gateway/node_hello.h"
#include "protocol/messages.h"

using namespace agora;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view frame = fuzz::as_text(data, size);
  if (auto m = protocol::decode(frame)) {
    const std::string once = protocol::encode(*m);
    FUZZ_CHECK(once.size() <= 2 * frame.size() + 4096, "an encoding must not blow up");
    auto again = protocol::decode(once);
    FUZZ_CHECK(again.ok(), "an encoded frame must decode");
    FUZZ_CHECK(protocol::message_type(*again) == protocol::message_type(*m), "the type must survive");
    FUZZ_CHECK(protocol::encode(*again) == once, "encode(decode(x)) must be a fixed point");
    if (const auto* h = std::get_if<protocol::Hello>(&*m); h && !gateway::check_hello(*h)) {
      FUZZ_CHECK(!h->node_id.empty() && h->node_id.size() <= 128, "an accepted hello has a bounded node id");
      FUZZ_CHECK(!h->models.empty() && h->models.size() <= 64, "an accepted hello serves 1 to 64 models");
      FUZZ_CHECK(h->attestation.empty() || !h->identity_key.empty(), "attestation needs the identity key");
    }
    if (const auto* d = std::get_if<protocol::Delta>(&*m)) {
      std::string hot;
      protocol::encode_delta(hot, *d);
      FUZZ_CHECK(hot == once, "encode_delta must match encode");
    }
  }
  if (auto r = protocol::decode_request(frame)) {
    const std::string once = protocol::encode_request(*r);
    auto again = protocol::decode_request(once);
    FUZZ_CHECK(again.ok(), "an encoded request must decode");
    FUZZ_CHECK(protocol::encode_request(*again) == once, "encode_request(decode_request(x)) must be a fixed point");
  }
  return 0;
}
