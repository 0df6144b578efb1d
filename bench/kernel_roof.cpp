// agora_kernel_roof: how fast llama.cpp's CPU kernels consume quantised
// weights in a decode-shaped matrix-vector product, with the weights in the
// core's cache and with them streamed from memory (issue 4, roofline).
//
// Single-stream decode is y = W·x for every weight matrix W: each weight
// byte is read once per token. If a kernel processes weights no faster from
// cache than from DRAM, it is compute-bound there, and no node can reach the
// memory-bandwidth roofline with that weight type on this CPU: the ceiling is
// the kernel's own rate. This program measures both, per weight type and
// thread count, through ggml's public graph API (the code the node runs).
//
//   agora_kernel_roof [--types q4_K,q6_K,q8_0] [--threads 1,2] [--cache-bytes 1M]
//                     [--dram-bytes 768M] [--repeat 5] [--json]
//
// Cache: a ~1 MiB matrix (fits this machine's per-core L2), multiplied 64
// times per graph so that one compute call amortises ggml's fixed costs.
// DRAM: a matrix far larger than the last-level cache, multiplied once per
// call. GB/s = weight bytes ÷ seconds (best of --repeat). The product is
// checked against a float reference on the first rows, so a kernel that
// skipped work exits 1.
#include <ggml-alloc.h>
#include <ggml-backend.h>
#include <ggml-cpu.h>
#include <ggml.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct Options {
  std::vector<ggml_type> types{GGML_TYPE_Q4_K, GGML_TYPE_Q6_K, GGML_TYPE_Q8_0};
  std::vector<ggml_type> repack{GGML_TYPE_Q4_K};  // also measured in ggml's repacked layout
  std::vector<int> threads{1, 2};
  uint64_t cache_bytes = uint64_t{1} << 20;
  uint64_t dram_bytes = uint64_t{768} << 20;
  int repeat = 5;
  bool json = false;
};

constexpr int64_t kK = 2048;      // row length: the model dimension of bench-1b (Llama 3.2 1B shape)
constexpr int kCacheCopies = 64;  // products per graph in the cache case

void usage(std::FILE* to) {
  std::fputs(
      "usage: agora_kernel_roof [--types LIST] [--repack LIST|none] [--threads LIST] [--cache-bytes SIZE] [--dram-bytes SIZE]\n"
      "                         [--repeat R] [--json]\n"
      "  --types LIST        ggml weight types, e.g. q4_K,q6_K,q8_0,q4_0 (default q4_K,q6_K,q8_0)\n"
      "  --repack LIST|none  types also measured in ggml's CPU_REPACK layout, as llama.cpp loads them\n"
      "                      on AVX2 machines (default q4_K)\n"
      "  --threads LIST      thread counts (default 1,2)\n"
      "  --cache-bytes SIZE  weights of the in-cache matrix, K/M/G suffixes (default 1M)\n"
      "  --dram-bytes SIZE   weights of the streamed matrix (default 768M; keep it above the LLC)\n"
      "  --repeat R          timed runs per case, the best is reported (default 5)\n"
      "  --json              one JSON object instead of a table\n",
      to);
}

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "agora_kernel_roof: %s\n", msg.c_str());
  std::exit(2);
}

uint64_t parse_size(std::string_view s) {
  uint64_t mult = 1;
  if (!s.empty()) {
    switch (s.back()) {
      case 'K': case 'k': mult = uint64_t{1} << 10; s.remove_suffix(1); break;
      case 'M': case 'm': mult = uint64_t{1} << 20; s.remove_suffix(1); break;
      case 'G': case 'g': mult = uint64_t{1} << 30; s.remove_suffix(1); break;
      default: break;
    }
  }
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v == 0 || v > (uint64_t{1} << 40) / mult)
    die("bad size '" + std::string(s) + "'");
  return v * mult;
}

std::vector<std::string_view> split(std::string_view s) {
  std::vector<std::string_view> out;
  while (!s.empty()) {
    const size_t c = s.find(',');
    out.push_back(s.substr(0, c));
    if (c == std::string_view::npos) break;
    s.remove_prefix(c + 1);
  }
  return out;
}

