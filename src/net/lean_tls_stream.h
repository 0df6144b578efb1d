// LeanTlsStream: a TLS stream over beast::tcp_stream that holds no buffers
// while it is idle, for servers with many mostly-silent connections (the
// gateway's provider nodes).
//
// Why not asio::ssl::stream: each one allocates (and zero-fills) two 17 KiB
// staging buffers and an OpenSSL BIO pair of two more 17 KiB rings, for the
// stream's whole life, i.e. some 50-70 KiB per idle connection before
// WebSocket and application state (docs/BENCHMARKS.md, "Memory per idle node
// connection").
//
// How: OpenSSL talks to a small custom BIO. Its read side reads the socket
// directly (non-blocking) into OpenSSL's own record buffer, which
// SSL_MODE_RELEASE_BUFFERS frees whenever no partial record is pending; its
// write side appends to a std::string that is handed to the socket and
// released once written. To wait for input, an operation reads one byte
// through the tcp_stream (so its timeouts, expires_after(), and cancel()
// apply as before) and feeds that byte to OpenSSL first. An idle stream thus
// owns the SSL object, the tcp_stream and a few words.
//
// Behaviour matches asio::ssl::stream as the gateway uses it: the same
// operations and completion signatures, the same errors (asio::error::eof
// after the peer's close_notify, asio::ssl::error::stream_truncated for a
// TCP close without one, OpenSSL errors in asio's ssl category, socket
// errors and beast::error::timeout as they come), async_write_some writes
// at most one TLS record (16 KiB) and coalesces a multi-buffer sequence into
// it, async_read_some reads into the first non-empty buffer, and
// async_shutdown sends close_notify and waits for the peer's. The WebSocket
// teardown (async_teardown below) is beast's SSL one.
//
// Threading: like any asio stream, not thread-safe; at most one read-type
// (read, handshake, shutdown) and one write operation in flight, all on the
// stream's executor (an implicit or explicit strand). The stream must
// outlive its operations. Movable while no operation is in flight.
#pragma once

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream_base.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket/teardown.hpp>
#include <boost/system/system_error.hpp>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>

namespace agora::net {

namespace lean_tls {

namespace asio = boost::asio;
namespace beast = boost::beast;
using error_code = boost::system::error_code;

// Plaintext bytes one async_write_some encrypts at most: one full TLS record.
inline constexpr size_t kMaxWrite = 16 * 1024;

// Everything a stream owns, on the heap so that the BIO's pointer to it
// survives moves of the stream.
struct Core {
  Core(beast::tcp_stream&& stream, SSL_CTX* ctx);
  ~Core() {
    if (ssl != nullptr) SSL_free(ssl);  // frees the BIO too
  }
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;

  // The eof the peer gave, as asio reports it: eof after its close_notify,
  // stream_truncated without.
  error_code eof_error() const {
    if ((SSL_get_shutdown(ssl) & SSL_RECEIVED_SHUTDOWN) != 0) return asio::error::eof;
    return asio::ssl::error::stream_truncated;
  }

  beast::tcp_stream next;
  SSL* ssl = nullptr;
  // Tells waiting operations that a write or a one-byte read on `next` has
  // ended (cancel(); it never expires). Made when an operation first has to
  // wait for another, which few streams ever do.
  std::unique_ptr<asio::steady_timer> wake;
  void wake_waiters() {
    if (wake) wake->cancel();
  }

  // Write side: bytes OpenSSL produced (`out`), then in flight (`sending`).
  std::string out;
  std::string sending;
  bool writing = false;
  uint64_t produced = 0;  // bytes ever appended to `out`
  uint64_t flushed = 0;   // bytes ever written to `next`
  error_code write_error;  // sticky: the first failed write

