// agora-idle-nodes: opens N idle provider-node connections to a gateway and
// holds them, for measuring the gateway's memory per idle node connection.
// See bench/idle/README.md.
//
// Output: progress on stderr about once a second; on stdout one summary
// when every set-up has finished ("phase":"connected") and one when the run
// ends ("phase":"final"), as JSON lines with --json.
// Exit status: 0 when every connection was welcomed and none was dropped,
// 1 otherwise, 2 when the run could not start (bad options, CA file, host).
#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <cmath>
#include <cstdio>
#include <string>

#include "idle_runner.h"

namespace {

using agora::idle::IdleOptions;
using agora::idle::IdleProgress;
using agora::idle::IdleResults;

boost::json::object to_json(const char* phase, const IdleProgress& p, const IdleResults* r, uint64_t count) {
  boost::json::object o{{"phase", phase},         {"count", count},       {"attempted", p.attempted},
                        {"welcomed", p.welcomed}, {"failed", p.failed},   {"open", p.open},
                        {"dropped", p.dropped},   {"elapsed_ms", std::llround(p.elapsed_s * 1000)}};
  if (r != nullptr) {
    boost::json::object errs, examples;
    for (const auto& [kind, n] : r->errors) errs[kind] = n;
    for (const auto& [kind, m] : r->error_examples) examples[kind] = m;
    o["errors_by_kind"] = std::move(errs);
    o["error_examples"] = std::move(examples);
    o["setup_ms"] = std::llround(r->setup_s * 1000);
    o["fd_limit"] = r->fd_limit;
    o["fd_hard_limit"] = r->fd_hard;
    o["sources"] = r->sources;
    o["frames_after_welcome"] = r->frames;
  }
  return o;
}

void print_text(const char* phase, const IdleProgress& p, const IdleResults* r, uint64_t count) {
  std::printf("agora-idle-nodes %s: %llu/%llu welcomed, %llu failed, %llu open, %llu dropped, %.2f s\n", phase,
              static_cast<unsigned long long>(p.welcomed), static_cast<unsigned long long>(count),
              static_cast<unsigned long long>(p.failed), static_cast<unsigned long long>(p.open),
              static_cast<unsigned long long>(p.dropped), p.elapsed_s);
  if (r == nullptr) return;
  for (const auto& [kind, n] : r->errors) {
    const auto it = r->error_examples.find(kind);
    std::printf("  error %-9s %llu  (first: %s)\n", kind.c_str(), static_cast<unsigned long long>(n),
                it == r->error_examples.end() ? "" : it->second.c_str());
  }
  std::printf("  set-up %.2f s, %u source address(es), RLIMIT_NOFILE %llu (hard %llu)\n", r->setup_s, r->sources,
              static_cast<unsigned long long>(r->fd_limit), static_cast<unsigned long long>(r->fd_hard));
}

}  // namespace

int main(int argc, char** argv) {
  IdleOptions opt;
  bool json = false;
  CLI::App app{"agora-idle-nodes: open and hold N idle provider-node WebSocket connections to a gateway"};
  app.add_option("--url", opt.url, "wss://HOST:PORT/v1/node")->required();
  app.add_option("--token", opt.token, "Provider token (pt_…), sent as Authorization: Bearer TOKEN")->required();
  app.add_option("--ca-cert", opt.ca_cert, "Trust only this CA file (default: system roots)");
  app.add_option("--count", opt.count, "Connections to open")->capture_default_str();
  app.add_option("--concurrency", opt.concurrency, "Set-ups (TCP + TLS + upgrade + hello) in flight")
      ->capture_default_str();
  app.add_option("--model", opt.model, "Model name each node advertises")->capture_default_str();
  app.add_option("--node-prefix", opt.node_prefix, "Node ids are PREFIX<index> (default idle-<pid>-)");
  app.add_option("--hold", opt.hold_s, "Seconds to hold the connections after set-up (default: until a signal)");
  app.add_option("--timeout", opt.timeout_s, "Seconds per set-up, connect to welcome")->capture_default_str();
  app.add_option("--sources", opt.sources,
                 "Local addresses to spread over, from --source-base (0: automatic, 25,000 per address)")
      ->capture_default_str();
  app.add_option("--source-base", opt.source_base, "First local address when --sources > 1")->capture_default_str();
  app.add_flag("--json", json, "Print JSON lines instead of text");
  CLI11_PARSE(app, argc, argv);

  const uint64_t count = opt.count;
  opt.on_progress = [json, count](const IdleResults& r, bool done) {
    const IdleProgress& p = r.progress;
    std::fprintf(stderr, "agora-idle-nodes: %llu/%llu attempted, %llu welcomed, %llu failed, %llu open (%.1f s)\n",
                 static_cast<unsigned long long>(p.attempted), static_cast<unsigned long long>(count),
                 static_cast<unsigned long long>(p.welcomed), static_cast<unsigned long long>(p.failed),
                 static_cast<unsigned long long>(p.open), p.elapsed_s);
    if (!done) return;
    if (json) std::printf("%s\n", boost::json::serialize(to_json("connected", p, &r, count)).c_str());
    else print_text("connected", p, &r, count);
    std::fflush(stdout);
  };

  auto result = agora::idle::run_idle_nodes(opt);
  if (!result) {
    std::fprintf(stderr, "agora-idle-nodes: %s\n", result.error().message.c_str());
    return 2;
  }
  const IdleResults& r = *result;
  if (json) std::printf("%s\n", boost::json::serialize(to_json("final", r.progress, &r, count)).c_str());
  else print_text("final", r.progress, &r, count);
  std::fflush(stdout);
  return r.progress.welcomed == count && r.progress.dropped == 0 ? 0 : 1;
}
