// Conversation memory as the gateway serves it: reads, appends and deletes
// on the store's control thread (read-modify-write there, so concurrent
// turns of one conversation are all kept), answers on the event loop. The
// sealing, assembly and JSON are pure (conversations.h).
#pragma once

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/clock.h"
#include "common/result.h"
#include "gateway/conversations.h"
#include "gateway/job.h"
#include "gateway/store_worker.h"

namespace agora::gateway {

class ConversationService : public std::enable_shared_from_this<ConversationService> {
 public:
  // `store` outlives the service's use (the gateway stops both together);
  // default_ttl: 0 keeps conversations until deleted.
  ConversationService(boost::asio::io_context& io, StoreWorker* store, std::shared_ptr<const ConversationVault> vault,
                      std::chrono::milliseconds default_ttl, const Clock& clock)
      : io_(io), store_(store), vault_(std::move(vault)), default_ttl_(default_ttl), clock_(clock) {}

  // A missing or expired conversation is nullopt; `done` runs on the loop.
  void load(const std::string& owner, const std::string& id,
            std::function<void(Result<std::optional<Conversation>>)> done);
  // Appends the turn `ref` describes and its answer.
  void save(const Job::ConversationRef& ref, std::string answer);
  // true: it existed and is gone (its bytes purged from the WAL).
  void remove(const std::string& owner, const std::string& id, std::function<void(Result<bool>)> done);

 private:
  // Empties the WAL of deleted bytes, retrying every 50 ms while a reader is
  // in the way (at most `attempts` times), then runs `then` on the loop.
  void retry_purge(int attempts, std::function<void()> then);

  boost::asio::io_context& io_;
  StoreWorker* store_;
  std::shared_ptr<const ConversationVault> vault_;
  std::chrono::milliseconds default_ttl_;
  const Clock& clock_;
};

}  // namespace agora::gateway