  // Read side: the one-byte read that waits for input, and what it got.
  bool reading = false;
  bool have_peek = false;
  unsigned char peek = 0;
  bool eof = false;       // the peer closed the TCP connection
  error_code read_error;  // a socket error the BIO's read saw
  bool non_blocking = false;
};

// ---- the BIO between OpenSSL and Core

inline int bio_write(BIO* bio, const char* data, int len) {
  auto* core = static_cast<Core*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  if (len <= 0) return 0;
  core->out.append(data, static_cast<size_t>(len));
  core->produced += static_cast<uint64_t>(len);
  return len;
}

inline int bio_read(BIO* bio, char* data, int len) {
  auto* core = static_cast<Core*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  if (len <= 0) return 0;
  // A one-byte read in flight owns the next byte of the stream.
  if (core->reading) {
    BIO_set_retry_read(bio);
    return -1;
  }
  size_t n = 0;
  if (core->have_peek) {
    data[0] = static_cast<char>(core->peek);
    core->have_peek = false;
    n = 1;
  }
  if (n < static_cast<size_t>(len) && !core->eof && !core->read_error) {
    error_code ec;
    if (!core->non_blocking) {
      core->next.socket().non_blocking(true, ec);
      core->non_blocking = !ec;
    }
    if (!ec) n += core->next.socket().read_some(asio::buffer(data + n, static_cast<size_t>(len) - n), ec);
    if (ec == asio::error::eof) {
      core->eof = true;
    } else if (ec && ec != asio::error::would_block && ec != asio::error::try_again &&
               ec != asio::error::interrupted) {
      core->read_error = ec;
    }
  }
  if (n > 0) return static_cast<int>(n);
  if (core->eof && !core->read_error) return 0;
  if (core->read_error) return -1;
  BIO_set_retry_read(bio);
  return -1;
}

inline long bio_ctrl(BIO* bio, int cmd, long /*num*/, void* /*ptr*/) {
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;
    case BIO_CTRL_EOF: {
      auto* core = static_cast<Core*>(BIO_get_data(bio));
      return core != nullptr && core->eof && !core->have_peek ? 1 : 0;
    }
    default:
      return 0;
  }
}

inline int bio_create(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

inline BIO_METHOD* bio_method() {
  static BIO_METHOD* const method = [] {
    const int index = BIO_get_new_index();
    BIO_METHOD* m = BIO_meth_new((index > 0 ? index : 0) | BIO_TYPE_SOURCE_SINK, "agora lean tls");
    if (m != nullptr) {
      BIO_meth_set_write(m, bio_write);
      BIO_meth_set_read(m, bio_read);
      BIO_meth_set_ctrl(m, bio_ctrl);
      BIO_meth_set_create(m, bio_create);
    }
    return m;
  }();
  return method;
}

inline Core::Core(beast::tcp_stream&& stream, SSL_CTX* ctx) : next(std::move(stream)) {
  ssl = SSL_new(ctx);
  BIO* bio = ssl != nullptr && bio_method() != nullptr ? BIO_new(bio_method()) : nullptr;
  if (bio == nullptr) {
    const error_code ec(static_cast<int>(ERR_get_error()), asio::error::get_ssl_category());
    if (ssl != nullptr) SSL_free(ssl);
    ssl = nullptr;
    throw boost::system::system_error(ec, "LeanTlsStream");
  }
  BIO_set_data(bio, this);
  SSL_set_bio(ssl, bio, bio);  // the SSL owns the BIO
  SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
}

// ---- the operations

enum class Kind { handshake, read, write, shutdown };

// What an operation carries besides the common state: reads their target,
// writes their plaintext (empty for the handshake and shutdown).
template <Kind K>
struct OpArgs {};
template <>
struct OpArgs<Kind::read> {
  asio::mutable_buffer in;  // where the plaintext goes
};
template <>
struct OpArgs<Kind::write> {
  asio::const_buffer data;  // the plaintext (size: what this write takes)
  std::string coalesced;    // a multi-buffer sequence copied into one record
};

// One operation: calls OpenSSL, waits for input with a one-byte read when
// it wants some, and hands what OpenSSL wrote to the socket before it
// completes. Reads and writes complete with (ec, bytes), the others with (ec).
template <Kind K>
class Op : OpArgs<K> {
  static constexpr bool kWithSize = K == Kind::read || K == Kind::write;

 public:
  Op(Core* core, OpArgs<K> args) : OpArgs<K>(std::move(args)), core_(core) {}

  template <class Self>
  void operator()(Self& self, error_code ec = {}, size_t /*n*/ = 0) {
    const Wait was = wait_;
    wait_ = Wait::none;
    switch (was) {
      case Wait::none:
        break;
      case Wait::posted:
        return complete(self, result_ec_, result_n_);
      case Wait::flush:
        cont_ = true;
        core_->writing = false;
        if (ec) {
          if (!core_->write_error) core_->write_error = ec;
        } else {
          core_->flushed += core_->sending.size();
        }
        std::string().swap(core_->sending);  // idle streams hold no buffer
        // The writer drains `out` whole, so nobody's bytes wait for a
        // writer that is gone.
        if (!core_->write_error && !core_->out.empty()) return start_flush(self);
        core_->wake_waiters();
        break;
      case Wait::peek:
        cont_ = true;
        core_->reading = false;
        core_->wake_waiters();
        if (ec == asio::error::eof) {
          core_->eof = true;
          return settle(self, core_->eof_error(), 0);
        }
        if (ec) return settle(self, ec, 0);
        core_->have_peek = true;
        break;
      case Wait::wake:
        cont_ = true;
        if (self.cancelled() != asio::cancellation_type::none) {
          return settle(self, asio::error::operation_aborted, 0);
        }
        break;
    }
    if (done_) return flush_then_complete(self);
    step(self);
  }

 private:
  enum class Wait { none, posted, flush, peek, wake };

  // Calls OpenSSL until the operation is over or must wait.
  template <class Self>
  void step(Self& self) {
    for (;;) {
      ERR_clear_error();
      int r = 0;
      size_t n = 0;
      if constexpr (K == Kind::handshake) {
        r = SSL_do_handshake(core_->ssl);
      } else if constexpr (K == Kind::read) {
        if (this->in.size() == 0) return settle(self, {}, 0);
        r = SSL_read_ex(core_->ssl, this->in.data(), this->in.size(), &n);
      } else if constexpr (K == Kind::write) {
        if (this->data.size() == 0) return settle(self, {}, 0);
        if (core_->write_error) return settle(self, core_->write_error, 0);
        // (The plaintext is looked up each time: this object moves.)
        const void* plain = this->coalesced.empty() ? this->data.data() : this->coalesced.data();
        r = SSL_write_ex(core_->ssl, plain, this->data.size(), &n);
      } else {
        r = SSL_shutdown(core_->ssl);
        // 0: our close_notify is out; call again to wait for the peer's.
        if (r == 0 && shutdown_calls_++ == 0) continue;
      }
      const int err = r == 1 ? SSL_ERROR_NONE
                      : r == 0 && K == Kind::shutdown ? SSL_ERROR_WANT_READ
                                                      : SSL_get_error(core_->ssl, r);
      switch (err) {
        case SSL_ERROR_NONE:
          return settle(self, {}, n);
        case SSL_ERROR_WANT_READ:
        case SSL_ERROR_WANT_WRITE:
          // The peer may be waiting for what OpenSSL just wrote (a write in
          // flight takes it along when it ends).
          if (!core_->out.empty() && !core_->writing) return start_flush(self);
          if (core_->write_error) return settle(self, core_->write_error, 0);
          if (err == SSL_ERROR_WANT_WRITE) {  // our BIO never refuses a write
            if (core_->writing) return wait_for_change(self);
            return settle(self, asio::ssl::error::unspecified_system_error, 0);
          }
          if (core_->reading) return wait_for_change(self);
          return start_peek(self);
        case SSL_ERROR_ZERO_RETURN:
          return settle(self, asio::error::eof, 0);
        default:
          return settle(self, failure(err), 0);
      }
    }
  }

  // What a failed OpenSSL call means, as asio::ssl::stream reports it.
  error_code failure(int err) const {
    const unsigned long code = ERR_get_error();
    ERR_clear_error();
    if (core_->read_error) return core_->read_error;
    if (core_->eof) return core_->eof_error();
    if (err == SSL_ERROR_SSL || code != 0) {
      return error_code(static_cast<int>(code), asio::error::get_ssl_category());
    }
    return asio::ssl::error::unspecified_system_error;
  }

  // The OpenSSL part is over: what it wrote up to now goes out first.
  template <class Self>
  void settle(Self& self, error_code ec, size_t n) {
    done_ = true;
    result_ec_ = ec;
    result_n_ = n;
    mark_ = core_->produced;
    flush_then_complete(self);
  }

  template <class Self>
  void flush_then_complete(Self& self) {
    if (core_->flushed >= mark_ || core_->write_error) {
      error_code ec = result_ec_;
      size_t n = result_n_;
      // A write (or handshake, shutdown) whose bytes did not go out failed.
      if (!ec && core_->flushed < mark_ && K != Kind::read) {
        ec = core_->write_error;
        n = 0;
      }
      return complete(self, ec, n);
    }
    if (core_->writing) return wait_for_change(self);
    start_flush(self);
  }

  template <class Self>
  void start_flush(Self& self) {
    core_->writing = true;
    core_->sending.swap(core_->out);
    wait_ = Wait::flush;
    asio::async_write(core_->next, asio::buffer(core_->sending), std::move(self));
  }

  template <class Self>
  void start_peek(Self& self) {
    core_->reading = true;
    wait_ = Wait::peek;
    core_->next.async_read_some(asio::buffer(&core_->peek, 1), std::move(self));
  }

  template <class Self>
  void wait_for_change(Self& self) {
    wait_ = Wait::wake;
    if (!core_->wake) {
      core_->wake = std::make_unique<asio::steady_timer>(core_->next.get_executor());
      core_->wake->expires_at(asio::steady_timer::time_point::max());
    }
    core_->wake->async_wait(std::move(self));
  }

  template <class Self>
  void complete(Self& self, error_code ec, size_t n) {
    if (!cont_) {
      // Never complete inside the initiating call.
      cont_ = true;
      result_ec_ = ec;
      result_n_ = n;
      wait_ = Wait::posted;
      auto ex = core_->next.get_executor();
      asio::post(ex, std::move(self));
      return;
    }
    if constexpr (kWithSize) {
      self.complete(ec, n);
    } else {
      self.complete(ec);
    }
  }

  Core* core_;
  Wait wait_ = Wait::none;
  bool cont_ = false;          // an intermediate operation ran (completion need not be posted)
  bool done_ = false;          // OpenSSL is done; only the flush is left
  int shutdown_calls_ = 0;
  uint64_t mark_ = 0;          // `produced` this operation must see flushed
  error_code result_ec_;
  size_t result_n_ = 0;
};

}  // namespace lean_tls

class LeanTlsStream {
 public:
  using next_layer_type = boost::beast::tcp_stream;
  using executor_type = next_layer_type::executor_type;
  using native_handle_type = SSL*;