ggml_type parse_type(std::string_view name) {
  for (int t = 0; t < GGML_TYPE_COUNT; ++t) {
    const char* n = ggml_type_name(static_cast<ggml_type>(t));
    if (n != nullptr && name == n && ggml_is_quantized(static_cast<ggml_type>(t))) return static_cast<ggml_type>(t);
  }
  die("unknown or unquantised ggml type '" + std::string(name) + "'");
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) die(std::string(a) + " needs a value");
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      usage(stdout);
      std::exit(0);
    } else if (a == "--types") {
      o.types.clear();
      for (auto t : split(value())) o.types.push_back(parse_type(t));
    } else if (a == "--repack") {
      o.repack.clear();
      const auto v = value();
      if (v != "none")
        for (auto t : split(v)) o.repack.push_back(parse_type(t));
    } else if (a == "--threads") {
      o.threads.clear();
      for (auto t : split(value())) {
        int v = 0;
        auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
        if (ec != std::errc() || p != t.data() + t.size() || v < 1 || v > 1024) die("bad thread count");
        o.threads.push_back(v);
      }
    } else if (a == "--cache-bytes") {
      o.cache_bytes = parse_size(value());
    } else if (a == "--dram-bytes") {
      o.dram_bytes = parse_size(value());
    } else if (a == "--repeat") {
      const auto v = value();
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), o.repeat);
      if (ec != std::errc() || p != v.data() + v.size() || o.repeat < 1 || o.repeat > 1000) die("bad --repeat");
    } else if (a == "--json") {
      o.json = true;
    } else {
      usage(stderr);
      die("unknown option '" + std::string(a) + "'");
    }
  }
  if (o.types.empty() || o.threads.empty()) die("empty --types or --threads");
  return o;
}

struct Result {
  ggml_type type;
  bool repacked;
  const char* where;
  int threads;
  uint64_t weight_bytes;  // per product
  double gbps;
};

// The CPU backend's weight-repacking buffer type (ggml's CPU_REPACK, which
// llama.cpp uses for Q4_0/Q4_K weights on AVX2 machines), or null.
ggml_backend_buffer_type_t repack_buffer_type() {
  ggml_backend_dev_t dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
  if (dev == nullptr) return nullptr;
  auto get = reinterpret_cast<ggml_backend_dev_get_extra_bufts_t>(
      ggml_backend_reg_get_proc_address(ggml_backend_dev_backend_reg(dev), "ggml_backend_dev_get_extra_bufts"));
  if (get == nullptr) return nullptr;
  for (ggml_backend_buffer_type_t* b = get(dev); b != nullptr && *b != nullptr; ++b) {
    if (std::string_view(ggml_backend_buft_name(*b)) == "CPU_REPACK") return *b;
  }
  return nullptr;
}

