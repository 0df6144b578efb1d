// What the HTTP shell (http_session.cpp) shares with the handlers that live
// in files of their own (admin_api.cpp): one request/response exchange and
// the helpers that write responses (HSTS, rate-limit headers, metrics).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "gateway/internal.h"

namespace agora::gateway {

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

// HSTS on every HTTPS response (the gateway serves nothing over plain
// HTTP): one year, not includeSubDomains (the operator's other names are not
// ours to pin).
inline constexpr std::string_view kHsts = "max-age=31536000";

inline double seconds_since(Clock& clock, Clock::TimePoint t) { return to_millis(clock.now() - t) / 1000.0; }

struct Exchange {
  std::shared_ptr<GatewayImpl> g;
  std::shared_ptr<TlsStream> stream;
  const Request& req;
  Clock::TimePoint start;
  std::string route = "other";
  // The key's rate-limit state, sent as x-ratelimit-* on the response.
  std::optional<RateLimiter::Snapshot> rate;
};

// x-ratelimit-{limit,remaining,reset}-{requests,tokens}, for the limits the
// key has (a dimension without a limit has no headers).
template <class Fields>
void rate_headers(Fields& f, const std::optional<RateLimiter::Snapshot>& rate) {
  if (!rate) return;
  if (rate->limits.rpm > 0) {
    f.set("x-ratelimit-limit-requests", std::to_string(rate->limits.rpm));
    f.set("x-ratelimit-remaining-requests", std::to_string(rate->remaining_requests));
    f.set("x-ratelimit-reset-requests", format_reset(rate->reset_requests_s));
  }
  if (rate->limits.tpm > 0) {
    f.set("x-ratelimit-limit-tokens", std::to_string(rate->limits.tpm));
    f.set("x-ratelimit-remaining-tokens", std::to_string(rate->remaining_tokens));
    f.set("x-ratelimit-reset-tokens", format_reset(rate->reset_tokens_s));
  }
}

Response json_response(const Request& req, http::status status, std::string body);
// The route a request matched, for its handler (http_handlers.h).
struct RouteCall {
  std::string_view target;  // the path, without the query string
  std::string_view query;   // after '?', or empty
  std::string_view rest;    // what follows a prefix route's path (an id)
  const KeyEntry* key = nullptr;  // a copy the handler may keep using (client routes)
};

// Starts an operation that answers through a callback on the loop (the
// store's control thread posts there) and waits for the answer. A timer is
// the wake-up, which avoids async_initiate in these coroutines (GCC 12
// miscompiled that form).
template <class T, class Start>
asio::awaitable<T> await_answer(asio::any_io_executor ex, Start start) {
  struct Pending {
    explicit Pending(asio::any_io_executor e) : wake(e) {}
    asio::steady_timer wake;
    std::optional<T> value;
  };
  auto pending = std::make_shared<Pending>(ex);
  pending->wake.expires_at(asio::steady_timer::time_point::max());
  start([pending](T v) {
    pending->value.emplace(std::move(v));
    pending->wake.cancel();
  });
  while (!pending->value) co_await pending->wake.async_wait(asio::as_tuple(asio::use_awaitable));
  co_return std::move(*pending->value);
}


// Writes a response (common headers added); true when the connection stays open.
asio::awaitable<bool> send(Exchange& x, Response res);
// An OpenAI-shaped error (retry-after, WWW-Authenticate where they apply).
asio::awaitable<bool> send_error(Exchange& x, const ApiError& e);
// A sealed request's error whose real reason the node sealed (the error,
// then the answer's chunks: openai::sealed_error_body).
asio::awaitable<bool> send_sealed_error(Exchange& x, const ApiError& e, std::string_view node_id,
                                        const std::vector<protocol::SealedChunk>& chunks);


}  // namespace agora::gateway
