// The one way the code starts a coroutine: asio::co_spawn with a completion
// handler that logs an exception escaping it (by name), instead of
// asio::detached, which would lose it silently.
#pragma once

#include <boost/asio/co_spawn.hpp>
#include <spdlog/spdlog.h>

#include <exception>
#include <utility>

#include "common/log.h"

namespace agora::net {

// The completion handler: logs `coroutine_crashed what=… error=…`.
inline auto log_escaped(const char* what) {
  return [what](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      spdlog::error("coroutine_crashed what={} error={}", what, logfmt_value(x.what()));
    } catch (...) {
      spdlog::error("coroutine_crashed what={} error=unknown", what);
    }
  };
}

template <class Executor, class Awaitable>
void spawn(Executor&& ex, Awaitable&& coroutine, const char* what) {
  boost::asio::co_spawn(std::forward<Executor>(ex), std::forward<Awaitable>(coroutine), log_escaped(what));
}

}  // namespace agora::net
