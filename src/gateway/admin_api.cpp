// The admin API: the operator's key management over HTTPS, guarded by an
// admin token (at_…, made with `agora keys create --admin`).
//
//   GET    /admin/v1/keys              list client keys
//   POST   /admin/v1/keys              create: {"name", "rpm", "tpm", "max_concurrent",
//                                      "expires_in": "30d", "models": [...]} → 201 with "key"
//   GET    /admin/v1/keys/{id}         one key
//   DELETE /admin/v1/keys/{id}         revoke (in force before the response is sent)
//   POST   /admin/v1/keys/{id}/rotate  {"grace": "24h"} → 201 with the new "key"
//
// Limits: a positive integer, null (no limit) or absent (gateway default).
// Admin tokens themselves are managed only with the CLI (on the machine
// that holds the database), so a leaked admin token cannot mint another.
// Store work runs on the StoreWorker's control thread; the coroutine waits
// on a timer for the reply (bounded).
#include <spdlog/spdlog.h>

#include "common/json_text.h"
#include "common/log.h"
#include "gateway/admin_requests.h"
#include "gateway/http_handlers.h"
#include "store/credentials.h"

namespace agora::gateway {
namespace {

using asio::awaitable;
constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);
constexpr std::string_view kKeysPath = "/admin/v1/keys";
constexpr std::chrono::seconds kStoreWait{10};

// What a store task answers: a status and a JSON body.
struct Reply {
  int status = 200;
  std::string body;
  std::optional<ApiError> error;
};

Reply from_error(const Error& e) {
  switch (e.code) {
    case Errc::not_found:
      return {404, "", admin_error(404, "key_not_found", e.message)};
    case Errc::invalid_argument:
      return {400, "", admin_error(400, "invalid_key_request", e.message, key_spec_field(e.message))};
    case Errc::unavailable:
      return {503, "", admin_error(503, "store_busy", "The database is busy; retry: " + e.message)};
    default:
      return {500, "", admin_error(500, "store_error", "The key store failed: " + e.message)};
  }
}

// Runs `task` on the store's control thread and waits for its reply.
awaitable<Reply> on_store(Exchange& x, std::function<Reply(store::Store&)> task) {
  struct Pending {
    explicit Pending(asio::any_io_executor ex) : wake(ex) {}
    asio::steady_timer wake;
    std::optional<Reply> reply;
  };
  auto pending = std::make_shared<Pending>(x.stream->get_executor());
  pending->wake.expires_after(kStoreWait);
  StoreWorker::AdminTask admin_task = [pending, task = std::move(task)](store::Store& s) -> std::function<void()> {
    auto reply = std::make_shared<Reply>(task(s));
    return [pending, reply] {
      pending->reply = std::move(*reply);
      pending->wake.cancel();
    };
  };
  x.g->admin_task(std::move(admin_task));
  while (!pending->reply) {
    auto [ec] = co_await pending->wake.async_wait(as_tuple_awaitable);
    if (!ec && !pending->reply) {
      Reply timeout{503, "", admin_error(503, "store_timeout", "The key store did not answer in time")};
      co_return timeout;
    }
  }
  co_return std::move(*pending->reply);
}

std::string with_secret(const std::string& secret, const std::string& key_json) {
  // {"key":"gk_…", <the key's fields>}
  std::string out = "{\"key\":";
  append_json_string(out, secret);
  out += ',';
  out.append(key_json, 1, std::string::npos);
  return out;
}

awaitable<bool> respond(Exchange& x, const Reply& r) {
  if (r.error) co_return co_await send_error(x, *r.error);
  co_return co_await send(x, json_response(x.req, static_cast<http::status>(r.status), r.body));
}

}  // namespace

