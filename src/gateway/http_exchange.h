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
// Writes a response (common headers added); true when the connection stays open.
asio::awaitable<bool> send(Exchange& x, Response res);
// An OpenAI-shaped error (retry-after, WWW-Authenticate where they apply).
asio::awaitable<bool> send_error(Exchange& x, const ApiError& e);

// /admin/v1/… (admin_api.cpp): `target` without the query string.
asio::awaitable<bool> handle_admin(Exchange& x, std::string_view target);

}  // namespace agora::gateway
