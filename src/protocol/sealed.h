// End-to-end sealed requests and responses (docs/PROTOCOL.md, "Sealed
// requests"): the client encrypts the messages and sampling parameters so
// that only the provider node that serves the request can read them, and
// the node encrypts every response chunk back to the client. The gateway
// sees only the header (model, max_tokens, stream, when, which nodes) and
// routes within the recipients it names.
//
//  - A fresh content key CK seals the payload (AES-256-GCM, the header as
//    associated data, so the gateway cannot change what the node runs).
//  - CK is wrapped to each candidate node with HPKE (RFC 9180 base mode,
//    DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM; info binds the
//    node id), so the gateway can fail over within that set.
//  - The response key and nonce are exported from the serving node's HPKE
//    context; chunk i is sealed under nonce XOR i with (i, final) in its
//    associated data: a truncated, reordered, replayed or altered stream
//    fails to open, and only a chunk marked final ends it.
//  - A node refuses a request it has seen (its encapsulation) or one issued
//    outside the freshness window.
//
// Pure functions and small state machines, no I/O: the client (agora
// proxy) and the node use them; tests drive them directly.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "common/result.h"
#include "crypto/hpke.h"
#include "protocol/wire.h"

namespace agora::protocol::sealed {

inline constexpr std::string_view kSuite = "agora-seal-v1";
// A node accepts requests issued at most this long ago (or this much in
// the future, for clock skew), and remembers encapsulations that long.
inline constexpr int64_t kFreshnessMs = 5 * 60 * 1000;
inline constexpr int64_t kFutureSkewMs = 60 * 1000;
inline constexpr size_t kMaxRecipients = 16;

// What the gateway sees, and what every ciphertext is bound to.
struct Header {
  std::string model;
  int32_t max_tokens = 0;
  bool stream = false;
  int64_t issued_ms = 0;
  std::vector<std::string> recipients;  // node ids, in the client's order
};
// The associated data all parts of one request are sealed under.
std::string header_aad(const Header& h);

struct Recipient {
  std::string node_id;
  std::string identity_key;  // raw 32-byte X25519 public key
};

// One recipient's share: the HPKE encapsulation and the wrapped CK.
struct WrappedKey {
  std::string node_id;
  std::string enc;
  std::string wrapped;
};

struct SealedRequest {
  Header header;
  std::vector<WrappedKey> keys;
  std::string ciphertext;  // the payload under CK
};

// The client side: the request, and per recipient the HPKE context the
// response will be opened with.
struct ClientSeal {
  SealedRequest request;
  std::vector<std::pair<std::string, crypto::hpke::Context>> contexts;  // by node id
};

// Errors: invalid_argument (no or too many recipients, a bad key, a node
// twice), the HPKE errors.
Result<ClientSeal> seal_request(Header header, const GenerationRequest& payload,
                                std::span<const Recipient> recipients);

struct Opened {
  GenerationRequest request;
  crypto::hpke::Context context;  // for the response
};
// The node side. Errors: invalid_argument (not a recipient), corrupt
// (anything altered, or not sealed to this node's key).
Result<Opened> open_request(const Header& header, const WrappedKey& mine, std::string_view ciphertext,
                            const crypto::hpke::KeyPair& identity);

// Seals response chunks in order (the node).
class ResponseSealer {
 public:
  explicit ResponseSealer(const crypto::hpke::Context& context);
  // Errors: invalid_argument once the final chunk was sealed.
  Result<std::string> seal(std::string_view plaintext, bool final);
  uint64_t next_sequence() const { return seq_; }

 private:
  std::string key_, nonce_;
  uint64_t seq_ = 0;
  bool finished_ = false;
};

// Opens response chunks in order (the client). Errors: corrupt (altered,
// out of order, replayed, a chunk after the final one).
class ResponseOpener {
 public:
  explicit ResponseOpener(const crypto::hpke::Context& context);
  Result<std::string> open(uint64_t seq, bool final, std::string_view ciphertext);
  // The final chunk has been opened: the response is complete.
  bool finished() const { return finished_; }

 private:
  std::string key_, nonce_;
  uint64_t expected_ = 0;
  bool finished_ = false;
};

// The node's memory of recent requests: accept() refuses an encapsulation
// seen within the freshness window, and anything issued outside it.
class ReplayCache {
 public:
  explicit ReplayCache(size_t max_entries = 1u << 18) : max_(max_entries) {}
  // Errors: invalid_argument (stale, from the future, or a replay),
  // unavailable (the cache is full of fresh entries: refusing is safer
  // than forgetting).
  Status accept(std::string_view enc, int64_t issued_ms, int64_t now_ms);
  size_t size() const { return seen_.size(); }

 private:
  size_t max_;
  std::unordered_set<std::string> seen_;
  std::multimap<int64_t, std::string> expiry_;  // when each stops mattering
};

}  // namespace agora::protocol::sealed
