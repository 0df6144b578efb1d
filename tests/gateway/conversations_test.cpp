// Conversation memory's pure parts: which earlier turns go to the model,
// how a conversation stays bounded, and the vault's binding of each sealed
// row to its owner and id.
#include "gateway/conversations.h"

#include <gtest/gtest.h>

namespace agora::gateway {
namespace {

using protocol::ChatMessage;

std::vector<ChatMessage> turns(int n, size_t bytes = 30) {
  std::vector<ChatMessage> out;
  for (int i = 1; i <= n; ++i) {
    out.push_back({"user", std::string(1, static_cast<char>('0' + i)) + std::string(bytes - 1, 'u')});
    out.push_back({"assistant", "a" + std::to_string(i)});
  }
  return out;
}

std::string firsts(const std::vector<ChatMessage>& m) {
  std::string s;
  for (const auto& x : m) s += x.content.substr(0, 1);
  return s;
}

TEST(ConversationAssemble, SystemFirstThenStoredTurnsThenTheRequest) {
  const std::vector<ChatMessage> request{{"system", "S"}, {"user", "Q"}};
  auto a = assemble(turns(2), request, -1);
  EXPECT_EQ(firsts(a.messages), "S1a2aQ");
  EXPECT_EQ(a.turns_used, 2);
  EXPECT_EQ(a.turns_dropped, 0);
  EXPECT_EQ(firsts(assemble({}, request, -1).messages), "SQ");
}

TEST(ConversationAssemble, DropsWholeTurnsOldestFirstAndNeverTheRequest) {
  const std::vector<ChatMessage> request{{"user", std::string(300, 'q')}};
  const auto stored = turns(4, 300);  // each turn: (6 + 100) + (6 + 1) = 113 estimated tokens
  const int64_t own = 8 + estimate_tokens(request[0]);
  EXPECT_EQ(estimate_tokens(stored[0]) + estimate_tokens(stored[1]), 113);
  auto two = assemble(stored, request, own + 2 * 113);
  EXPECT_EQ(firsts(two.messages), "3a4aq");
  EXPECT_EQ(two.turns_used, 2);
  EXPECT_EQ(two.turns_dropped, 2);
  auto almost_three = assemble(stored, request, own + 3 * 113 - 1);
  EXPECT_EQ(almost_three.turns_used, 2);
  auto none = assemble(stored, request, 1);  // not even the request fits: it is still sent whole
  EXPECT_EQ(firsts(none.messages), "q");
  EXPECT_EQ(none.turns_dropped, 4);
}

TEST(ConversationAppend, KeepsTheExchangeWithoutSystemMessagesAndStaysBounded) {
  Conversation c;
  append_exchange(c, {{"system", "S"}, {"user", "hi"}}, "hello");
  ASSERT_EQ(c.messages.size(), 2u);
  EXPECT_EQ(c.messages[0].content, "hi");
  EXPECT_EQ(c.messages[1].role, "assistant");
  const std::string big(kMaxConversationBytes / 3, 'x');
  for (int i = 0; i < 5; ++i) append_exchange(c, {{"user", big}}, "ok");
  size_t bytes = 0;
  for (const auto& m : c.messages) bytes += m.content.size();
  EXPECT_LE(bytes, kMaxConversationBytes);
  EXPECT_EQ(c.messages.front().role, "user");  // whole turns dropped
  EXPECT_EQ(c.messages.back().content, "ok");
}

TEST(ConversationVault, SealsUnderTheOwnersKeyBoundToOwnerAndId) {
  ConversationVault vault(crypto::MasterSecret::from_bytes(std::string(32, 'm')));
  Conversation c;
  c.created_ms = 1;
  c.updated_ms = 2;
  c.expires_ms = 3;
  c.messages = {{"user", "secret words"}, {"assistant", "answer"}};
  auto row = vault.seal("key_owner", "chat-1", c);
  ASSERT_TRUE(row) << row.error().to_string();
  EXPECT_EQ(row->id_mac, vault.id_mac("key_owner", "chat-1"));
  EXPECT_NE(row->id_mac, vault.id_mac("key_other", "chat-1"));  // ids are per owner
  EXPECT_EQ(row->ciphertext.find("secret"), std::string::npos);
  auto opened = vault.open(*row);
  ASSERT_TRUE(opened) << opened.error().to_string();
  EXPECT_EQ(opened->messages.size(), 2u);
  EXPECT_EQ(opened->messages[0].content, "secret words");
  EXPECT_EQ(opened->expires_ms, 3);

  auto again = vault.seal("key_owner", "chat-1", c);
  EXPECT_NE(again->nonce, row->nonce);  // a fresh nonce per write
  store::ConversationRecord moved = *row;
  moved.owner = "key_other";  // another owner's row: its key and AAD differ
  EXPECT_EQ(vault.open(moved).error().code, Errc::corrupt);
  moved = *row;
  moved.id_mac = vault.id_mac("key_owner", "chat-2");  // under another id
  EXPECT_FALSE(vault.open(moved));
  moved = *row;
  moved.ciphertext[0] = static_cast<char>(moved.ciphertext[0] ^ 1);
  EXPECT_FALSE(vault.open(moved));
  ConversationVault other(crypto::MasterSecret::from_bytes(std::string(32, 'o')));
  EXPECT_FALSE(other.open(*row));  // another master secret
}

}  // namespace
}  // namespace agora::gateway
