#include "protocol/sealed.h"

#include <algorithm>

#include "crypto/aead.h"
#include "crypto/random.h"
#include "protocol/messages.h"

namespace agora::protocol::sealed {
namespace {

using crypto::AeadAlgorithm;
namespace hpke = crypto::hpke;

constexpr AeadAlgorithm kAead = AeadAlgorithm::aes256gcm;
const std::string kZeroNonce(crypto::kAeadNonceBytes, '\0');  // CK is used once

std::string u64be(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i, v >>= 8) out[static_cast<size_t>(i)] = static_cast<char>(v & 0xff);
  return out;
}

void put(std::string& out, std::string_view field) {
  out += u64be(field.size());
  out.append(field);
}

std::string info_for(std::string_view node_id) {
  std::string info = "agora sealed request v1";
  info += '\0';
  info.append(node_id);
  return info;
}

std::string chunk_aad(uint64_t seq, bool final) {
  std::string aad = "agora sealed response v1";
  aad += '\0';
  aad += u64be(seq);
  aad += final ? '\x01' : '\x00';
  return aad;
}

}  // namespace

std::string header_aad(const Header& h) {
  // Length-prefixed fields: no two headers share an encoding.
  std::string out(kSuite);
  out += '\0';
  put(out, h.model);
  out += u64be(static_cast<uint64_t>(static_cast<int64_t>(h.max_tokens)));
  out += h.stream ? '\x01' : '\x00';
  out += u64be(static_cast<uint64_t>(h.issued_ms));
  out += u64be(h.recipients.size());
  for (const auto& r : h.recipients) put(out, r);
  return out;
}

Result<ClientSeal> seal_request(Header header, const GenerationRequest& payload,
                                std::span<const Recipient> recipients) {
  if (recipients.empty() || recipients.size() > kMaxRecipients) {
    return make_error(Errc::invalid_argument, "sealed: 1 to " + std::to_string(kMaxRecipients) + " recipients");
  }
  header.recipients.clear();
  for (const auto& r : recipients) {
    if (r.node_id.empty()) return make_error(Errc::invalid_argument, "sealed: a recipient without a node id");
    if (std::find(header.recipients.begin(), header.recipients.end(), r.node_id) != header.recipients.end()) {
      return make_error(Errc::invalid_argument, "sealed: node " + r.node_id + " is listed twice");
    }
    header.recipients.push_back(r.node_id);
  }
  const std::string aad = header_aad(header);
  std::string ck = crypto::random_bytes(32);
  std::string plaintext = encode_request(payload);
  auto ct = crypto::aead_seal(kAead, ck, kZeroNonce, aad, plaintext);
  crypto::secure_wipe(plaintext);
  if (!ct) {
    crypto::secure_wipe(ck);
    return ct.error();
  }
  ClientSeal out;
  out.request.ciphertext = std::move(*ct);
  for (const auto& r : recipients) {
    auto s = hpke::setup_base_sender(kAead, r.identity_key, info_for(r.node_id));
    if (!s) {
      crypto::secure_wipe(ck);
      return make_error(s.error().code, "sealed: node " + r.node_id + ": " + s.error().message);
    }
    auto wrapped = s->context.seal(aad, ck);
    if (!wrapped) {
      crypto::secure_wipe(ck);
      return wrapped.error();
    }
    out.request.keys.push_back(WrappedKey{r.node_id, s->enc, std::move(*wrapped)});
    out.contexts.emplace_back(r.node_id, std::move(s->context));
  }
  crypto::secure_wipe(ck);
  out.request.header = std::move(header);
  return out;
}

Result<Opened> open_request(const Header& header, const WrappedKey& mine, std::string_view ciphertext,
                            const hpke::KeyPair& identity) {
  if (std::find(header.recipients.begin(), header.recipients.end(), mine.node_id) == header.recipients.end()) {
    return make_error(Errc::invalid_argument, "sealed: this node is not among the request's recipients");
  }
  const std::string aad = header_aad(header);
  auto ctx = hpke::setup_base_recipient(kAead, mine.enc, identity.private_key, info_for(mine.node_id));
  if (!ctx) return make_error(Errc::corrupt, "sealed: cannot open the key share: " + ctx.error().message);
  auto ck = ctx->open(aad, mine.wrapped);
  if (!ck) return make_error(Errc::corrupt, "sealed: the key share does not open (not sealed to this node, or altered)");
  auto plaintext = crypto::aead_open(kAead, *ck, kZeroNonce, aad, ciphertext);
  crypto::secure_wipe(*ck);
  if (!plaintext) return make_error(Errc::corrupt, "sealed: the request does not open (altered)");
  auto request = decode_request(*plaintext);
  crypto::secure_wipe(*plaintext);
  if (!request) return request.error();
  return Opened{std::move(*request), std::move(*ctx)};
}

ResponseSealer::ResponseSealer(const hpke::Context& context)
    : key_(context.export_secret("agora response key", 32)),
      nonce_(context.export_secret("agora response nonce", crypto::kAeadNonceBytes)) {}

Result<std::string> ResponseSealer::seal(std::string_view plaintext, bool final) {
  if (finished_) return make_error(Errc::invalid_argument, "sealed: the response is already complete");
  auto ct = crypto::aead_seal(kAead, key_, hpke::compute_nonce(nonce_, seq_), chunk_aad(seq_, final), plaintext);
  if (!ct) return ct.error();
  ++seq_;
  finished_ = final;
  return ct;
}

ResponseOpener::ResponseOpener(const hpke::Context& context)
    : key_(context.export_secret("agora response key", 32)),
      nonce_(context.export_secret("agora response nonce", crypto::kAeadNonceBytes)) {}

Result<std::string> ResponseOpener::open(uint64_t seq, bool final, std::string_view ciphertext) {
  if (finished_) return make_error(Errc::corrupt, "sealed: a chunk after the final one");
  if (seq != expected_) {
    return make_error(Errc::corrupt, "sealed: chunk " + std::to_string(seq) + " where " + std::to_string(expected_) +
                                         " was due (reordered, dropped or replayed)");
  }
  // The claimed position and finality are only believed once they open.
  auto pt = crypto::aead_open(kAead, key_, hpke::compute_nonce(nonce_, seq), chunk_aad(seq, final), ciphertext);
  if (!pt) return make_error(Errc::corrupt, "sealed: chunk " + std::to_string(seq) + " does not open (altered)");
  ++expected_;
  finished_ = final;
  return pt;
}

Status ReplayCache::accept(std::string_view enc, int64_t issued_ms, int64_t now_ms) {
  while (!expiry_.empty() && expiry_.begin()->first < now_ms) {
    seen_.erase(expiry_.begin()->second);
    expiry_.erase(expiry_.begin());
  }
  if (issued_ms < now_ms - kFreshnessMs) return make_error(Errc::invalid_argument, "sealed: the request is stale");
  if (issued_ms > now_ms + kFutureSkewMs) {
    return make_error(Errc::invalid_argument, "sealed: the request is dated in the future");
  }
  std::string key(enc);
  if (seen_.contains(key)) return make_error(Errc::invalid_argument, "sealed: a replayed request");
  if (seen_.size() >= max_) return make_error(Errc::unavailable, "sealed: too many recent requests to remember");
  seen_.insert(key);
  expiry_.emplace(issued_ms + kFreshnessMs, std::move(key));
  return ok_status();
}

}  // namespace agora::protocol::sealed
