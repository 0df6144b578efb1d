// The HTTP/1.1 shell of the gateway: one coroutine per client connection
// reads bounded requests, routes them, and writes responses (JSON or SSE).
// Request semantics live in openai.cpp (pure functions) and gateway.cpp
// (jobs); this file only moves bytes and enforces limits and timeouts.
#include <poll.h>

#include <charconv>
#include <limits>
#include <cmath>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/json_text.h"
#include "common/log.h"
#include "common/text.h"
#include "crypto/aead.h"
#include "gateway/errors.h"
#include "gateway/http_exchange.h"
#include "gateway/http_request.h"
#include "gateway/internal.h"
#include "gateway/providers_query.h"
#include "net/spawn.h"
#include "net/url.h"

namespace agora::gateway {

using asio::awaitable;
using asio::use_awaitable;
constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);

namespace {

double seconds_since(Clock& clock, Clock::TimePoint t) { return to_millis(clock.now() - t) / 1000.0; }

// HSTS on every HTTPS response (the gateway serves nothing over plain
// HTTP): one year, not includeSubDomains (the operator's other names are not
// ours to pin).
constexpr std::string_view kHsts = "max-age=31536000";

void common_headers(Response& res, const Request& req) {
  res.set(http::field::server, "agora-gateway");
  res.set(http::field::strict_transport_security, kHsts);
  res.keep_alive(req.keep_alive());
}

}  // namespace

awaitable<bool> send(Exchange& x, Response res) {
  common_headers(res, x.req);
  rate_headers(res, x.rate);
  res.prepare_payload();
  beast::get_lowest_layer(*x.stream).expires_after(x.g->config().write_timeout);
  auto [ec, n] = co_await http::async_write(*x.stream, res, as_tuple_awaitable);
  beast::get_lowest_layer(*x.stream).expires_never();
  x.g->metrics().request(x.route, static_cast<int>(res.result_int()), seconds_since(x.g->clock(), x.start));
  co_return !ec && res.keep_alive();
}

Response json_response(const Request& req, http::status status, std::string body) {
  Response res{status, req.version()};
  res.set(http::field::content_type, "application/json");
  res.body() = std::move(body);
  return res;
}

awaitable<bool> send_error(Exchange& x, const ApiError& e) {
  Response res = json_response(x.req, static_cast<http::status>(e.status), error_body(e));
  if (e.retry_after_s > 0) res.set(http::field::retry_after, std::to_string(e.retry_after_s));
  if (e.status == 401) res.set(http::field::www_authenticate, "Bearer");
  co_return co_await send(x, std::move(res));
}

namespace {


ApiError unauthorized(std::string_view authorization) {
  ApiError e;
  e.status = 401;
  e.type = "invalid_request_error";
  if (authorization.empty()) {
    e.code = "missing_api_key";
    e.message = "You didn't provide an API key. Send it as 'Authorization: Bearer gk_…'.";
  } else {
    e.code = "invalid_api_key";
    e.message = "Incorrect or revoked API key.";
  }
  return e;
}

// Starts an operation that answers through a callback on the loop (the
// store's control thread posts there) and waits for the answer. A timer is
// the wake-up, which avoids async_initiate in these coroutines (GCC 12
// miscompiled that form).
template <class T, class Start>
awaitable<T> await_answer(asio::any_io_executor ex, Start start) {
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
  while (!pending->value) co_await pending->wake.async_wait(as_tuple_awaitable);
  co_return std::move(*pending->value);
}

// A job's sink for the HTTP coroutine that answers it: events queue here
// and wake the coroutine. A streamed response is committed with its first
// delta (headers and text will be written); a unary one only at its end.
class HttpSink final : public JobSink {
 public:
  HttpSink(asio::any_io_executor ex, bool streaming) : wake_(std::move(ex)), streaming_(streaming) {
    wake_.expires_at(asio::steady_timer::time_point::max());
  }
  void on_event(JobEvent e) override {
    if (streaming_ && e.kind == JobEvent::Kind::delta) committed_ = true;
    events.push_back(std::move(e));
    wake_.cancel();
  }
  bool committed() const override { return committed_; }

  // The next event, once there is one (the scheduler's timeouts bound the wait).
  awaitable<JobEvent> next() {
    while (events.empty()) co_await wake_.async_wait(as_tuple_awaitable);
    JobEvent e = std::move(events.front());
    events.pop_front();
    co_return e;
  }
  std::deque<JobEvent> events;

