#include "cli/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace agora::cli {

Progress::Progress(std::string label) : label_(std::move(label)), tty_(::isatty(STDERR_FILENO) == 1) {}

Progress::~Progress() { finish(); }

void Progress::update(const std::string& stage, uint64_t done, uint64_t total) {
  if (stage != stage_) {
    finish();
    stage_ = stage;
    stage_start_ = last_draw_ = std::chrono::steady_clock::now();
  }
  const double frac = total ? static_cast<double>(done) / static_cast<double>(total) : 1.0;
  const int pct = static_cast<int>(frac * 100.0);
  const auto now = std::chrono::steady_clock::now();
  if (tty_) {
    if (done < total && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    const int width = 30;
    const int fill = static_cast<int>(frac * width);
    std::fprintf(stderr, "\r%s %-9s [%s%s] %3d%%", label_.c_str(), stage.c_str(),
                 std::string(static_cast<size_t>(fill), '#').c_str(),
                 std::string(static_cast<size_t>(width - fill), '.').c_str(), pct);
    open_line_ = true;
  } else {
    // Quiet for quick stages; a heartbeat every 5 s and the end for slow ones.
    const bool end = done >= total;
    if (end ? now - stage_start_ < std::chrono::seconds(2) : now - last_draw_ < std::chrono::seconds(5)) return;
    last_draw_ = now;
    std::fprintf(stderr, "%s %s %d%%\n", label_.c_str(), stage.c_str(), pct);
  }
  std::fflush(stderr);
}

void Progress::finish() {
  if (open_line_) {
    std::fputc('\n', stderr);
    open_line_ = false;
  }
}

std::string human_bytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", v, units[u]);
}

std::string human_count(uint64_t n) {
  if (n >= 1'000'000'000) return fmt::format("{:.2f} B", static_cast<double>(n) / 1e9);
  if (n >= 1'000'000) return fmt::format("{:.2f} M", static_cast<double>(n) / 1e6);
  if (n >= 1'000) return fmt::format("{:.1f} K", static_cast<double>(n) / 1e3);
  return std::to_string(n);
}

}  // namespace agora::cli