// One case: a [kK × rows] matrix of `type` (in the repacking buffer when
// `repack`), `copies` products per compute, on the CPU backend.
Result run_case(ggml_backend_t backend, ggml_type type, bool repack, const char* where, uint64_t target_bytes,
                int copies, int threads, int repeat) {
  const size_t row_bytes = ggml_row_size(type, kK);
  const int64_t rows = std::max<int64_t>(64, static_cast<int64_t>(target_bytes / row_bytes) / 64 * 64);
  const size_t w_bytes = row_bytes * static_cast<size_t>(rows);

  // Host copy of the weights: 64 rows of real quantised data (from random
  // floats), repeated.
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> src(static_cast<size_t>(64 * kK));
  for (auto& f : src) f = dist(rng);
  std::vector<uint8_t> block(64 * row_bytes);
  if (ggml_quantize_chunk(type, src.data(), block.data(), 0, 64, kK, nullptr) != block.size())
    die(std::string("ggml_quantize_chunk: unexpected size for ") + ggml_type_name(type));
  std::vector<uint8_t> host(w_bytes);
  for (int64_t r = 0; r < rows; r += 64) std::memcpy(host.data() + r * row_bytes, block.data(), block.size());
  std::vector<float> xh(static_cast<size_t>(kK));
  for (auto& f : xh) f = dist(rng);

  ggml_init_params wp{ggml_tensor_overhead() * 2, nullptr, true};
  ggml_context* wctx = ggml_init(wp);
  ggml_tensor* w = ggml_new_tensor_2d(wctx, type, kK, rows);
  ggml_backend_buffer_type_t wbuft = ggml_backend_get_default_buffer_type(backend);
  if (repack) {
    wbuft = repack_buffer_type();
    if (wbuft == nullptr) die("this ggml has no CPU_REPACK buffer type");
  }
  ggml_backend_buffer_t wbuf = ggml_backend_alloc_ctx_tensors_from_buft(wctx, wbuft);
  if (wbuf == nullptr) die("cannot allocate " + std::to_string(w_bytes) + " bytes of weights");
  ggml_backend_buffer_set_usage(wbuf, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
  ggml_backend_tensor_set(w, host.data(), 0, w_bytes);  // the repacking buffer converts here

  ggml_init_params cp{ggml_tensor_overhead() * (copies + 8) + ggml_graph_overhead_custom(copies + 8, false), nullptr,
                      true};
  ggml_context* cctx = ggml_init(cp);
  ggml_tensor* x = ggml_new_tensor_1d(cctx, GGML_TYPE_F32, kK);
  ggml_cgraph* gf = ggml_new_graph_custom(cctx, copies + 8, false);
  std::vector<ggml_tensor*> ys;
  for (int c = 0; c < copies; ++c) {
    ys.push_back(ggml_mul_mat(cctx, w, x));
    ggml_build_forward_expand(gf, ys.back());
  }
  ggml_backend_buffer_t cbuf = ggml_backend_alloc_ctx_tensors(cctx, backend);
  if (cbuf == nullptr) die("cannot allocate the compute tensors");
  ggml_backend_tensor_set(x, xh.data(), 0, xh.size() * sizeof(float));

  ggml_backend_cpu_set_n_threads(backend, threads);
  auto compute = [&] {
    if (ggml_backend_graph_compute(backend, gf) != GGML_STATUS_SUCCESS) die("graph compute failed");
  };
  compute();  // warm-up (and page-in)

  // Check: the first rows against a float reference of the dequantised rows.
  {
    const auto* traits = ggml_get_type_traits(type);
    std::vector<float> deq(static_cast<size_t>(kK));
    std::vector<float> y(8);
    ggml_backend_tensor_get(ys.back(), y.data(), 0, y.size() * sizeof(float));
    for (int64_t r = 0; r < 8; ++r) {
      traits->to_float(host.data() + r * row_bytes, deq.data(), kK);
      double ref = 0;
      for (int64_t i = 0; i < kK; ++i) ref += static_cast<double>(deq[static_cast<size_t>(i)]) * xh[static_cast<size_t>(i)];
      // The kernel quantises x too (8-bit): allow its error.
      if (!(std::fabs(y[static_cast<size_t>(r)] - ref) <= 0.05 * std::sqrt(static_cast<double>(kK)) + 0.02 * std::fabs(ref))) {
        die(std::string("wrong product for ") + ggml_type_name(type) + ": row " + std::to_string(r) + " got " +
            std::to_string(y[static_cast<size_t>(r)]) + ", expected " + std::to_string(ref));
      }
    }
  }
  host = {};

  double best = 1e30;
  for (int i = 0; i < repeat; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    compute();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, s);
  }
  ggml_backend_buffer_free(cbuf);
  ggml_free(cctx);
  ggml_backend_buffer_free(wbuf);
  ggml_free(wctx);
  return {type, repack, where, threads, w_bytes, static_cast<double>(w_bytes) * copies / best / 1e9};
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  ggml_backend_t backend = ggml_backend_cpu_init();
  if (backend == nullptr) die("ggml_backend_cpu_init failed");
  std::vector<Result> results;
  auto measure = [&](ggml_type t, bool repack) {
    for (int th : o.threads) {
      results.push_back(run_case(backend, t, repack, "cache", o.cache_bytes, kCacheCopies, th, o.repeat));
      results.push_back(run_case(backend, t, repack, "dram", o.dram_bytes, 1, th, o.repeat));
    }
  };
  for (ggml_type t : o.types) measure(t, false);
  for (ggml_type t : o.repack) measure(t, true);
  ggml_backend_free(backend);
  if (o.json) {
    std::printf("{\"k\":%lld,\"results\":[", static_cast<long long>(kK));
    for (size_t i = 0; i < results.size(); ++i) {
      const auto& r = results[i];
      std::printf("%s{\"type\":\"%s\",\"repacked\":%s,\"where\":\"%s\",\"threads\":%d,\"weight_bytes\":%llu,\"gbps\":%.3f}",
                  i ? "," : "", ggml_type_name(r.type), r.repacked ? "true" : "false", r.where, r.threads,
                  static_cast<unsigned long long>(r.weight_bytes), r.gbps);
    }
    std::printf("]}\n");
  } else {
    std::printf("%-6s %-8s %-6s %7s %14s %10s\n", "type", "layout", "where", "threads", "weight bytes", "GB/s");
    for (const auto& r : results) {
      std::printf("%-6s %-8s %-6s %7d %14llu %10.2f\n", ggml_type_name(r.type), r.repacked ? "repacked" : "plain",
                  r.where, r.threads, static_cast<unsigned long long>(r.weight_bytes), r.gbps);
    }
  }
  return 0;
}
