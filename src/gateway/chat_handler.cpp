// POST /v1/chat/completions: parse, admit, submit the job to the scheduler
// with this coroutine as its sink, and write the answer (JSON, or SSE as
// the node's deltas arrive).
#include <poll.h>

#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/log.h"
#include "crypto/aead.h"
#include "gateway/errors.h"
#include "gateway/http_handlers.h"
#include "net/spawn.h"

namespace agora::gateway {

using asio::awaitable;
constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);

namespace {

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
  Provenance p;
  p.provider_id = job.provider_id;
  p.model_sha256 = job.model_sha256;
  p.generation_id = job.generation_id;
  p.attestation = std::string(level_name(job.attestation));
  p.overhead_us = overhead_us;
  if (job.conversation) {
    p.conversation_turns = job.conversation->turns_used;
    p.conversation_turns_dropped = job.conversation->turns_dropped;
  }
  if (job.request.sealed) p.node_id = job.node_id;
  return p;
}

// A complete answer joins its conversation before the client sees the end
// of it (so a next turn sent at once finds it there).
void remember(GatewayImpl& g, const Job& job, protocol::FinishReason finish) {
  if (job.conversation && (finish == protocol::FinishReason::stop || finish == protocol::FinishReason::length)) {
    g.conversations().save(*job.conversation, job.answer);
  }
}

// The gateway's added time for a job that ends now: everything since the
// request was read, minus what the node reports it spent (queue, prompt,
// decode). What remains is the gateway's work plus the node link.
int64_t overhead_us(Exchange& x, const protocol::Timings& t) {
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
        if (!e.delta.tool_calls.empty()) add_tool_call_deltas(acc.tool_calls, e.delta.tool_calls);
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
          x.g->generations().record(*job, e.done.usage, e.done.timings, protocol::FinishReason::error);
          const ApiError api_err = errors::sealed_answer_incomplete();
          co_return co_await send_error(x, api_err);
        }
        x.g->generations().record(*job, e.done.usage, e.done.timings, e.done.finish);
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
        if (e.ran) x.g->generations().record(*job, {}, {}, protocol::FinishReason::error);
        if (e.sealed_failure) {
          acc.chunks.push_back(std::move(*e.sealed_failure));
          co_return co_await send_sealed_error(x, e.error, job->node_id, acc.chunks);
        }
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

// One streamed answer: SSE headers on the first output, a chunk per delta,
// the final chunk with the finish reason (and usage), or an error event
// once output has begun.
class SseStream {
 public:
  SseStream(Exchange& x, std::shared_ptr<Job> job, HttpSink& sink)
      : x_(x),
        job_(std::move(job)),
        sink_(sink),
        cw_(job_->generation_id, job_->created_unix, job_->request.model, job_->request.include_usage,
            job_->request.generation.logprobs) {}

  awaitable<bool> run() {
    for (;;) {
      JobEvent e = co_await sink_.next();
      if (e.kind == JobEvent::Kind::restarted) continue;  // only before the first delta: nothing to take back
      if (e.kind == JobEvent::Kind::delta) {
        std::optional<bool> end = co_await on_delta(e);
        if (end) co_return *end;
        continue;
      }
      co_return co_await on_end(e);
    }
  }

 private:
  // A done, a failure or the client gone: the stream's last event.
  awaitable<bool> on_end(JobEvent& e) {
    if (e.kind == JobEvent::Kind::done) {
      if (!headers_sent_ && !co_await send_headers()) co_return false;
      static const std::vector<protocol::TokenLogprob> kNoLogprobs;  // named: GCC and temporaries in co_await
      co_return co_await finish(e.done, "", kNoLogprobs, kNoFrame);
    }
    if (e.kind == JobEvent::Kind::failed) {
      if (e.ran) x_.g->generations().record(*job_, {}, {}, protocol::FinishReason::error);
      if (!headers_sent_) {
        if (!e.sealed_failure) co_return co_await send_error(x_, e.error);
        const std::vector<protocol::SealedChunk> chunks{std::move(*e.sealed_failure)};  // named: GCC and co_await
        co_return co_await send_sealed_error(x_, e.error, job_->node_id, chunks);
      }
      // Output already began: an error event, then the stream ends without
      // [DONE], so no client mistakes it for a complete answer. Written
      // here, not in a member coroutine of its own: GCC 12 left that one
      // suspended before its first statement (tests/clients/faults.test.mjs,
      // "node killed mid-stream").
      out_.clear();
      if (e.sealed_failure) ChunkWriter::sealed_error(out_, e.error, job_->node_id, *e.sealed_failure);
      else ChunkWriter::error(out_, e.error);
      if (co_await write_chunk(x_, out_)) co_await asio::async_write(*x_.stream, http::make_chunk_last(), as_tuple_awaitable);
      x_.g->metrics().request(x_.route, e.error.status, seconds_since(x_.g->clock(), x_.start));
      co_return false;
    }
    x_.g->metrics().request(x_.route, 499, seconds_since(x_.g->clock(), x_.start));  // client_gone
    co_return give_up();
  }

