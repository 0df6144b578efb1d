// SIGINT/SIGTERM handling for the long-running commands (gateway, node, up):
// the first signal asks for a graceful stop, a second one forces it.
#pragma once

#include <boost/asio/io_context.hpp>

#include <functional>

namespace agora::cli {

// Installs the handlers on `io`: `graceful` runs on the first signal (on the
// io_context's thread) and must let the loop run out of work; a second
// signal ends the process at once (the default action).
void on_stop_signals(boost::asio::io_context& io, std::function<void()> graceful);

}  // namespace agora::cli