 private:
  asio::steady_timer wake_;
  bool streaming_;
  bool committed_ = false;
};

// Watches the client's socket while a job runs, without reading from it:
// a peer that hangs up (FIN or RST) makes the socket readable with
// POLLRDHUP; pipelined data just ends the watch.
awaitable<void> watch_client(std::shared_ptr<TlsStream> stream, std::shared_ptr<Job> job,
                             std::shared_ptr<HttpSink> sink) {
  auto& socket = beast::get_lowest_layer(*stream).socket();
  auto [ec] = co_await socket.async_wait(tcp::socket::wait_read, as_tuple_awaitable);
  if (ec == asio::error::operation_aborted) co_return;
  bool gone = static_cast<bool>(ec);
  if (!gone) {
    pollfd p{socket.native_handle(), POLLRDHUP, 0};
    gone = ::poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
  }
  if (gone && job->state != Job::State::finished) {
    JobEvent e;
    e.kind = JobEvent::Kind::client_gone;
    sink->on_event(std::move(e));
  }
}

Provenance provenance(const Job& job, int64_t overhead_us = -1) {
  Provenance p{job.provider_id, job.model_sha256, job.generation_id, std::string(level_name(job.attestation)),
               overhead_us};
  if (job.conversation) {
    p.conversation_turns = job.conversation->turns_used;
    p.conversation_turns_dropped = job.conversation->turns_dropped;
  }
  if (job.request.sealed) p.node_id = job.node_id;
  return p;
}

// A complete answer joins its conversation before the client sees the end
// of it (so a next turn sent at once finds it there).
void remember(GatewayImpl& g, const Job& job, engine::FinishReason finish) {
  if (job.conversation && (finish == engine::FinishReason::stop || finish == engine::FinishReason::length)) {
    g.save_conversation(job);
  }
}

// The gateway's added time for a job that ends now: everything since the
// request was read, minus what the node reports it spent (queue, prompt,
// decode). What remains is the gateway's work plus the node link.
int64_t overhead_us(Exchange& x, const engine::Timings& t) {
  const double total_ms = to_millis(x.g->clock().now() - x.start);
  const double node_ms = t.queued_ms + t.prompt_ms + t.decode_ms;
  const double us = (total_ms - node_ms) * 1000.0;
  // The node's figures are bounded (protocol::decode), but a double out of
  // int64's range must never be converted (undefined behaviour).
  if (!(us > 0)) return 0;
  return us < 9.2e18 ? static_cast<int64_t>(us) : std::numeric_limits<int64_t>::max();
}

awaitable<bool> unary_completion(Exchange& x, std::shared_ptr<Job> job, HttpSink& sink) {
  auto fresh = [&] {
    CompletionResult acc;
    acc.logprobs_requested = job->request.generation.logprobs;
    acc.sealed = job->request.sealed.has_value();
    return acc;
  };
  CompletionResult acc = fresh();
  for (;;) {
    JobEvent e = co_await sink.next();
    switch (e.kind) {
      case JobEvent::Kind::delta:
        if (e.delta.sealed) acc.chunks.push_back(std::move(*e.delta.sealed));
        acc.text += e.delta.text;
        for (auto& lp : e.delta.logprobs) acc.logprobs.push_back(std::move(lp));
        continue;
      case JobEvent::Kind::restarted:  // another node starts over
        acc = fresh();
        continue;
      case JobEvent::Kind::done: {
        acc.finish = e.done.finish;
        acc.usage = e.done.usage;
        if (e.done.sealed) acc.chunks.push_back(std::move(*e.done.sealed));
        if (acc.sealed && (acc.chunks.empty() || !acc.chunks.back().final)) {
          // A sealed answer must end with the node's final chunk.
          x.g->record(*job, e.done.usage, e.done.timings, engine::FinishReason::error);
          const ApiError api_err = errors::sealed_answer_incomplete();
          co_return co_await send_error(x, api_err);
        }
        x.g->record(*job, e.done.usage, e.done.timings, e.done.finish);
        if (job->conversation) {
          job->answer = acc.text;
          remember(*x.g, *job, e.done.finish);
        }
        const int64_t overhead = overhead_us(x, e.done.timings);
        x.g->metrics().overhead(static_cast<double>(overhead) / 1e6);
        Response res = json_response(x.req, http::status::ok,
                                     completion_body(job->generation_id, job->created_unix, job->request.model, acc,
                                                     provenance(*job, overhead)));
        res.set("x-agora-overhead-us", std::to_string(overhead));
        co_return co_await send(x, std::move(res));
      }
      case JobEvent::Kind::failed:
        if (e.ran) x.g->record(*job, {}, {}, engine::FinishReason::error);
        co_return co_await send_error(x, e.error);
      case JobEvent::Kind::client_gone:
        x.g->scheduler().abandon(job);
        x.g->metrics().request(x.route, 499, seconds_since(x.g->clock(), x.start));
        co_return false;
    }
  }
}

awaitable<bool> write_chunk(Exchange& x, const std::string& data) {
  beast::get_lowest_layer(*x.stream).expires_after(x.g->config().write_timeout);
  auto [ec, n] = co_await asio::async_write(*x.stream, http::make_chunk(asio::buffer(data)), as_tuple_awaitable);
  beast::get_lowest_layer(*x.stream).expires_never();
  co_return !ec;
}

awaitable<bool> streamed_completion(Exchange& x, std::shared_ptr<Job> job, HttpSink& sink) {
  const auto& r = job->request;
  ChunkWriter cw(job->generation_id, job->created_unix, r.model, r.include_usage, r.generation.logprobs);
  bool headers_sent = false;
  std::string out;

  auto send_headers = [&]() -> awaitable<bool> {
    http::response<http::empty_body> res{http::status::ok, x.req.version()};
    res.set(http::field::server, "agora-gateway");
    res.set(http::field::strict_transport_security, kHsts);
    rate_headers(res, x.rate);
    res.set(http::field::content_type, "text/event-stream; charset=utf-8");
    res.set(http::field::cache_control, "no-cache");
    res.set("x-accel-buffering", "no");
    res.keep_alive(x.req.keep_alive());
    res.chunked(true);
    http::response_serializer<http::empty_body> sr{res};
    beast::get_lowest_layer(*x.stream).expires_after(x.g->config().write_timeout);
    auto [ec, n] = co_await http::async_write_header(*x.stream, sr, as_tuple_awaitable);
    beast::get_lowest_layer(*x.stream).expires_never();
    headers_sent = true;
    co_return !ec;
  };
  // Streaming overheads (metrics only): the first chunk's time at the
  // gateway, and each token's node frame → SSE chunk written.
  std::optional<Clock::TimePoint> first_sent;
  const Clock::TimePoint no_frame{};
  auto note_sent = [&](Clock::TimePoint received) {
    const auto now = x.g->clock().now();
    if (!first_sent) first_sent = now;
    if (received != no_frame) x.g->metrics().token_forward(to_millis(now - received) / 1000.0);
  };
  auto finish_stream = [&](const protocol::Done& d, std::string_view text,
                           const std::vector<engine::TokenLogprob>& lps,
                           Clock::TimePoint received) -> awaitable<bool> {
    x.g->record(*job, d.usage, d.timings, d.finish);
    if (d.sealed) {
      out.clear();
      cw.sealed(out, *d.sealed, job->node_id);
      if (!co_await write_chunk(x, out)) co_return false;
    }
    if (job->conversation) {
      job->answer += text;
      remember(*x.g, *job, d.finish);
    }
    const int64_t overhead = overhead_us(x, d.timings);
    x.g->metrics().overhead(static_cast<double>(overhead) / 1e6);
    out.clear();
    cw.finish(out, text, lps, d.finish, provenance(*job, overhead));
    if (r.include_usage) cw.usage(out, d.usage, provenance(*job, overhead));
    ChunkWriter::done(out);
    if (!co_await write_chunk(x, out)) co_return false;
    note_sent(received);
    const double node_ttft_ms = d.timings.queued_ms + d.timings.prompt_ms;
    const double ttft_over_ms = to_millis(*first_sent - x.start) - node_ttft_ms;
    if (d.usage.completion_tokens > 0) x.g->metrics().ttft_overhead(std::max(ttft_over_ms, 0.0) / 1000.0);
    beast::get_lowest_layer(*x.stream).expires_after(x.g->config().write_timeout);
    auto [ec, n] = co_await asio::async_write(*x.stream, http::make_chunk_last(), as_tuple_awaitable);
    beast::get_lowest_layer(*x.stream).expires_never();
    x.g->metrics().request(x.route, 200, seconds_since(x.g->clock(), x.start));
    co_return !ec && x.req.keep_alive();
  };
  auto fail_stream = [&](const ApiError& err) -> awaitable<bool> {
    // Output already began: an error event, then the stream ends without
    // [DONE], so no client mistakes it for a complete answer.
    out.clear();
    ChunkWriter::error(out, err);
    if (co_await write_chunk(x, out)) {
      co_await asio::async_write(*x.stream, http::make_chunk_last(), as_tuple_awaitable);
    }
    x.g->metrics().request(x.route, err.status, seconds_since(x.g->clock(), x.start));
    co_return false;
  };

  auto give_up = [&] {
    x.g->scheduler().abandon(job);
    return false;
  };
  for (;;) {
    JobEvent e = co_await sink.next();
    switch (e.kind) {
      case JobEvent::Kind::delta: {
        if (!headers_sent && !co_await send_headers()) co_return give_up();
        // When the node's done is already here, the last text and the
        // finish_reason travel in one chunk.
        if (e.delta.sealed) {
          out.clear();
          cw.sealed(out, *e.delta.sealed, job->node_id);
          if (!co_await write_chunk(x, out)) co_return give_up();
          note_sent(e.received);
          continue;
        }
        if (!sink.events.empty() && sink.events.front().kind == JobEvent::Kind::done) {
          JobEvent d = std::move(sink.events.front());
          sink.events.pop_front();
          co_return co_await finish_stream(d.done, e.delta.text, e.delta.logprobs, e.received);
        }
        if (job->conversation) job->answer += e.delta.text;
        out.clear();
        cw.content(out, e.delta.text, e.delta.logprobs);
        if (!co_await write_chunk(x, out)) co_return give_up();
        note_sent(e.received);
        continue;
      }
      case JobEvent::Kind::restarted:  // only before the first delta: nothing to take back
        continue;
      case JobEvent::Kind::done:
        if (!headers_sent && !co_await send_headers()) co_return false;
        co_return co_await finish_stream(e.done, "", {}, no_frame);
      case JobEvent::Kind::failed:
        if (e.ran) x.g->record(*job, {}, {}, engine::FinishReason::error);
        if (!headers_sent) co_return co_await send_error(x, e.error);
        co_return co_await fail_stream(e.error);
      case JobEvent::Kind::client_gone:
        x.g->metrics().request(x.route, 499, seconds_since(x.g->clock(), x.start));
        co_return give_up();
    }
  }
}

// The 429 for a refused admission, in OpenAI's shape and wording.
ApiError rate_limited(const RateLimiter::Decision& d, const KeyEntry& key) {
  using R = RateLimiter::Refusal;
  ApiError e;
  e.status = 429;
  e.code = "rate_limit_exceeded";
  const int64_t retry_ms = static_cast<int64_t>(std::ceil(d.retry_after_s * 1000));
  e.retry_after_s = static_cast<int>(std::max<int64_t>(1, (retry_ms + 999) / 1000));
  const std::string again = " Please try again in " + format_reset(d.retry_after_s) + ".";
  switch (d.refusal) {
    case R::requests:
      e.type = "requests";
      e.message = fmt::format("Rate limit reached for requests per minute (RPM) on key {}: limit {}.{}", key.id,
                              key.limits.rpm, again);
      break;
    case R::tokens:
      e.type = "tokens";
      e.message = fmt::format(
          "Rate limit reached for tokens per minute (TPM) on key {}: limit {}, remaining {}; this request reserves "
          "its prompt and max_tokens.{}",
          key.id, key.limits.tpm, d.snapshot.remaining_tokens, again);
      break;
    case R::concurrency:
      e.type = "requests";
      e.code = "concurrency_limit_exceeded";
      e.message = fmt::format("Too many requests in flight on key {}: limit {}.{}", key.id,
                              key.limits.max_concurrent, again);
      break;
    case R::too_large:
      e.type = "tokens";
      e.code = "request_too_large";
      e.retry_after_s = 0;  // waiting never helps
      e.message = fmt::format(
          "Request too large for key {}: its prompt and max_tokens exceed the limit of {} tokens per minute. "
          "Lower max_tokens or shorten the messages.",
          key.id, key.limits.tpm);
      break;
    case R::none:
      break;
  }
  return e;
}

awaitable<bool> chat_completions(Exchange& x, const KeyEntry& key) {
  auto parsed = parse_chat_request(x.req.body(), x.g->config().limits);
  if (auto* err = std::get_if<ApiError>(&parsed)) {
    x.rate = x.g->rate_snapshot(key);
    co_return co_await send_error(x, *err);
  }
  auto& request = std::get<ChatRequest>(parsed);
  if (!key.allows(request.model)) {
    x.rate = x.g->rate_snapshot(key);
    const ApiError api_err{403, "permission_error", "model_not_allowed", "model",
                           "This API key may not use the model '" + request.model + "'", 0};
    co_return co_await send_error(x, api_err);
  }
  std::optional<Job::ConversationRef> conversation;
  if (request.conversation_id) {
    if (request.generation.prompt) {
      x.rate = x.g->rate_snapshot(key);
      const ApiError api_err = invalid_request("conversation_id", "'conversation_id' needs 'messages'");
      co_return co_await send_error(x, api_err);
    }
    auto loaded = co_await await_answer<Result<std::optional<Conversation>>>(
        x.stream->get_executor(), [&](auto done) { x.g->load_conversation(key.lineage, *request.conversation_id, done); });
    if (!loaded) {
      spdlog::error("conversation_load_failed key={} error={}", key.id, logfmt_value(loaded.error().to_string()));
      x.rate = x.g->rate_snapshot(key);
      const ApiError api_err{500, "server_error", "conversation_unavailable", "conversation_id",
                             "The conversation could not be read", 0};
      co_return co_await send_error(x, api_err);
    }
    // The context the earlier turns may use: the model's (its smallest
    // node's) minus what the answer may take.
    const int64_t ctx = x.g->context_for(request.model);
    const int64_t answer = request.max_tokens_given ? request.generation.max_tokens
                                                    : std::min<int64_t>(x.g->config().default_completion_reservation,
                                                                        ctx / 4);
    Job::ConversationRef ref;
    ref.owner = key.lineage;
    ref.id = *request.conversation_id;
    ref.own_messages = request.generation.messages;
    ref.ttl_s = request.conversation_ttl_s;
    static const std::vector<engine::ChatMessage> kNone;
    auto& found = *loaded;
    // No node serves the model (ctx 0): no limit here, the request gets its
    // 404 or waits like any other. An answer that leaves no room: no turns.
    const int64_t budget = ctx > 0 ? std::max<int64_t>(0, ctx - answer) : -1;
    auto assembled = assemble(found ? found->messages : kNone, request.generation.messages, budget);
    ref.turns_used = assembled.turns_used;
    ref.turns_dropped = assembled.turns_dropped;
    request.generation.messages = std::move(assembled.messages);
    if (found) {
      for (auto& m : found->messages) crypto::secure_wipe(m.content);
    }
    conversation = std::move(ref);
  }
  auto job = x.g->new_job(std::move(request), key);
  job->conversation = std::move(conversation);
  const auto decision = x.g->admit(key, *job);
  x.rate = decision.snapshot;
  if (decision.refusal != RateLimiter::Refusal::none) {
    const ApiError api_err = rate_limited(decision, key);
    Response res = json_response(x.req, http::status::too_many_requests, error_body(api_err));
    if (api_err.retry_after_s > 0) {
      res.set(http::field::retry_after, std::to_string(api_err.retry_after_s));
      res.set("retry-after-ms", std::to_string(static_cast<int64_t>(std::ceil(decision.retry_after_s * 1000))));
    } else {
      res.set("x-should-retry", "false");  // the OpenAI SDKs honour it
    }
    co_return co_await send(x, std::move(res));
  }
  auto sink = std::make_shared<HttpSink>(x.stream->get_executor(), job->request.stream);
  job->sink = sink.get();
  // However this coroutine ends, the job is let go of before its sink.
  struct Abandon {
    Scheduler& scheduler;
    std::shared_ptr<Job> job;
    ~Abandon() { scheduler.abandon(job); }
  } abandon_at_exit{x.g->scheduler(), job};
  if (auto err = x.g->scheduler().submit(job)) co_return co_await send_error(x, *err);

  net::spawn(x.stream->get_executor(), watch_client(x.stream, job, sink), "watch_client");
  const bool keep = job->request.stream ? co_await streamed_completion(x, job, *sink)
                                        : co_await unary_completion(x, job, *sink);
  // The response is written, so the watcher's wait is the only operation
  // left on the socket: cancelling it ends the watcher.
  boost::system::error_code ignored;
  beast::get_lowest_layer(*x.stream).socket().cancel(ignored);
  co_return keep;
}

awaitable<bool> list_models(Exchange& x) {
  std::string body = "{\"object\":\"list\",\"data\":[";
  bool first = true;
  for (const auto& m : x.g->router().models()) {
    if (!first) body += ',';
    first = false;
    body += "{\"id\":";
    append_json_string(body, m.name);
    body += ",\"object\":\"model\",\"created\":";
    append_json_number(body, m.created_ms / 1000);
    body += ",\"owned_by\":\"agora\",\"agora\":{\"sha256\":[";
    for (size_t i = 0; i < m.sha256.size(); ++i) {
      if (i) body += ',';
      append_json_string(body, m.sha256[i]);
    }
    body += fmt::format("],\"nodes\":{},\"slots\":{},\"slots_busy\":{},\"slots_free\":{},\"context_length\":{}",
                        m.nodes, m.slots, m.busy, m.slots - m.busy, m.ctx_per_slot);
    // Capacity by attestation level: nodes at that level or above.
    body += ",\"capacity\":{";
    for (size_t l = 0; l < kLevels; ++l) {
      const Capacity& c = m.by_level[l];
      body += fmt::format("{}\"{}\":{{\"nodes\":{},\"slots\":{},\"slots_busy\":{},\"slots_free\":{}}}", l ? "," : "",
                          level_name(static_cast<Level>(l)), c.nodes, c.slots, c.busy, c.slots - c.busy);
    }
    body += "}}}";
  }
  body += "]}";
  co_return co_await send(x, json_response(x.req, http::status::ok, std::move(body)));
}

// A node's attestation for clients: the level it serves at, and with a
// live verdict the evidence and the gateway nonce it answers, so a client
// can verify it itself (agora proxy --confidential does) and bind the
// node's identity key: evidence nonce = SHA-256(nonce ‖ identity key).
void append_attestation(std::string& body, const NodeInfo& n) {
  const NodeAttestation& a = n.attestation;
  body += "{\"level\":";
  append_json_string(body, level_name(n.level));
  body += ",\"status\":";
  append_json_string(body, a.status);
  if (a.kind.empty()) {
    body += ",\"kind\":null";
  } else {
    body += ",\"kind\":";
    append_json_string(body, a.kind);
  }
  if (n.level == Level::standard) {
    body += ",\"evidence\":null}";
    return;
  }
  body += fmt::format(",\"verified_at\":{},\"expires_at\":{},\"verified_ms\":{},\"expires_ms\":{},\"nonce\":",
                      a.verified_ms / 1000, a.expires_ms / 1000, a.verified_ms, a.expires_ms);
  append_json_string(body, a.nonce);
  body += ",\"evidence\":";
  append_json_string(body, a.evidence);
  body += '}';
}

// GET /v1/providers?model=…&privacyLevel=…&region=a,b&confidential=…: the
// nodes a client could seal a request to now — serving the model, taking
// jobs (not held or draining), with an identity key, matching the
// constraints — so the client can choose and check candidates itself.
// Each listed node may carry up to 128 KiB of evidence: the listing is
// bounded (providers_query.h) and built on the loop.
awaitable<bool> list_providers(Exchange& x, std::string_view query) {
  auto parsed = parse_providers_query(query);
  if (auto* err = std::get_if<ApiError>(&parsed)) {
    const ApiError api_err = *err;
    co_return co_await send_error(x, api_err);
  }
  const ProvidersQuery& q = std::get<ProvidersQuery>(parsed);
  const std::string& model = q.model;
  const RoutingPreferences& wanted = q.routing;
  const size_t limit = q.limit;
  std::string body = "{\"object\":\"list\",\"data\":[";
  const Level need = required_level(wanted);
  const auto& regions = wanted.regions;
  size_t listed = 0;
  for (const auto& [conn, n] : x.g->router().nodes()) {
    if (listed == limit) break;
    if (n.level < need || n.held || n.draining || n.identity_key.empty()) continue;
    if (!regions.empty() && std::find(regions.begin(), regions.end(), n.region) == regions.end()) continue;
    const protocol::ModelAdvert* m = nullptr;
    for (const auto& nm : n.models) {
      if (nm.advert.name == model) m = &nm.advert;
    }
    if (!m) continue;
    body += listed++ ? ",{\"id\":" : "{\"id\":";
    append_json_string(body, n.node_id);
    body += ",\"object\":\"provider.node\",\"provider_id\":";
    append_json_string(body, n.provider_id);
    body += ",\"identity_key\":";
    append_json_string(body, n.identity_key);
    body += ",\"region\":";
    append_json_string(body, n.region);
    body += ",\"model\":";
    append_json_string(body, m->name);
    body += ",\"model_sha256\":";
    append_json_string(body, m->sha256);
    body += fmt::format(",\"ctx_per_slot\":{},\"slots\":{}", m->ctx_per_slot, m->slots);
    body += ",\"attestation\":";
    append_attestation(body, n);
    body += '}';
  }
  body += "]}";
  co_return co_await send(x, json_response(x.req, http::status::ok, std::move(body)));
}

std::string generation_json(const store::GenerationRecord& r) {
  std::string b = "{\"id\":";
  append_json_string(b, r.id);
  b += ",\"object\":\"generation\",\"created\":";
  append_json_number(b, r.created_ms / 1000);
  b += ",\"model\":";
  append_json_string(b, r.model);
  b += ",\"provider_id\":";
  append_json_string(b, r.provider_id);
  b += ",\"node_id\":";
  append_json_string(b, r.node_id);
  b += ",\"model_sha256\":";
  append_json_string(b, r.model_sha256);
  b += ",\"attestation\":";
  append_json_string(b, r.attestation);
  b += ",\"finish_reason\":";
  append_json_string(b, r.finish_reason);
  b += r.stream ? ",\"stream\":true" : ",\"stream\":false";
  engine::Usage u{r.prompt_tokens, r.completion_tokens, r.cached_prompt_tokens};
  b += ",\"usage\":" + usage_json(u);
  b += ",\"timings\":{\"queued_ms\":";
  append_json_number(b, r.queued_ms);
  b += ",\"prompt_ms\":";
  append_json_number(b, r.prompt_ms);
  b += ",\"decode_ms\":";
  append_json_number(b, r.decode_ms);
  b += ",\"total_ms\":";
  append_json_number(b, r.total_ms);
  b += "}}";
  return b;
}

awaitable<bool> get_generation(Exchange& x, const KeyEntry& key, std::string id) {
  std::optional<store::GenerationRecord> rec;
  if (auto* r = x.g->find_recent(id)) {
    rec = *r;
  } else if (id.size() <= 64) {
    rec = co_await await_answer<std::optional<store::GenerationRecord>>(
        x.stream->get_executor(), [&](auto done) { x.g->lookup_generation(id, done); });
  }
  // Another key's generation is indistinguishable from a missing one.
  if (!rec || rec->key_id != key.id) {
    const ApiError api_err{404, "invalid_request_error", "generation_not_found", "id",
                           "No generation '" + id + "' for this API key", 0};
    co_return co_await send_error(x, api_err);
  }
  co_return co_await send(x, json_response(x.req, http::status::ok, generation_json(*rec)));
}

// GET / DELETE /v1/conversations/{id}: only the owning key (lineage) sees
// it; anyone else gets the 404 a missing one gets.
awaitable<bool> conversation_endpoint(Exchange& x, const KeyEntry& key, std::string id) {
  const ApiError not_found{404, "invalid_request_error", "conversation_not_found", "id",
                           "No conversation '" + (valid_conversation_id(id) ? id : std::string("…")) +
                               "' for this API key",
                           0};
  if (!valid_conversation_id(id)) co_return co_await send_error(x, not_found);
  // Each read or delete counts against the key's requests per minute (and
  // in-flight limit while it runs) like a chat request, tokens aside.
  const auto decision = x.g->limiter().admit(key.lineage, key.limits, 0, x.g->clock().now());
  x.rate = decision.snapshot;
  if (decision.refusal != RateLimiter::Refusal::none) {
    const ApiError api_err = rate_limited(decision, key);
    co_return co_await send_error(x, api_err);
  }
  struct Settle {
    GatewayImpl& g;
    const std::string& lineage;
    ~Settle() { g.limiter().settle(lineage, 0, 0, g.clock().now()); }
  } settle{*x.g, key.lineage};
  if (x.req.method() == http::verb::delete_) {
    auto deleted = co_await await_answer<Result<bool>>(
        x.stream->get_executor(), [&](auto done) { x.g->delete_conversation(key.lineage, id, done); });
    if (!deleted) {
      const ApiError api_err{500, "server_error", "conversation_unavailable", "", "The conversation could not be deleted", 0};
      co_return co_await send_error(x, api_err);
    }
    if (!*deleted) co_return co_await send_error(x, not_found);
    std::string body = "{\"id\":";
    append_json_string(body, id);
    body += ",\"object\":\"conversation.deleted\",\"deleted\":true}";
    co_return co_await send(x, json_response(x.req, http::status::ok, std::move(body)));
  }
  auto loaded = co_await await_answer<Result<std::optional<Conversation>>>(
      x.stream->get_executor(), [&](auto done) { x.g->load_conversation(key.lineage, id, done); });
  if (!loaded) {
    const ApiError api_err{500, "server_error", "conversation_unavailable", "", "The conversation could not be read", 0};
    co_return co_await send_error(x, api_err);
  }
  if (!*loaded) co_return co_await send_error(x, not_found);
  std::string body = conversation_json(id, **loaded);
  for (auto& m : (*loaded)->messages) crypto::secure_wipe(m.content);
  Response res = json_response(x.req, http::status::ok, std::move(body));
  res.set(http::field::cache_control, "no-store");
  co_return co_await send(x, std::move(res));
}

awaitable<bool> handle(Exchange& x) {
  std::string_view target = x.req.target();
  std::string_view query;
  if (auto q = target.find('?'); q != std::string_view::npos) {
    query = target.substr(q + 1);
    target = target.substr(0, q);
  }
  const auto method = x.req.method();
  auto method_not_allowed = [&](const char* allow) -> awaitable<bool> {
    const ApiError api_err{405, "invalid_request_error", "method_not_allowed", "",
                           std::string("Use ") + allow + " for " + std::string(target), 0};
    Response res = json_response(x.req, http::status::method_not_allowed, error_body(api_err));
    res.set(http::field::allow, allow);
    co_return co_await send(x, std::move(res));
  };

  if (target == "/healthz") {
    x.route = "healthz";
    co_return co_await send(x, json_response(x.req, http::status::ok, "{\"status\":\"ok\"}"));
  }
  if (target == "/readyz") {
    x.route = "readyz";
    const auto g = x.g->gauges();
    const bool ready = x.g->ready() && !x.g->stopping();
    co_return co_await send(x, json_response(x.req, ready ? http::status::ok : http::status::service_unavailable,
                                             fmt::format("{{\"ready\":{},\"nodes\":{},\"slots\":{}}}", ready,
                                                         g.nodes_connected, g.slots_total)));
  }
  if (target == "/metrics") {
    x.route = "metrics";
    Response res{http::status::ok, x.req.version()};
    res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    res.body() = x.g->metrics().render(x.g->gauges());
    co_return co_await send(x, std::move(res));
  }

  if (target.starts_with("/admin/")) co_return co_await handle_admin(x, target);

  const bool chat = target == "/v1/chat/completions";
  const bool models = target == "/v1/models";
  const bool generation = target.starts_with("/v1/generations/");
  const bool conversation = target.starts_with("/v1/conversations/");
  const bool providers = target == "/v1/providers";
  if (!chat && !models && !generation && !conversation && !providers) {
    const ApiError api_err{404, "invalid_request_error", "not_found", "", "Unknown path " + std::string(target), 0};
    co_return co_await send_error(x, api_err);
  }
  x.route = chat ? "chat" : models ? "models" : generation ? "generations" : providers ? "providers" : "conversations";
  if (chat && method != http::verb::post) co_return co_await method_not_allowed("POST");
  if (conversation && method != http::verb::get && method != http::verb::delete_) {
    co_return co_await method_not_allowed("GET, DELETE");
  }
  if (!chat && !conversation && method != http::verb::get) co_return co_await method_not_allowed("GET");

  const std::string_view authorization = x.req[http::field::authorization];
  const KeyEntry* key = x.g->authenticate(authorization);
  if (!key) co_return co_await send_error(x, unauthorized(authorization));
  const KeyEntry key_copy = *key;  // the table may be replaced while we wait

  if (chat) co_return co_await chat_completions(x, key_copy);
  x.rate = x.g->rate_snapshot(key_copy);
  if (models) co_return co_await list_models(x);
  if (providers) co_return co_await list_providers(x, query);
  if (conversation) {
    co_return co_await conversation_endpoint(x, key_copy,
                                             std::string(target.substr(std::string_view("/v1/conversations/").size())));
  }
  co_return co_await get_generation(x, key_copy, std::string(target.substr(std::string_view("/v1/generations/").size())));
}

// Answers a request that could not be read whole, then the connection closes.
// Callers pass a named ApiError: GCC 12 miscompiles braced ApiError
// temporaries inside co_await expressions (destroyed twice).
awaitable<void> reject_unreadable(std::shared_ptr<GatewayImpl> g, std::shared_ptr<TlsStream> stream,
                                  http::status status, const ApiError& e) {
  Response res{status, 11};
  res.set(http::field::server, "agora-gateway");
  res.set(http::field::strict_transport_security, kHsts);
  res.set(http::field::content_type, "application/json");
  res.keep_alive(false);
  res.body() = error_body(e);
  res.prepare_payload();
  beast::get_lowest_layer(*stream).expires_after(g->config().write_timeout);
  co_await http::async_write(*stream, res, as_tuple_awaitable);
  g->metrics().request("other", static_cast<int>(status), 0);
}

}  // namespace