awaitable<bool> handle_admin(Exchange& x, const RouteCall& call) {
  const std::string_view target = call.target;
  const KeyEntry* admin = x.g->authenticate(x.req[http::field::authorization], /*admin=*/true);
  if (!admin) {
    const ApiError api_err = admin_error(401, "invalid_admin_token",
                                         "The admin API needs 'Authorization: Bearer at_…' with an active admin "
                                         "token (agora keys create --admin)");
    co_return co_await send_error(x, api_err);
  }
  if (!target.starts_with(kKeysPath) || (target.size() > kKeysPath.size() && target[kKeysPath.size()] != '/')) {
    const ApiError api_err = admin_error(404, "not_found", "Unknown admin path " + std::string(target));
    co_return co_await send_error(x, api_err);
  }
  std::string_view rest = target.substr(kKeysPath.size());
  if (!rest.empty()) rest.remove_prefix(1);  // the '/'
  std::string id(rest.substr(0, rest.find('/')));
  const std::string_view action = rest.size() > id.size() ? rest.substr(id.size() + 1) : std::string_view{};
  const auto method = x.req.method();
  auto master = x.g->master_secret();
  const std::string admin_id = admin->id;
  const int64_t now = x.g->clock().unix_millis();

  // A client key by id; admin tokens are out of the API's reach.
  auto client_key = [](store::Store& s, const std::string& key_id) -> Result<store::ApiKeyRecord> {
    auto k = s.find_api_key(key_id);
    if (k && k->role != "client") return make_error(Errc::not_found, "no API key '" + key_id + "'");
    return k;
  };

  if (id.empty() && action.empty()) {
    if (method == http::verb::get) {
      auto task = [now](store::Store& s) -> Reply {
        auto keys = s.list_api_keys();
        if (!keys) return from_error(keys.error());
        std::string body = "{\"object\":\"list\",\"data\":[";
        bool first = true;
        for (const auto& k : *keys) {
          if (k.role != "client") continue;
          body += first ? "" : ",";
          first = false;
          body += store::key_json(k, now);
        }
        body += "]}";
        return {200, std::move(body), std::nullopt};
      };
      co_return co_await respond(x, co_await on_store(x, std::move(task)));
    }
    if (method == http::verb::post) {
      auto parsed = parse_key_spec(x.req.body(), now);
      if (auto* err = std::get_if<ApiError>(&parsed)) co_return co_await send_error(x, *err);
      auto task = [master, now, admin_id, spec = std::get<store::KeySpec>(parsed)](store::Store& s) -> Reply {
        auto k = store::issue_api_key(s, *master, spec, now, "admin:" + admin_id);
        if (!k) return from_error(k.error());
        spdlog::info("admin_key_created key={} by={}", k->record.id, admin_id);
        return {201, with_secret(k->secret, store::key_json(k->record, now)), std::nullopt};
      };
      co_return co_await respond(x, co_await on_store(x, std::move(task)));
    }
  } else if (!id.empty() && action.empty()) {
    if (method == http::verb::get) {
      auto task = [client_key, id, now](store::Store& s) -> Reply {
        auto k = client_key(s, id);
        if (!k) return from_error(k.error());
        return {200, store::key_json(*k, now), std::nullopt};
      };
      co_return co_await respond(x, co_await on_store(x, std::move(task)));
    }
    if (method == http::verb::delete_) {
      auto task = [client_key, master, id, now, admin_id](store::Store& s) -> Reply {
        auto k = client_key(s, id);
        if (!k) return from_error(k.error());
        auto r = store::revoke_api_key(s, *master, k->id, now, "admin:" + admin_id);
        if (!r) return from_error(r.error());
        spdlog::info("admin_key_revoked key={} by={}", r->id, admin_id);
        return {200, store::key_json(*r, now), std::nullopt};
      };
      co_return co_await respond(x, co_await on_store(x, std::move(task)));
    }
  } else if (!id.empty() && action == "rotate") {
    if (method == http::verb::post) {
      auto grace = parse_rotate_grace(x.req.body());
      if (auto* err = std::get_if<ApiError>(&grace)) {
        const ApiError api_err = *err;
        co_return co_await send_error(x, api_err);
      }
      const int64_t grace_ms = std::get<int64_t>(grace);
      auto task = [client_key, master, id, now, grace_ms, admin_id](store::Store& s) -> Reply {
        auto k = client_key(s, id);
        if (!k) return from_error(k.error());
        auto r = store::rotate_api_key(s, *master, k->id, grace_ms, now, "admin:" + admin_id);
        if (!r) return from_error(r.error());
        spdlog::info("admin_key_rotated key={} successor={} grace_ms={} by={}", r->first.id, r->second.record.id,
                     grace_ms, admin_id);
        std::string body = with_secret(r->second.secret, store::key_json(r->second.record, now));
        body.pop_back();
        body += ",\"replaces\":" + store::key_json(r->first, now) + "}";
        return {201, std::move(body), std::nullopt};
      };
      co_return co_await respond(x, co_await on_store(x, std::move(task)));
    }
  } else {
    const ApiError api_err = admin_error(404, "not_found", "Unknown admin path " + std::string(target));
    co_return co_await send_error(x, api_err);
  }
  const ApiError api_err{405, "invalid_request_error", "method_not_allowed", "",
                         "Method not allowed on " + std::string(target), 0};
  co_return co_await send_error(x, api_err);
}

}  // namespace agora::gateway
