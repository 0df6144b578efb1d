// What agora proxy opens: a gateway's answer to a sealed request
// (client/sealed_answer.h), which the proxy does not trust. The first byte
// picks the path — a unary 200 body, an error body, or a stream of SSE
// events split on blank lines — and the rest is the gateway's bytes. The
// proxy holds a context for node "node-fuzz" (derived from the fixed test
// key), so chunks from that node get as far as the AEAD. Whatever comes in,
// the proxy must answer with a body, an error or a refusal — never crash,
// and never a stream that claims completion without the final chunk.
#include "client/sealed_answer.h"
#include "crypto/hpke.h"
#include "fuzz_check.h"

using namespace agora;
namespace sealed = protocol::sealed;

namespace {

const sealed::ClientSeal& seal() {
  static const sealed::ClientSeal s = [] {
    sealed::ClientSeal out;
    const auto node = *crypto::hpke::derive_key_pair(fuzz::kIdentityIkm);
    const auto eph = *crypto::hpke::derive_key_pair("agora fuzz ephemeral (test only)");
    auto ctx = crypto::hpke::setup_base_recipient(crypto::AeadAlgorithm::aes256gcm, eph.public_key, node.private_key,
                                                  "agora fuzz answer");
    out.contexts.emplace_back(std::string(fuzz::kFuzzNodeId), std::move(*ctx));
    return out;
  }();
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view input = fuzz::as_text(data + 1, size - 1);
  const client::AnswerShape shape{"m", (data[0] & 4) != 0, (data[0] & 8) != 0};
  switch (data[0] % 3) {
    case 0: {
      auto r = client::open_unary(seal(), shape, input);
      if (auto* e = std::get_if<openai::ApiError>(&r)) FUZZ_CHECK(e->status >= 400, "an error is an error status");
      if (auto* w = std::get_if<client::Refused>(&r)) FUZZ_CHECK(!w->why.empty(), "a refusal says why");
      break;
    }
    case 1: {
      auto r = client::open_error(seal(), input);
      if (r) {
        if (auto* e = std::get_if<openai::ApiError>(&*r)) FUZZ_CHECK(e->status >= 400, "an error is an error status");
      }
      break;
    }
    default: {
      client::SealedStream stream(seal(), shape);
      std::string out;
      size_t pos = 0;
      auto step = client::SealedStream::Step::more;
      while (step == client::SealedStream::Step::more && pos < input.size()) {
        const size_t end = input.find("\n\n", pos);
        step = stream.event(input.substr(pos, end == std::string_view::npos ? end : end - pos), out);
        pos = end == std::string_view::npos ? input.size() : end + 2;
      }
      if (step == client::SealedStream::Step::more) stream.cut_off("", out);
      if (step == client::SealedStream::Step::done) {
        FUZZ_CHECK(out.ends_with("data: [DONE]\n\n"), "a complete stream ends with [DONE]");
      } else {
        // (The text may appear inside a relayed error's JSON; never as an event.)
        FUZZ_CHECK(!out.starts_with("data: [DONE]\n\n") && out.find("\n\ndata: [DONE]\n\n") == std::string::npos,
                   "an incomplete stream never claims completion");
        FUZZ_CHECK(!stream.why().empty(), "an ended stream says why");
      }
    }
  }
  return 0;
}
