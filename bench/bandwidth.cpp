// agora_bandwidth: this machine's sequential memory read bandwidth, for the
// decode roofline (issue 4): decode tok/s can be at most bandwidth ÷ bytes of
// weights read per token.
//
// Sums the 64-bit words of a buffer much larger than the last-level cache,
// split into equal contiguous chunks over 1 and N threads; reports the best of
// several runs in GB/s (10^9 bytes per second). The buffer holds 0, 1, 2, ...
// so the sum is known: a wrong sum (a read that did not happen) exits 1.
//
//   agora_bandwidth [--bytes 1G] [--threads 1,2] [--repeat 5] [--json]
#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

struct Options {
  uint64_t bytes = uint64_t{1} << 30;
  std::vector<unsigned> threads;  // empty: 1 and every hardware thread
  int repeat = 5;
  bool json = false;
};

constexpr uint64_t kMinBytes = uint64_t{1} << 20;
constexpr uint64_t kMaxBytes = uint64_t{1} << 40;
constexpr unsigned kMaxThreads = 1024;
constexpr int kMaxRepeat = 1000;

void usage(std::FILE* to) {
  std::fputs(
      "usage: agora_bandwidth [--bytes SIZE] [--threads N[,N...]] [--repeat R] [--json]\n"
      "  --bytes SIZE   buffer size, with an optional K, M or G suffix (powers of 1024); default "
      "1G\n"
      "  --threads LIST thread counts to measure; default 1 and the number of hardware threads\n"
      "  --repeat R     runs per thread count, the best is reported; default 5\n"
      "  --json         print one JSON object instead of a table\n",
      to);
}

bool parse_u64(std::string_view s, uint64_t& out) {
  const char* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, out);
  return ec == std::errc{} && p == end;
}

bool parse_size(std::string_view s, uint64_t& out) {
  uint64_t mult = 1;
  if (!s.empty()) {
    switch (s.back()) {
      case 'K':
      case 'k':
        mult = uint64_t{1} << 10;
        break;
      case 'M':
      case 'm':
        mult = uint64_t{1} << 20;
        break;
      case 'G':
      case 'g':
        mult = uint64_t{1} << 30;
        break;
      default:
        break;
    }
    if (mult != 1) s.remove_suffix(1);
  }
  uint64_t n = 0;
  if (!parse_u64(s, n) || n > kMaxBytes / mult) return false;
  out = n * mult;
  return true;
}

bool parse_threads(std::string_view s, std::vector<unsigned>& out) {
  out.clear();
  while (!s.empty()) {
    const size_t comma = s.find(',');
    uint64_t n = 0;
    if (!parse_u64(s.substr(0, comma), n) || n == 0 || n > kMaxThreads) return false;
    out.push_back(static_cast<unsigned>(n));
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
    if (s.empty()) return false;
  }
  return !out.empty();
}

// Returns false (after printing why) on a bad command line.
bool parse_args(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&](std::string_view& v) {
      if (i + 1 >= argc) return false;
      v = argv[++i];
      return true;
    };
    std::string_view v;
    uint64_t n = 0;
    if (a == "--json") {
      o.json = true;
    } else if (a == "--help" || a == "-h") {
      usage(stdout);
      std::exit(0);
    } else if (a == "--bytes") {
      if (!value(v) || !parse_size(v, o.bytes) || o.bytes < kMinBytes) {
        std::fprintf(stderr, "agora_bandwidth: --bytes wants a size from 1M to 1024G\n");
        return false;
      }
    } else if (a == "--threads") {
      if (!value(v) || !parse_threads(v, o.threads)) {
        std::fprintf(stderr, "agora_bandwidth: --threads wants a list like 1,2 (each 1..%u)\n",
                     kMaxThreads);
        return false;
      }
    } else if (a == "--repeat") {
      if (!value(v) || !parse_u64(v, n) || n == 0 || n > kMaxRepeat) {
        std::fprintf(stderr, "agora_bandwidth: --repeat wants 1..%d\n", kMaxRepeat);
        return false;
      }
      o.repeat = static_cast<int>(n);
    } else {
      std::fprintf(stderr, "agora_bandwidth: unknown argument '%s'\n", argv[i]);
      usage(stderr);
      return false;
    }
  }
  return true;
}

// The read kernel: eight independent accumulators so the loop vectorises
// (SSE2 baseline; an AVX2 clone where GCC/Clang can dispatch at run time).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("avx2", "default")))
#endif
uint64_t
sum_words(const uint64_t* p, size_t n) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    s0 += p[i];
    s1 += p[i + 1];
    s2 += p[i + 2];
    s3 += p[i + 3];
    s4 += p[i + 4];
    s5 += p[i + 5];
    s6 += p[i + 6];
    s7 += p[i + 7];
  }
  for (; i < n; ++i) s0 += p[i];
  return s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
}