awaitable<void> run_http_session(std::shared_ptr<GatewayImpl> g, tcp::socket socket,
                                 std::shared_ptr<asio::ssl::context> ssl) {
  auto stream = std::make_shared<TlsStream>(beast::tcp_stream(std::move(socket)), *ssl);
  const uint64_t conn_id = g->http_opened(stream);
  struct Closed {
    std::shared_ptr<GatewayImpl> g;
    uint64_t id;
    ~Closed() { g->http_closed(id); }
  } closed{g, conn_id};
  const auto& cfg = g->config();

  beast::get_lowest_layer(*stream).expires_after(cfg.handshake_timeout);
  auto [hec] = co_await stream->async_handshake(asio::ssl::stream_base::server, as_tuple_awaitable);
  if (hec) {
    spdlog::debug("tls_handshake_failed error={}", logfmt_value(hec.message()));
    co_return;
  }

  beast::flat_buffer buffer;
  for (;;) {
    if (g->stopping()) break;
    // Between requests: wait for the first byte up to the idle timeout.
    if (buffer.size() == 0) {
      beast::get_lowest_layer(*stream).expires_after(cfg.idle_timeout);
      auto [ec, n] = co_await stream->async_read_some(buffer.prepare(16 * 1024), as_tuple_awaitable);
      if (ec) break;
      buffer.commit(n);
    }
    // Then the whole request (header and body) within the read timeout.
    RequestParser parser;
    apply_limits(parser, HttpLimits{cfg.max_header_bytes, cfg.max_body_bytes});
    beast::get_lowest_layer(*stream).expires_after(cfg.read_timeout);
    auto [ec, n] = co_await http::async_read(*stream, buffer, parser, as_tuple_awaitable);
    beast::get_lowest_layer(*stream).expires_never();
    if (ec == http::error::body_limit) {
      const ApiError api_err{413, "invalid_request_error", "request_too_large", "",
                             fmt::format("The request body is larger than {} bytes", cfg.max_body_bytes), 0};
      co_await reject_unreadable(g, stream, http::status::payload_too_large, api_err);
      // Lingering close: read and drop what the client is still sending
      // (bounded in bytes and time), so its TCP stack does not reset the
      // connection before it has read the 413.
      beast::get_lowest_layer(*stream).expires_after(std::chrono::seconds(5));
      std::vector<char> scratch(64 * 1024);
      for (size_t drained = 0; drained < 4 * cfg.max_body_bytes + (16u << 20);) {
        auto [rec, got] = co_await stream->async_read_some(asio::buffer(scratch), as_tuple_awaitable);
        if (rec) break;
        drained += got;
      }
      break;
    }
    if (ec == http::error::header_limit) {
      const ApiError api_err{431, "invalid_request_error", "headers_too_large", "",
                             fmt::format("The request headers are larger than {} bytes", cfg.max_header_bytes), 0};
      co_await reject_unreadable(g, stream, http::status::request_header_fields_too_large, api_err);
      break;
    }
    // A read timeout (beast::error::timeout) has already closed the socket:
    // nothing can be answered, the connection just ends.
    if (ec == http::error::end_of_stream || ec == asio::ssl::error::stream_truncated || ec == asio::error::eof ||
        ec == asio::error::operation_aborted || ec == asio::error::connection_reset || ec == beast::error::timeout) {
      break;
    }
    if (ec) {
      const ApiError api_err{400, "invalid_request_error", "bad_request", "", "Malformed HTTP request: " + ec.message(), 0};
      co_await reject_unreadable(g, stream, http::status::bad_request, api_err);
      break;
    }
    Request req = parser.release();
    // RFC 9112 §3.2 (Host), before anything is routed, node upgrades included.
    if (const std::optional<ApiError> bad_request = check_request(req)) {
      const ApiError api_err = *bad_request;  // named: see reject_unreadable
      co_await reject_unreadable(g, stream, http::status::bad_request, api_err);
      break;
    }

    if (websocket::is_upgrade(req)) {
      std::string_view target = req.target();
      if (target != protocol::kNodePath) {
        const ApiError api_err{404, "invalid_request_error", "not_found", "",
                               "No WebSocket endpoint at " + std::string(target), 0};
        co_await reject_unreadable(g, stream, http::status::not_found, api_err);
        break;
      }
      const ProviderEntry* provider = g->authenticate_provider(req[http::field::authorization]);
      if (!provider) {
        const ApiError api_err{401, "invalid_request_error", "invalid_provider_token", "",
                               "Missing, unknown or revoked provider token", 0};
        co_await reject_unreadable(g, stream, http::status::unauthorized, api_err);
        break;
      }
      // The connection now belongs to the node session (and outlives this
      // connection's bookkeeping as a client connection).
      g->http_forget(conn_id);
      co_await g->run_node_session(stream, std::move(req), *provider);
      co_return;
    }

    Exchange x{g, stream, req, g->clock().now(), "other", std::nullopt};
    const bool keep = co_await handle(x);
    if (!keep) break;
  }
  // Best-effort TLS close_notify, bounded.
  beast::get_lowest_layer(*stream).expires_after(std::chrono::seconds(2));
  co_await stream->async_shutdown(as_tuple_awaitable);
  beast::get_lowest_layer(*stream).close();
}

}  // namespace agora::gateway
