// The I/O shell of agora-load: an open-loop, fixed-rate HTTP/1.1 load run
// over a pool of keep-alive connections (TLS for https URLs, plain TCP for
// http ones, e.g. a peer gateway).
//
// Open loop: request i is scheduled at t0 + i / rate whatever the responses
// do, and its latency is measured from that scheduled time, so a slow server
// cannot slow the generator down and hide its own slowness (no coordinated
// omission). A scheduled request waits in a FIFO for a free connection; that
// wait is part of its latency.
//
// Threading: run_load() runs everything on one io_context in the calling
// thread and returns when every scheduled request has finished (answered,
// failed or timed out).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/result.h"
#include "load_stats.h"

namespace agora::load {

struct LoadOptions {
  std::string url;           // http(s)://host:port/path
  std::string api_key;       // sent as "Authorization: Bearer <key>" when non-empty
  std::string ca_cert;       // trust only this CA file (https); empty: system roots
  std::string model = "fake";
  std::string prompt = "Hello!";
  double rate = 100;         // scheduled requests per second, > 0
  double duration_s = 10;    // measured window, used when `requests` is unset
  std::optional<uint64_t> requests;  // measured requests (instead of duration)
  double warmup_s = 0;       // requests scheduled before the window, not recorded
  unsigned connections = 64; // pool size, >= 1
  bool stream = false;       // "stream": true, read SSE
  unsigned max_tokens = 16;
  double timeout_s = 30;     // per request, from taking a connection to the last byte
  // Extra request headers (name, value), set after the defaults above, so
  // one may replace them (e.g. Authorization). E.g. a peer gateway's routing
  // headers.
  std::vector<std::pair<std::string, std::string>> headers;
};

// What happened during the measured window (warm-up requests excluded).
struct LoadResults {
  uint64_t sent = 0;  // measured requests scheduled (each ends ok or as one error)
  uint64_t ok = 0;
  std::map<std::string, uint64_t> errors;        // kind -> count
  std::map<std::string, std::string> error_examples;  // kind -> first message
  Samples latency_us;   // end-to-end, from the scheduled time
  Samples ttft_us;      // --stream: scheduled time -> first content chunk
  Samples overhead_us;  // the x-agora-overhead-us response header, when present
  uint64_t chunks = 0;  // --stream: content chunks over all ok responses
  double window_s = 0;  // measured window start -> last measured completion
  double target_rate = 0;
  uint64_t connects = 0;  // connections opened (including warm-up)
  uint64_t retries = 0;   // requests retried once on a reused connection the server had closed
  double max_dispatch_lag_us = 0;  // how late the scheduler itself ran, at worst
};

// Parses a --header argument "Name: value" (spaces around the value are
// trimmed). Errors: invalid_argument when there is no ':', the name is empty or
// not an HTTP token, or the value holds a CR, LF or NUL.
Result<std::pair<std::string, std::string>> parse_header(std::string_view line);

// Runs the load. Errors (before any request is sent): invalid_argument (a bad
// URL, option or header), not_found/corrupt (the CA file), unavailable (the
// host does not resolve).
Result<LoadResults> run_load(const LoadOptions& options);

}  // namespace agora::load
