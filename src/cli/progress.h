// Progress output for long work, on stderr: a live line on a terminal;
// otherwise (logs, CI) a line every few seconds and one when a stage ends.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace agora::cli {

class Progress {
 public:
  explicit Progress(std::string label);
  ~Progress();
  // Thread-compatible: call from one thread at a time.
  void update(const std::string& stage, uint64_t done, uint64_t total);
  void finish();

 private:
  std::string label_;
  std::string stage_;
  bool tty_;
  std::chrono::steady_clock::time_point stage_start_{};
  bool open_line_ = false;
  std::chrono::steady_clock::time_point last_draw_{};
};

std::string human_bytes(uint64_t bytes);
std::string human_count(uint64_t n);

}  // namespace agora::cli
