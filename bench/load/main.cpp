// agora-load: open-loop, fixed-rate HTTP load generator for the gateway
// benchmark. See bench/load/README.md for usage and what it measures.
//
// Exit status: 0 when every measured request succeeded, 1 when any failed,
// 2 when the run could not start (bad options, CA file, host).
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "load_runner.h"

namespace {

using agora::load::LoadOptions;
using agora::load::LoadResults;
using agora::load::Percentiles;

double seconds_of(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
}

boost::json::object to_json(const Percentiles& p, double scale) {
  auto v = [scale](int64_t x) { return static_cast<double>(x) / scale; };
  return {{"count", p.count}, {"p50", v(p.p50)},   {"p90", v(p.p90)},
          {"p99", v(p.p99)},  {"p999", v(p.p999)}, {"max", v(p.max)},
          {"mean", p.mean / scale}};
}

void print_row(const char* name, const Percentiles& p, double scale, const char* unit) {
  auto v = [scale](int64_t x) { return static_cast<double>(x) / scale; };
  std::printf("  %-12s p50 %9.3f  p90 %9.3f  p99 %9.3f  p99.9 %9.3f  max %9.3f %s  (n=%zu)\n", name,
              v(p.p50), v(p.p90), v(p.p99), v(p.p999), v(p.max), unit, p.count);
}

}  // namespace

int main(int argc, char** argv) {
  LoadOptions opt;
  bool json = false;
  uint64_t requests = 0;
  std::vector<std::string> headers;
  CLI::App app{"agora-load: open-loop fixed-rate HTTP load generator (latency from the scheduled time)"};
  app.add_option("--url", opt.url, "https://HOST:PORT/v1/chat/completions (http:// for a plain peer)")
      ->required();
  app.add_option("--api-key", opt.api_key, "API key, sent as Authorization: Bearer KEY");
  app.add_option("--ca-cert", opt.ca_cert, "Trust only this CA file (default: system roots)");
  app.add_option("--model", opt.model, "Model name in the request")->capture_default_str();
  app.add_option("--prompt", opt.prompt, "User message content")->capture_default_str();
  app.add_option("--rate", opt.rate, "Scheduled requests per second (open loop)")->capture_default_str();
  auto* duration = app.add_option("--duration", opt.duration_s, "Measured seconds (after warm-up)")
                       ->capture_default_str();
  auto* count = app.add_option("--requests", requests, "Measured requests (instead of --duration)");
  duration->excludes(count);
  app.add_option("--warmup", opt.warmup_s, "Seconds of load before the measured window")
      ->capture_default_str();
  app.add_option("--connections", opt.connections, "Keep-alive connections in the pool")
      ->capture_default_str();
  app.add_flag("--stream", opt.stream, "Stream (SSE): also measure time to first content chunk");
  app.add_option("--max-tokens", opt.max_tokens, "max_tokens in the request")->capture_default_str();
  app.add_option("--timeout", opt.timeout_s, "Per-request timeout in seconds")->capture_default_str();
  app.add_option("--header", headers, "Extra request header 'Name: value' (repeatable; replaces a default one)");
  app.add_flag("--json", json, "Print a JSON summary instead of text");
  CLI11_PARSE(app, argc, argv);
  if (count->count() > 0) opt.requests = requests;
  for (const auto& line : headers) {
    auto header = agora::load::parse_header(line);
    if (!header) {
      std::fprintf(stderr, "agora-load: %s\n", header.error().message.c_str());
      return 2;
    }
    opt.headers.push_back(std::move(*header));
  }

  const auto wall_start = std::chrono::steady_clock::now();
  auto result = agora::load::run_load(opt);
  const double wall_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  if (!result) {
    std::fprintf(stderr, "agora-load: %s\n", result.error().message.c_str());
    return 2;
  }
  LoadResults& r = *result;
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  const double user_s = seconds_of(ru.ru_utime);
  const double sys_s = seconds_of(ru.ru_stime);
  const double cpu_percent = wall_s > 0 ? 100.0 * (user_s + sys_s) / wall_s : 0;
  uint64_t errors = 0;
  for (const auto& [kind, n] : r.errors) errors += n;
  const double achieved = r.window_s > 0 ? static_cast<double>(r.ok + errors) / r.window_s : 0;
  const Percentiles lat = r.latency_us.summarize();
  const Percentiles ttft = r.ttft_us.summarize();
  const Percentiles overhead = r.overhead_us.summarize();

  if (json) {
    boost::json::object errs, examples;
    for (const auto& [kind, n] : r.errors) errs[kind] = n;
    for (const auto& [kind, m] : r.error_examples) examples[kind] = m;
    boost::json::object o{{"url", opt.url},
                          {"stream", opt.stream},
                          {"target_rate", r.target_rate},
                          {"connections", opt.connections},
                          {"sent", r.sent},
                          {"ok", r.ok},
                          {"errors", errors},
                          {"errors_by_kind", errs},
                          {"error_examples", examples},
                          {"achieved_rate", achieved},
                          {"window_s", r.window_s},
                          {"latency_ms", to_json(lat, 1000.0)},
                          {"connects", r.connects},
                          {"retries", r.retries},
                          {"max_dispatch_lag_ms", r.max_dispatch_lag_us / 1000.0},
                          {"cpu", {{"user_s", user_s}, {"sys_s", sys_s}, {"wall_s", wall_s},
                                   {"percent", cpu_percent}}}};
    if (overhead.count > 0) o["overhead_us"] = to_json(overhead, 1.0);
    if (opt.stream) {
      o["ttft_ms"] = to_json(ttft, 1000.0);
      o["chunks"] = r.chunks;
    }
    std::printf("%s\n", boost::json::serialize(o).c_str());
  } else {
    std::printf("agora-load %s  rate %.0f/s  connections %u%s\n", opt.url.c_str(), r.target_rate,
                opt.connections, opt.stream ? "  stream" : "");
    std::printf("  sent %llu  ok %llu  errors %llu  achieved %.1f req/s over %.2f s\n",
                static_cast<unsigned long long>(r.sent), static_cast<unsigned long long>(r.ok),
                static_cast<unsigned long long>(errors), achieved, r.window_s);
    for (const auto& [kind, n] : r.errors) {
      std::printf("  error %-10s %llu  (e.g. %s)\n", kind.c_str(), static_cast<unsigned long long>(n),
                  r.error_examples[kind].c_str());
    }
    print_row("latency", lat, 1000.0, "ms");
    if (opt.stream) {
      print_row("ttft", ttft, 1000.0, "ms");
      std::printf("  chunks       %llu (%.1f per ok response)\n", static_cast<unsigned long long>(r.chunks),
                  r.ok > 0 ? static_cast<double>(r.chunks) / static_cast<double>(r.ok) : 0.0);
    }
    if (overhead.count > 0) print_row("overhead", overhead, 1.0, "us (x-agora-overhead-us)");
    std::printf("  connects %llu  retries %llu  max scheduler lag %.3f ms\n",
                static_cast<unsigned long long>(r.connects), static_cast<unsigned long long>(r.retries),
                r.max_dispatch_lag_us / 1000.0);
    std::printf("  generator CPU: user %.2f s  sys %.2f s  = %.1f%% of one core over %.2f s\n", user_s,
                sys_s, cpu_percent, wall_s);
  }
  return r.ok == r.sent && errors == 0 ? 0 : 1;
}
