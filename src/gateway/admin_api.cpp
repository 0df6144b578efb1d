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

// Who asks and when, for the store tasks below (run on the control thread).
struct AdminCall {
  std::shared_ptr<const crypto::MasterSecret> master;
  std::string admin_id;
  int64_t now = 0;
  std::string id;  // the key's, when the path names one
};

// A client key by id; admin tokens are out of the API's reach.
Result<store::ApiKeyRecord> client_key(store::Store& s, const std::string& key_id) {
  auto k = s.find_api_key(key_id);
  if (k && k->role != "client") return make_error(Errc::not_found, "no API key '" + key_id + "'");
  return k;
}

Reply list_keys(store::Store& s, const AdminCall& c) {
  auto keys = s.list_api_keys();
  if (!keys) return from_error(keys.error());
  std::string body = "{\"object\":\"list\",\"data\":[";
  bool first = true;
  for (const auto& k : *keys) {
    if (k.role != "client") continue;
    body += first ? "" : ",";
    first = false;
    body += store::key_json(k, c.now);
  }
  body += "]}";
  return {200, std::move(body), std::nullopt};
}

Reply create_key(store::Store& s, const AdminCall& c, const store::KeySpec& spec) {
  auto k = store::issue_api_key(s, *c.master, spec, c.now, "admin:" + c.admin_id);
  if (!k) return from_error(k.error());
  spdlog::info("admin_key_created key={} by={}", k->record.id, c.admin_id);
  return {201, with_secret(k->secret, store::key_json(k->record, c.now)), std::nullopt};
}

Reply get_key(store::Store& s, const AdminCall& c) {
  auto k = client_key(s, c.id);
  if (!k) return from_error(k.error());
  return {200, store::key_json(*k, c.now), std::nullopt};
}

Reply revoke_key(store::Store& s, const AdminCall& c) {
  auto k = client_key(s, c.id);
  if (!k) return from_error(k.error());
  auto r = store::revoke_api_key(s, *c.master, k->id, c.now, "admin:" + c.admin_id);
  if (!r) return from_error(r.error());
  spdlog::info("admin_key_revoked key={} by={}", r->id, c.admin_id);
  return {200, store::key_json(*r, c.now), std::nullopt};
}

Reply rotate_key(store::Store& s, const AdminCall& c, int64_t grace_ms) {
  auto k = client_key(s, c.id);
  if (!k) return from_error(k.error());
  auto r = store::rotate_api_key(s, *c.master, k->id, grace_ms, c.now, "admin:" + c.admin_id);
  if (!r) return from_error(r.error());
  spdlog::info("admin_key_rotated key={} successor={} grace_ms={} by={}", r->first.id, r->second.record.id, grace_ms,
               c.admin_id);
  std::string body = with_secret(r->second.secret, store::key_json(r->second.record, c.now));
  body.pop_back();
  body += ",\"replaces\":" + store::key_json(r->first, c.now) + "}";
  return {201, std::move(body), std::nullopt};
}

// The store task for a method on a path: nullopt when the method is not
// allowed there; an ApiError when the request body is bad.
using StoreTask = std::function<Reply(store::Store&)>;
std::variant<std::optional<StoreTask>, ApiError> task_for(http::verb method, std::string_view action,
                                                          const std::string& body, const AdminCall& c) {
  if (c.id.empty()) {
    if (method == http::verb::get) return StoreTask([c](store::Store& s) { return list_keys(s, c); });
    if (method != http::verb::post) return std::nullopt;
    auto parsed = parse_key_spec(body, c.now);
    if (auto* err = std::get_if<ApiError>(&parsed)) return *err;
    return StoreTask(
        [c, spec = std::get<store::KeySpec>(parsed)](store::Store& s) { return create_key(s, c, spec); });
  }
  if (action.empty()) {
    if (method == http::verb::get) return StoreTask([c](store::Store& s) { return get_key(s, c); });
    if (method == http::verb::delete_) return StoreTask([c](store::Store& s) { return revoke_key(s, c); });
    return std::nullopt;
  }
  // action == "rotate"
  if (method != http::verb::post) return std::nullopt;
  auto grace = parse_rotate_grace(body);
  if (auto* err = std::get_if<ApiError>(&grace)) return *err;
  return StoreTask([c, grace_ms = std::get<int64_t>(grace)](store::Store& s) { return rotate_key(s, c, grace_ms); });
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
  const bool under_keys =
      target.starts_with(kKeysPath) && (target.size() == kKeysPath.size() || target[kKeysPath.size()] == '/');
  std::string_view rest = under_keys ? target.substr(kKeysPath.size()) : std::string_view{};
  if (!rest.empty()) rest.remove_prefix(1);  // the '/'
  std::string id(rest.substr(0, rest.find('/')));
  const std::string_view action = rest.size() > id.size() ? rest.substr(id.size() + 1) : std::string_view{};
  if (!under_keys || (id.empty() && !action.empty()) || (!action.empty() && action != "rotate")) {
    const ApiError api_err = admin_error(404, "not_found", "Unknown admin path " + std::string(target));
    co_return co_await send_error(x, api_err);
  }
  const AdminCall c{x.g->master_secret(), admin->id, x.g->clock().unix_millis(), std::move(id)};
  auto task = task_for(x.req.method(), action, x.req.body(), c);
  if (auto* err = std::get_if<ApiError>(&task)) {
    const ApiError api_err = *err;  // named: GCC and temporaries in co_await
    co_return co_await send_error(x, api_err);
  }
  if (auto& t = std::get<std::optional<StoreTask>>(task)) co_return co_await respond(x, co_await on_store(x, *t));
  const ApiError api_err{405, "invalid_request_error", "method_not_allowed", "",
                         "Method not allowed on " + std::string(target), 0};
  co_return co_await send_error(x, api_err);
}

}  // namespace agora::gateway