  // A server or client stream on an open or to-be-connected TCP stream.
  // Throws boost::system::system_error when OpenSSL cannot allocate.
  LeanTlsStream(next_layer_type&& next, boost::asio::ssl::context& context)
      : core_(std::make_unique<lean_tls::Core>(std::move(next), context.native_handle())) {}

  LeanTlsStream(LeanTlsStream&&) noexcept = default;
  LeanTlsStream& operator=(LeanTlsStream&&) noexcept = default;

  executor_type get_executor() noexcept { return core_->next.get_executor(); }
  next_layer_type& next_layer() noexcept { return core_->next; }
  const next_layer_type& next_layer() const noexcept { return core_->next; }
  SSL* native_handle() noexcept { return core_->ssl; }

  // Completes with (error_code).
  template <class Token>
  auto async_handshake(boost::asio::ssl::stream_base::handshake_type type, Token&& token) {
    if (type == boost::asio::ssl::stream_base::client) {
      SSL_set_connect_state(core_->ssl);
    } else {
      SSL_set_accept_state(core_->ssl);
    }
    return boost::asio::async_compose<Token, void(boost::system::error_code)>(
        lean_tls::Op<lean_tls::Kind::handshake>(core_.get(), {}), token, core_->next);
  }

  // Completes with (error_code, bytes read): plaintext into the first
  // non-empty buffer of `buffers`.
  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    boost::asio::mutable_buffer first;
    for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers);
         ++it) {
      first = boost::asio::mutable_buffer(*it);
      if (first.size() > 0) break;
    }
    return boost::asio::async_compose<Token, void(boost::system::error_code, std::size_t)>(
        lean_tls::Op<lean_tls::Kind::read>(core_.get(), {first}), token, core_->next);
  }

  // Completes with (error_code, bytes written): at most kMaxWrite bytes,
  // one TLS record, once its bytes are handed to the socket.
  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    const size_t want = std::min(boost::asio::buffer_size(buffers), lean_tls::kMaxWrite);
    boost::asio::const_buffer first;
    for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers);
         ++it) {
      first = boost::asio::const_buffer(*it);
      if (first.size() > 0) break;
    }
    std::string coalesced;
    if (first.size() < want) {
      coalesced.resize(want);
      boost::asio::buffer_copy(boost::asio::buffer(coalesced), buffers);
      first = boost::asio::buffer(coalesced.data(), want);
    } else {
      first = boost::asio::buffer(first.data(), want);
    }
    return boost::asio::async_compose<Token, void(boost::system::error_code, std::size_t)>(
        lean_tls::Op<lean_tls::Kind::write>(core_.get(), {first, std::move(coalesced)}), token, core_->next);
  }

  // Sends close_notify and waits for the peer's. Completes with (error_code).
  template <class Token>
  auto async_shutdown(Token&& token) {
    return boost::asio::async_compose<Token, void(boost::system::error_code)>(
        lean_tls::Op<lean_tls::Kind::shutdown>(core_.get(), {}), token, core_->next);
  }

 private:
  std::unique_ptr<lean_tls::Core> core_;
};

namespace lean_tls {

// beast's SSL teardown: close_notify, then the TCP teardown.
class TeardownOp {
 public:
  TeardownOp(LeanTlsStream& stream, beast::role_type role) : stream_(&stream), role_(role) {}

  template <class Self>
  void operator()(Self& self, error_code ec = {}) {
    switch (state_) {
      case 0:
        state_ = 1;
        return stream_->async_shutdown(std::move(self));
      case 1: {
        state_ = 2;
        first_ = ec;
        using beast::websocket::async_teardown;
        return async_teardown(role_, stream_->next_layer(), std::move(self));
      }
      default:
        self.complete(first_ ? first_ : ec);
    }
  }

 private:
  LeanTlsStream* stream_;
  beast::role_type role_;
  int state_ = 0;
  error_code first_;
};

}  // namespace lean_tls

// Found by beast::websocket::stream (argument-dependent lookup).
template <class Handler>
void async_teardown(boost::beast::role_type role, LeanTlsStream& stream, Handler&& handler) {
  boost::asio::async_compose<Handler, void(boost::system::error_code)>(lean_tls::TeardownOp(stream, role), handler,
                                                                         stream);
}

}  // namespace agora::net
