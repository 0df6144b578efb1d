// Result<T>: a value or an Error, for every fallible call on the request path.
// Errors are values (never exceptions) so that bad input can never unwind
// through the engine thread or an I/O coroutine.
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace agora {

enum class Errc {
  invalid_argument,  // the caller's input is wrong (maps to HTTP 400)
  not_found,         // a file, model or id does not exist (404)
  io_error,          // the OS refused a read or write
  corrupt,           // a file exists but is not what it claims (bad GGUF, ...)
  too_large,         // over a configured bound (prompt longer than the context, ...)
  unavailable,       // no capacity right now; retrying later may work (503)
  cancelled,         // the operation was cancelled
  unsupported,       // valid, but not something this build can do
  internal,          // a bug or an unexpected library failure
};

std::string_view errc_name(Errc code);

struct Error {
  Errc code;
  std::string message;

  std::string to_string() const;
};

inline Error make_error(Errc code, std::string message) { return Error{code, std::move(message)}; }

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const { assert(!ok()); return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// Result<void>: success or an Error.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT: implicit by design

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { assert(!ok_); return error_; }

 private:
  Error error_{Errc::internal, {}};
  bool ok_ = true;
};

inline Status ok_status() { return {}; }

}  // namespace agora
