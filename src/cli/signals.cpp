#include "cli/signals.h"

#include <boost/asio/signal_set.hpp>

#include <csignal>
#include <memory>

namespace agora::cli {

void on_stop_signals(boost::asio::io_context& io, std::function<void()> graceful) {
  auto signals = std::make_shared<boost::asio::signal_set>(io, SIGINT, SIGTERM);
  signals->async_wait([signals, graceful = std::move(graceful)](
                          const boost::system::error_code& ec, int) {
    if (ec) return;
    // Stop waiting, so the loop can end once the graceful stop is done; a
    // second signal then gets the default action and ends the process.
    boost::system::error_code ignored;
    signals->cancel(ignored);
    signals->clear(ignored);
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    graceful();
  });
}

}  // namespace agora::cli