struct Chunk {
  size_t begin = 0;
  size_t end = 0;
};

std::vector<Chunk> split(size_t words, unsigned parts) {
  std::vector<Chunk> out(parts);
  for (unsigned t = 0; t < parts; ++t) {
    out[t].begin = words * t / parts;
    out[t].end = words * (t + 1) / parts;
  }
  return out;
}

struct Run {
  double seconds = 0;
  uint64_t sum = 0;
};

// One timed pass over the whole buffer with `threads` threads. The threads
// are created first and released together; the clock covers only the reads.
Run timed_pass(const uint64_t* buf, size_t words, unsigned threads) {
  const auto chunks = split(words, threads);
  std::vector<uint64_t> sums(threads, 0);
  std::atomic<unsigned> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      ready.fetch_add(1, std::memory_order_acq_rel);
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      sums[t] = sum_words(buf + chunks[t].begin, chunks[t].end - chunks[t].begin);
    });
  }
  while (ready.load(std::memory_order_acquire) < threads) std::this_thread::yield();
  const auto t0 = std::chrono::steady_clock::now();
  go.store(true, std::memory_order_release);
  for (auto& th : pool) th.join();
  const auto t1 = std::chrono::steady_clock::now();
  Run r;
  r.seconds = std::chrono::duration<double>(t1 - t0).count();
  for (uint64_t s : sums) r.sum += s;
  return r;
}

// Fills buf[i] = i, each thread its own chunk (first touch places the pages
// near the threads that will read them).
void fill(uint64_t* buf, size_t words, unsigned threads) {
  const auto chunks = split(words, threads);
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([buf, c = chunks[t]] {
      for (size_t i = c.begin; i < c.end; ++i) buf[i] = i;
    });
  }
  for (auto& th : pool) th.join();
}

struct Result {
  unsigned threads = 0;
  std::vector<double> gbps;  // one per run
  double best() const { return *std::max_element(gbps.begin(), gbps.end()); }
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse_args(argc, argv, o)) return 2;
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  if (o.threads.empty()) {
    o.threads = {1};
    if (hw > 1) o.threads.push_back(hw);
  }

  const size_t words = o.bytes / sizeof(uint64_t);
  const size_t bytes = words * sizeof(uint64_t);
  struct FreeDeleter {
    void operator()(uint64_t* p) const { std::free(p); }
  };
  constexpr size_t kAlign = 4096;
  std::unique_ptr<uint64_t, FreeDeleter> buf(
      static_cast<uint64_t*>(std::aligned_alloc(kAlign, (bytes + kAlign - 1) / kAlign * kAlign)));
  if (!buf) {
    std::fprintf(stderr, "agora_bandwidth: cannot allocate %zu bytes\n", bytes);
    return 1;
  }
  fill(buf.get(), words, *std::max_element(o.threads.begin(), o.threads.end()));
  // 0 + 1 + ... + (words - 1), modulo 2^64 like the sums themselves.
  const uint64_t expected = words % 2 == 0 ? (words / 2) * (words - 1) : words * ((words - 1) / 2);

  std::vector<Result> results;
  for (unsigned threads : o.threads) {
    Result res;
    res.threads = threads;
    (void)timed_pass(buf.get(), words, threads);  // warm-up: page tables, thread start-up
    for (int i = 0; i < o.repeat; ++i) {
      const Run run = timed_pass(buf.get(), words, threads);
      if (run.sum != expected) {
        std::fprintf(stderr, "agora_bandwidth: wrong sum %llu, expected %llu\n",
                     static_cast<unsigned long long>(run.sum),
                     static_cast<unsigned long long>(expected));
        return 1;
      }
      res.gbps.push_back(static_cast<double>(bytes) / run.seconds / 1e9);
    }
    results.push_back(std::move(res));
  }

  if (o.json) {
    std::printf("{\"bytes\": %zu, \"repeat\": %d, \"hardware_threads\": %u, \"results\": [", bytes,
                o.repeat, hw);
    for (size_t i = 0; i < results.size(); ++i) {
      const Result& r = results[i];
      std::printf("%s{\"threads\": %u, \"best_gbps\": %.3f, \"runs_gbps\": [", i ? ", " : "",
                  r.threads, r.best());
      for (size_t j = 0; j < r.gbps.size(); ++j) std::printf("%s%.3f", j ? ", " : "", r.gbps[j]);
      std::printf("]}");
    }
    std::printf("]}\n");
  } else {
    std::printf("sequential read of %.1f MiB, best of %d runs\n",
                static_cast<double>(bytes) / (1 << 20), o.repeat);
    std::printf("%8s  %12s  %12s\n", "threads", "best GB/s", "worst GB/s");
    for (const Result& r : results) {
      std::printf("%8u  %12.2f  %12.2f\n", r.threads, r.best(),
                  *std::min_element(r.gbps.begin(), r.gbps.end()));
    }
  }
  return 0;
}
