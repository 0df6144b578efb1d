#include "gateway/conversations.h"

#include <boost/json.hpp>

#include "crypto/aead.h"
#include "crypto/ed25519.h"
#include "crypto/hmac.h"
#include "crypto/random.h"

namespace agora::gateway {
namespace json = boost::json;

namespace {

constexpr std::string_view kLabel = "agora/v1/conversations";

std::string aad_for(std::string_view owner, std::string_view id_mac) {
  std::string aad = "agora-conversation-v1";
  aad += '\0';
  aad.append(owner);
  aad += '\0';
  aad.append(id_mac);
  return aad;
}

// Turn boundaries: indexes where a user message starts a turn (a leading
// assistant message, if any, starts one too).
std::vector<size_t> turn_starts(const std::vector<protocol::ChatMessage>& m) {
  std::vector<size_t> starts;
  for (size_t i = 0; i < m.size(); ++i) {
    if (i == 0 || m[i].role == "user") starts.push_back(i);
  }
  return starts;
}

}  // namespace

// Two subkeys per owner: one encrypts, one hashes ids.
std::string ConversationVault::key_for(std::string_view owner) const {
  return master_->derive(kLabel, std::string("enc\0", 4).append(owner), 32);
}

std::string ConversationVault::id_mac(std::string_view owner, std::string_view id) const {
  std::string key = master_->derive(kLabel, std::string("id\0", 3).append(owner), 32);
  crypto::HmacSha256 mac(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(key.data()), key.size()));
  crypto::secure_wipe(key);
  return mac.mac_hex(id);
}

Result<store::ConversationRecord> ConversationVault::seal(std::string_view owner, std::string_view id,
                                                          const Conversation& c) const {
  json::array messages;
  for (const auto& m : c.messages) messages.push_back(json::object{{"role", m.role}, {"content", m.content}});
  std::string plaintext = json::serialize(json::object{{"v", 1}, {"messages", std::move(messages)}});
  store::ConversationRecord row;
  row.owner = std::string(owner);
  row.id_mac = id_mac(owner, id);
  row.created_ms = c.created_ms;
  row.updated_ms = c.updated_ms;
  row.expires_ms = c.expires_ms;
  row.nonce = crypto::random_bytes(crypto::kAeadNonceBytes);
  std::string key = key_for(owner);
  auto sealed = crypto::aes256gcm_seal(key, row.nonce, aad_for(row.owner, row.id_mac), plaintext);
  crypto::secure_wipe(key);
  crypto::secure_wipe(plaintext);
  if (!sealed) return sealed.error();
  row.ciphertext = std::move(*sealed);
  return row;
}

Result<Conversation> ConversationVault::open(const store::ConversationRecord& row) const {
  std::string key = key_for(row.owner);
  auto plain = crypto::aes256gcm_open(key, row.nonce, aad_for(row.owner, row.id_mac), row.ciphertext);
  crypto::secure_wipe(key);
  if (!plain) return plain.error();
  boost::system::error_code ec;
  json::value v = json::parse(*plain, ec);
  crypto::secure_wipe(*plain);
  if (ec || !v.is_object() || !v.get_object().contains("messages") || !v.get_object().at("messages").is_array()) {
    return make_error(Errc::corrupt, "conversation: the decrypted record is malformed");
  }
  Conversation c;
  c.created_ms = row.created_ms;
  c.updated_ms = row.updated_ms;
  c.expires_ms = row.expires_ms;
  for (const auto& m : v.get_object().at("messages").get_array()) {
    if (!m.is_object()) return make_error(Errc::corrupt, "conversation: a message is malformed");
    const auto* role = m.get_object().if_contains("role");
    const auto* content = m.get_object().if_contains("content");
    if (!role || !role->is_string() || !content || !content->is_string()) {
      return make_error(Errc::corrupt, "conversation: a message is malformed");
    }
    c.messages.push_back({std::string(role->get_string()), std::string(content->get_string())});
  }
  return c;
}

int64_t estimate_tokens(const protocol::ChatMessage& m) { return 6 + (static_cast<int64_t>(m.content.size()) + 2) / 3; }

Assembled assemble(const std::vector<protocol::ChatMessage>& stored, const std::vector<protocol::ChatMessage>& request,
                   int64_t budget_tokens) {
  Assembled out;
  std::vector<protocol::ChatMessage> system, rest;
  int64_t used = 8;  // the template's own tokens
  for (const auto& m : request) {
    (m.role == "system" ? system : rest).push_back(m);
    used += estimate_tokens(m);
  }
  const auto starts = turn_starts(stored);
  // Newest turns first, while they fit.
  size_t keep_from = stored.size();
  for (size_t t = starts.size(); t-- > 0;) {
    const size_t begin = starts[t];
    const size_t end = t + 1 < starts.size() ? starts[t + 1] : stored.size();
    int64_t cost = 0;
    for (size_t i = begin; i < end; ++i) cost += estimate_tokens(stored[i]);
    if (budget_tokens >= 0 && used + cost > budget_tokens) break;
    used += cost;
    keep_from = begin;
    ++out.turns_used;
  }
  out.turns_dropped = static_cast<int>(starts.size()) - out.turns_used;
  out.messages = std::move(system);
  out.messages.insert(out.messages.end(), stored.begin() + static_cast<std::ptrdiff_t>(keep_from), stored.end());
  out.messages.insert(out.messages.end(), rest.begin(), rest.end());
  return out;
}

void append_exchange(Conversation& c, const std::vector<protocol::ChatMessage>& request, std::string answer) {
  for (const auto& m : request) {
    if (m.role != "system") c.messages.push_back(m);
  }
  c.messages.push_back({"assistant", std::move(answer)});
  size_t bytes = 0;
  for (const auto& m : c.messages) bytes += m.content.size();
  if (bytes <= kMaxConversationBytes) return;
  const auto starts = turn_starts(c.messages);
  size_t drop_to = 0;
  for (size_t t = 1; t < starts.size() && bytes > kMaxConversationBytes; ++t) {
    for (size_t i = starts[t - 1]; i < starts[t]; ++i) bytes -= c.messages[i].content.size();
    drop_to = starts[t];
  }
  c.messages.erase(c.messages.begin(), c.messages.begin() + static_cast<std::ptrdiff_t>(drop_to));
}

std::string conversation_json(std::string_view id, const Conversation& c) {
  json::array messages;
  for (const auto& m : c.messages) messages.push_back(json::object{{"role", m.role}, {"content", m.content}});
  json::object o{{"id", id},
                 {"object", "conversation"},
                 {"created", c.created_ms / 1000},
                 {"updated", c.updated_ms / 1000},
                 {"expires_at", c.expires_ms ? json::value(*c.expires_ms / 1000) : json::value(nullptr)},
                 {"messages", std::move(messages)}};
  return json::serialize(o);
}

}  // namespace agora::gateway