  static constexpr Clock::TimePoint kNoFrame{};

  // A delta's chunk; the stream's end (keep-alive or not) when it was the
  // last one or writing failed, nullopt to go on.
  awaitable<std::optional<bool>> on_delta(JobEvent& e) {
    if (!headers_sent_ && !co_await send_headers()) co_return give_up();
    if (e.delta.sealed) {
      out_.clear();
      cw_.sealed(out_, *e.delta.sealed, job_->node_id);
      if (!co_await write_chunk(x_, out_)) co_return give_up();
      note_sent(e.received);
      co_return std::nullopt;
    }
    if (!e.delta.tool_calls.empty()) {
      // Text first, then the calls, each in its chunk as OpenAI streams them.
      out_.clear();
      if (!e.delta.text.empty()) cw_.content(out_, e.delta.text, e.delta.logprobs);
      cw_.tool_calls(out_, e.delta.tool_calls);
      if (!co_await write_chunk(x_, out_)) co_return give_up();
      note_sent(e.received);
      co_return std::nullopt;
    }
    // When the node's done is already here, the last text and the
    // finish_reason travel in one chunk.
    if (!sink_.events.empty() && sink_.events.front().kind == JobEvent::Kind::done) {
      JobEvent d = std::move(sink_.events.front());
      sink_.events.pop_front();
      co_return co_await finish(d.done, e.delta.text, e.delta.logprobs, e.received);
    }
    if (job_->conversation) job_->answer += e.delta.text;
    out_.clear();
    cw_.content(out_, e.delta.text, e.delta.logprobs);
    if (!co_await write_chunk(x_, out_)) co_return give_up();
    note_sent(e.received);
    co_return std::nullopt;
  }

  awaitable<bool> send_headers() {
    http::response<http::empty_body> res{http::status::ok, x_.req.version()};
    res.set(http::field::server, "agora-gateway");
    res.set(http::field::strict_transport_security, kHsts);
    rate_headers(res, x_.rate);
    res.set(http::field::content_type, "text/event-stream; charset=utf-8");
    res.set(http::field::cache_control, "no-cache");
    res.set("x-accel-buffering", "no");
    res.keep_alive(x_.req.keep_alive());
    res.chunked(true);
    http::response_serializer<http::empty_body> sr{res};
    beast::get_lowest_layer(*x_.stream).expires_after(x_.g->config().write_timeout);
    auto [ec, n] = co_await http::async_write_header(*x_.stream, sr, as_tuple_awaitable);
    beast::get_lowest_layer(*x_.stream).expires_never();
    headers_sent_ = true;
    co_return !ec;
  }

  // Streaming overheads (metrics only): the first chunk's time at the
  // gateway, and each token's node frame → SSE chunk written.
  void note_sent(Clock::TimePoint received) {
    const auto now = x_.g->clock().now();
    if (!first_sent_) first_sent_ = now;
    if (received != kNoFrame) x_.g->metrics().token_forward(to_millis(now - received) / 1000.0);
  }

  awaitable<bool> finish(const protocol::Done& d, std::string_view text, const std::vector<protocol::TokenLogprob>& lps,
                         Clock::TimePoint received) {
    x_.g->generations().record(*job_, d.usage, d.timings, d.finish);
    if (d.sealed) {
      out_.clear();
      cw_.sealed(out_, *d.sealed, job_->node_id);
      if (!co_await write_chunk(x_, out_)) co_return false;
    }
    if (job_->conversation) {
      job_->answer += text;
      remember(*x_.g, *job_, d.finish);
    }
    const int64_t overhead = overhead_us(x_, d.timings);
    x_.g->metrics().overhead(static_cast<double>(overhead) / 1e6);
    out_.clear();
    cw_.finish(out_, text, lps, d.finish, provenance(*job_, overhead));
    if (job_->request.include_usage) cw_.usage(out_, d.usage, provenance(*job_, overhead));
    ChunkWriter::done(out_);
    if (!co_await write_chunk(x_, out_)) co_return false;
    note_sent(received);
    const double node_ttft_ms = d.timings.queued_ms + d.timings.prompt_ms;
    const double ttft_over_ms = to_millis(*first_sent_ - x_.start) - node_ttft_ms;
    if (d.usage.completion_tokens > 0) x_.g->metrics().ttft_overhead(std::max(ttft_over_ms, 0.0) / 1000.0);
    beast::get_lowest_layer(*x_.stream).expires_after(x_.g->config().write_timeout);
    auto [ec, n] = co_await asio::async_write(*x_.stream, http::make_chunk_last(), as_tuple_awaitable);
    beast::get_lowest_layer(*x_.stream).expires_never();
    x_.g->metrics().request(x_.route, 200, seconds_since(x_.g->clock(), x_.start));
    co_return !ec && x_.req.keep_alive();
  }

