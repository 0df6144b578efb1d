#include "gateway/conversation_service.h"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include "common/log.h"
#include "crypto/aead.h"

namespace agora::gateway {

namespace asio = boost::asio;

void ConversationService::load(const std::string& owner, const std::string& id,
                                    std::function<void(Result<std::optional<Conversation>>)> done) {
  if (!store_) {
    asio::post(io_, [done = std::move(done)] { done(std::optional<Conversation>()); });
    return;
  }
  const int64_t now = clock_.unix_millis();
  auto shared_done = std::make_shared<std::function<void(Result<std::optional<Conversation>>)>>(std::move(done));
  // The control thread holds no reference to the gateway (were it the last
  // one, the gateway would be destroyed there, joining that very thread);
  // the io_context outlives both.
  const bool queued = store_->control([io = &io_, vault = vault_, owner, id, now, shared_done](store::Store& s) {
    Result<std::optional<Conversation>> out = std::optional<Conversation>();
    const std::string mac = vault->id_mac(owner, id);
    auto row = s.get_conversation(owner, mac);
    if (!row) {
      out = row.error();
    } else if (*row && (*row)->expires_ms && *(*row)->expires_ms <= now) {
      // Expired: gone now, even before the sweep (whose purge also covers
      // a busy moment here).
      if (auto d = s.delete_conversation(owner, mac); d && *d) (void)s.purge_deleted();
    } else if (*row) {
      auto c = vault->open(**row);
      if (!c) out = c.error();
      else out = std::optional<Conversation>(std::move(*c));
    }
    asio::post(*io, [shared_done, out = std::move(out)]() mutable { (*shared_done)(std::move(out)); });
  });
  if (!queued) {
    asio::post(io_, [shared_done] { (*shared_done)(make_error(Errc::unavailable, "the gateway is stopping")); });
  }
}

void ConversationService::save(const Job::ConversationRef& ref, std::string answer) {
  const int64_t now = clock_.unix_millis();
  std::optional<int64_t> expires;
  if (ref.ttl_s) expires = now + *ref.ttl_s * 1000;
  else if (default_ttl_.count() > 0) expires = now + default_ttl_.count();
  const bool ttl_given = ref.ttl_s.has_value();
  const bool queued = store_->control([vault = vault_, owner = ref.owner, id = ref.id, own = ref.own_messages,
                                       answer = std::move(answer), now, expires, ttl_given](store::Store& s) mutable {
    const std::string mac = vault->id_mac(owner, id);
    Conversation c;
    c.created_ms = now;
    auto row = s.get_conversation(owner, mac);
    if (!row) {
      // Never overwrite what could not be read: the history would be lost.
      spdlog::error("conversation_read_failed owner={} error={}", owner, logfmt_value(row.error().to_string()));
      return;
    }
    if (*row && !((*row)->expires_ms && *(*row)->expires_ms <= now)) {
      auto old = vault->open(**row);
      if (!old) {
        spdlog::error("conversation_unreadable owner={} error={}", owner, logfmt_value(old.error().to_string()));
        return;  // never overwrite what cannot be read (a wrong master secret)
      }
      c = std::move(*old);
      // A turn without conversation_ttl keeps the conversation's own TTL.
      if (!ttl_given && c.expires_ms) expires = now + (*c.expires_ms - c.updated_ms);
    }
    append_exchange(c, own, std::move(answer));
    c.updated_ms = now;
    c.expires_ms = expires;
    auto sealed = vault->seal(owner, id, c);
    if (!sealed) {
      spdlog::error("conversation_seal_failed owner={} error={}", owner, logfmt_value(sealed.error().to_string()));
      return;
    }
    if (Status st = s.put_conversation(*sealed); !st) {
      spdlog::error("conversation_write_failed owner={} error={}", owner, logfmt_value(st.error().to_string()));
    }
    for (auto& m : c.messages) crypto::secure_wipe(m.content);
  });
  if (!queued) spdlog::warn("conversation_not_saved owner={} reason=\"the gateway is stopping\"", ref.owner);
}

void ConversationService::remove(const std::string& owner, const std::string& id,
                                      std::function<void(Result<bool>)> done) {
  auto fail_stopped = [this](std::function<void(Result<bool>)>& d) {
    asio::post(io_, [d = std::move(d)] { d(make_error(Errc::unavailable, "the gateway is stopping")); });
  };
  if (!store_) return fail_stopped(done);
  auto shared_done = std::make_shared<std::function<void(Result<bool>)>>(std::move(done));
  const bool queued = store_->control([io = &io_, weak = weak_from_this(), vault = vault_, owner, id,
                                       shared_done](store::Store& s) {
    Result<bool> out = s.delete_conversation(owner, vault->id_mac(owner, id));
    const bool purge = out && *out;
    Status st = purge ? s.purge_deleted() : ok_status();
    asio::post(*io, [weak, shared_done, out = std::move(out), purge, st]() mutable {
      auto self = weak.lock();
      if (self && purge && !st && st.error().code == Errc::unavailable) {
        // A reader holds the WAL: retry from the loop (the control thread
        // never sleeps), then answer; the row itself is already gone.
        self->retry_purge(10, [shared_done, out = std::move(out)]() mutable { (*shared_done)(std::move(out)); });
        return;
      }
      if (purge && !st) spdlog::warn("conversation_purge_failed error={}", logfmt_value(st.error().to_string()));
      (*shared_done)(std::move(out));
    });
  });
  if (!queued) fail_stopped(*shared_done);
}

void ConversationService::retry_purge(int attempts, std::function<void()> then) {
  auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(50));
  timer->async_wait([self = shared_from_this(), timer, attempts, then = std::move(then)](boost::system::error_code) mutable {
    if (!self->store_) return then();
    auto shared_then = std::make_shared<std::function<void()>>(std::move(then));
    const bool queued = self->store_->control([io = &self->io_, weak = std::weak_ptr<ConversationService>(self), attempts,
                                               shared_then](store::Store& s) {
      Status st = s.purge_deleted();
      asio::post(*io, [weak, attempts, shared_then, st]() mutable {
        auto again = weak.lock();
        if (again && !st && st.error().code == Errc::unavailable && attempts > 1) {
          again->retry_purge(attempts - 1, std::move(*shared_then));
          return;
        }
        if (!st) spdlog::warn("conversation_purge_incomplete error={}", logfmt_value(st.error().to_string()));
        (*shared_then)();
      });
    });
    if (!queued) (*shared_then)();
  });
}

}  // namespace agora::gateway
