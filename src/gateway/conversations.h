// Opt-in conversation memory (a request with "conversation_id").
//
// At rest: each conversation is one row whose plaintext — the JSON of its
// user and assistant messages — is sealed with AES-256-GCM under a key
// derived from the master secret for the owning key's lineage
// (HKDF "agora/v1/conversations", context = "enc" + lineage id), with a fresh
// random nonce per write and the owner and id hash as associated data, so
// a row cannot be moved to another owner or id. The client's conversation
// id is stored only as an HMAC under a second subkey ("id" + lineage id). A copy of the database
// without the master secret reveals neither the text nor the ids; another
// key (another lineage) derives another key and looks under another owner:
// it cannot read, extend or even detect someone else's conversation.
//
// In a request: the request's own system messages come first, then the
// stored turns, then the request's other messages. When the model's
// context cannot hold them all, whole turns are dropped oldest first (see
// assemble()); the request's own messages are never dropped.
//
// Threading: ConversationVault is immutable and thread-safe (the store's
// control thread uses it); the rest are pure functions.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "crypto/master_secret.h"
#include "protocol/wire.h"
#include "store/store.h"

namespace agora::gateway {

struct Conversation {
  std::vector<protocol::ChatMessage> messages;  // user/assistant, oldest first
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
  std::optional<int64_t> expires_ms;
};

// Most bytes of message text one conversation keeps (older turns go first).
inline constexpr size_t kMaxConversationBytes = 1u << 20;

class ConversationVault {
 public:
  explicit ConversationVault(std::shared_ptr<const crypto::MasterSecret> master) : master_(std::move(master)) {}

  // The stored form of the client's id, for `owner` (a key lineage).
  std::string id_mac(std::string_view owner, std::string_view id) const;
  // A sealed row (fresh nonce) for `c`.
  Result<store::ConversationRecord> seal(std::string_view owner, std::string_view id, const Conversation& c) const;
  // Errors: corrupt (wrong owner/id, altered row).
  Result<Conversation> open(const store::ConversationRecord& row) const;

 private:
  std::string key_for(std::string_view owner) const;
  std::shared_ptr<const crypto::MasterSecret> master_;
};

// The rate limiter's estimate of a message's tokens (6 + bytes / 3).
int64_t estimate_tokens(const protocol::ChatMessage& m);

struct Assembled {
  std::vector<protocol::ChatMessage> messages;  // what the node gets
  int turns_used = 0;
  int turns_dropped = 0;
};
// Prepends the newest stored turns that fit `budget_tokens` (estimated)
// together with the request's own messages. A turn is a user message with
// the assistant messages after it; turns are kept or dropped whole, newest
// kept first. `budget_tokens` < 0: no limit.
Assembled assemble(const std::vector<protocol::ChatMessage>& stored, const std::vector<protocol::ChatMessage>& request,
                   int64_t budget_tokens);

// Appends a finished exchange — the request's non-system messages and the
// answer — and drops the oldest turns beyond kMaxConversationBytes.
void append_exchange(Conversation& c, const std::vector<protocol::ChatMessage>& request, std::string answer);

// The JSON of GET /v1/conversations/{id}.
std::string conversation_json(std::string_view id, const Conversation& c);

}  // namespace agora::gateway