  bool give_up() {
    x_.g->scheduler().abandon(job_);
    return false;
  }

  Exchange& x_;
  std::shared_ptr<Job> job_;
  HttpSink& sink_;
  ChunkWriter cw_;
  bool headers_sent_ = false;
  std::string out_;
  std::optional<Clock::TimePoint> first_sent_;
};

awaitable<bool> streamed_completion(Exchange& x, std::shared_ptr<Job> job, HttpSink& sink) {
  SseStream stream(x, std::move(job), sink);
  co_return co_await stream.run();
}

}  // namespace

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

namespace {

// With conversation_id: the earlier turns that fit the context go before
// the request's own messages. The reference the job keeps (for the answer
// to be remembered), or the error to send.
awaitable<std::variant<Job::ConversationRef, ApiError>> prepend_conversation(Exchange& x, const KeyEntry& key,
                                                                            ChatRequest& request) {
  if (request.generation.prompt) co_return invalid_request("conversation_id", "'conversation_id' needs 'messages'");
  auto loaded = co_await await_answer<Result<std::optional<Conversation>>>(
      x.stream->get_executor(), [&](auto done) { x.g->conversations().load(key.lineage, *request.conversation_id, done); });
  if (!loaded) {
    spdlog::error("conversation_load_failed key={} error={}", key.id, logfmt_value(loaded.error().to_string()));
    co_return errors::conversation_unavailable("conversation_id", "read");
  }
  // The context the earlier turns may use: the model's (its smallest
  // node's) minus what the answer may take.
  const int64_t ctx = x.g->context_for(request.model);
  const int64_t answer = request.max_tokens_given
                             ? request.generation.max_tokens
                             : std::min<int64_t>(x.g->config().default_completion_reservation, ctx / 4);
  Job::ConversationRef ref;
  ref.owner = key.lineage;
  ref.id = *request.conversation_id;
  ref.own_messages = request.generation.messages;
  ref.ttl_s = request.conversation_ttl_s;
  static const std::vector<protocol::ChatMessage> kNone;
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
  co_return ref;
}

awaitable<bool> send_rate_limited(Exchange& x, const RateLimiter::Decision& decision, const KeyEntry& key) {
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

}  // namespace

awaitable<bool> handle_chat(Exchange& x, const RouteCall& call) {
  const KeyEntry& key = *call.key;
  auto parsed = parse_chat_request(x.req.body(), x.g->config().limits);
  if (auto* err = std::get_if<ApiError>(&parsed)) {
    x.rate = x.g->rate_snapshot(key);
    co_return co_await send_error(x, *err);
  }
  auto& request = std::get<ChatRequest>(parsed);
  if (!key.allows(request.model)) {
    x.rate = x.g->rate_snapshot(key);
    const ApiError api_err = errors::model_not_allowed(request.model);  // named: GCC and temporaries in co_await
    co_return co_await send_error(x, api_err);
  }
  std::optional<Job::ConversationRef> conversation;
  if (request.conversation_id) {
    auto prepended = co_await prepend_conversation(x, key, request);
    if (auto* err = std::get_if<ApiError>(&prepended)) {
      x.rate = x.g->rate_snapshot(key);
      co_return co_await send_error(x, *err);
    }
    conversation = std::move(std::get<Job::ConversationRef>(prepended));
  }
  auto job = x.g->new_job(std::move(request), key);
  job->conversation = std::move(conversation);
  const auto decision = x.g->admit(key, *job);
  x.rate = decision.snapshot;
  if (decision.refusal != RateLimiter::Refusal::none) co_return co_await send_rate_limited(x, decision, key);
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

}  // namespace agora::gateway
