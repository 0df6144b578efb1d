// The I/O shell of agora-idle-nodes: opens many provider-node WebSocket
// connections to a gateway (TLS, `Authorization: Bearer <provider token>`,
// a `hello` advertising one fake model, then waits for `welcome`) and keeps
// them open and idle, answering the gateway's WebSocket pings, so that the
// gateway's memory per idle node connection can be measured
// (bench/idle/measure.sh, docs/BENCHMARKS.md).
//
// Threading: run_idle_nodes() runs everything on one io_context in the
// calling thread. It returns when the hold ends: after `hold_s` seconds
// once every connection has been attempted, or at SIGINT/SIGTERM.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "common/result.h"

namespace agora::idle {

struct IdleResults;

struct IdleOptions {
  std::string url;               // wss://HOST:PORT/v1/node
  std::string token;             // provider token (pt_…)
  std::string ca_cert;           // trust only this CA file; empty: system roots
  uint64_t count = 1000;         // connections to open
  unsigned concurrency = 128;    // connection set-ups (TCP + TLS + upgrade + hello) in flight
  std::string model = "idle-fake";  // the model each node advertises (a name no client asks for)
  std::string node_prefix;       // node ids are <prefix><index>; empty: "idle-<pid>-"
  double hold_s = -1;            // seconds to hold once all are attempted; < 0: until a signal
  double timeout_s = 30;         // per connection set-up, connect to welcome
  // Local addresses to spread connections over (bind before connect), each
  // with its own ephemeral port range: source_base, source_base+1, ...
  // 0: one when count <= 25,000 or the target is not IPv4 loopback; else
  // enough 127.0.0.x addresses for 25,000 connections each.
  unsigned sources = 0;
  std::string source_base = "127.0.0.1";
  // Called on the run's thread about once a second, and once when every
  // set-up has finished (done == true).
  std::function<void(const IdleResults&, bool done)> on_progress;
};

struct IdleProgress {
  uint64_t attempted = 0;  // connection set-ups started
  uint64_t welcomed = 0;   // got a welcome (the gateway registered the node)
  uint64_t failed = 0;     // set-up failed (see errors)
  uint64_t open = 0;       // welcomed and still open now
  uint64_t dropped = 0;    // welcomed, then closed by the gateway or the network
  double elapsed_s = 0;    // since the run started
};

struct IdleResults {
  IdleProgress progress;
  double setup_s = 0;  // start -> the last set-up finished
  std::map<std::string, uint64_t> errors;              // kind -> count
  std::map<std::string, std::string> error_examples;   // kind -> first message
  uint64_t fd_limit = 0;   // RLIMIT_NOFILE soft limit in effect (after raising it)
  uint64_t fd_hard = 0;    // RLIMIT_NOFILE hard limit
  unsigned sources = 1;    // local addresses used
  uint64_t frames = 0;     // frames received after welcome (an idle node expects none)
};

// Raises this process's RLIMIT_NOFILE soft limit to the hard limit. Returns
// {soft, hard} after the change (unchanged when it could not be raised).
std::pair<uint64_t, uint64_t> raise_fd_limit();

// Runs the connections. `stop` (on the run's thread, e.g. from a signal
// handler posted there) is not needed: SIGINT/SIGTERM end the hold.
// Errors (before any connection): invalid_argument (a bad URL or option),
// not_found/corrupt (the CA file), unavailable (the host does not resolve).
Result<IdleResults> run_idle_nodes(const IdleOptions& options);

}  // namespace agora::idle
