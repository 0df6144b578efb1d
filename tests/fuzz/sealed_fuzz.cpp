// Sealed envelopes as a node and a client meet them: lines of node-protocol
// frames, the first a sealed job (opened with a fixed identity key, as the
// node does: header from the job, this node's wrapped key), the rest Delta
// and Done frames whose sealed chunks are opened in order (as agora proxy
// does). Inputs that are not a sealed job go straight to HPKE: the first 32
// bytes as the encapsulation, the rest as a ciphertext under the fixed key.
#include "crypto/hpke.h"
#include "fuzz_check.h"
#include "protocol/messages.h"
#include "protocol/sealed.h"

using namespace agora;
namespace sealed = protocol::sealed;

namespace {

const crypto::hpke::KeyPair& identity() {
  static const crypto::hpke::KeyPair kp = *crypto::hpke::derive_key_pair(fuzz::kIdentityIkm);
  return kp;
}

void open_raw(std::string_view input) {
  if (input.size() < 32) return;
  auto ctx = crypto::hpke::setup_base_recipient(crypto::AeadAlgorithm::aes256gcm, input.substr(0, 32),
                                                identity().private_key, "agora fuzz");
  if (!ctx) return;
  (void)ctx->open("aad", input.substr(32));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input = fuzz::as_text(data, size);
  const size_t nl = input.find('\n');
  auto first = protocol::decode(input.substr(0, nl));
  const auto* job = first ? std::get_if<protocol::Job>(&*first) : nullptr;
  if (!job || !job->sealed) {
    open_raw(input);
    return 0;
  }
  const auto& sj = *job->sealed;
  sealed::Header h{job->model, job->request.max_tokens, sj.stream, sj.issued_ms, sj.recipients};
  auto opened = sealed::open_request(h, sealed::WrappedKey{std::string(fuzz::kFuzzNodeId), sj.enc, sj.key},
                                     sj.ciphertext, identity());
  if (!opened) return 0;
  sealed::ResponseOpener opener(opened->context);
  std::string_view rest = nl == std::string_view::npos ? std::string_view{} : input.substr(nl + 1);
  while (!rest.empty() && !opener.finished()) {
    const size_t end = rest.find('\n');
    auto m = protocol::decode(rest.substr(0, end));
    rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
    if (!m) continue;
    const protocol::SealedChunk* chunk = nullptr;
    if (const auto* d = std::get_if<protocol::Delta>(&*m); d && d->sealed) chunk = &*d->sealed;
    if (const auto* d = std::get_if<protocol::Done>(&*m); d && d->sealed) chunk = &*d->sealed;
    if (!chunk) continue;
    auto plain = opener.open(chunk->seq, chunk->final, chunk->ciphertext);
    if (!plain) break;  // the client stops at the first bad chunk
    // As agora proxy reads it (open_chunk): a Delta before the final chunk,
    // the Done (finish reason, usage) in it.
    auto inner = protocol::decode(*plain);
    if (!inner) break;
    const bool kind_ok = chunk->final ? std::holds_alternative<protocol::Done>(*inner)
                                      : std::holds_alternative<protocol::Delta>(*inner);
    if (!kind_ok) break;
  }
  if (opener.finished()) {
    // Nothing opens after the final chunk, not even a replay of it.
    FUZZ_CHECK(!opener.open(0, false, std::string(32, 'x')), "a chunk after the final one must be refused");
  }
  return 0;
}
