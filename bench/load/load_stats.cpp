#include "load_stats.h"

#include <algorithm>
#include <cmath>

namespace agora::load {

namespace {

int64_t nearest_rank(const std::vector<int64_t>& sorted, double p) {
  const auto n = static_cast<double>(sorted.size());
  auto rank = static_cast<size_t>(std::ceil(p / 100.0 * n));
  if (rank == 0) rank = 1;
  return sorted[std::min(rank, sorted.size()) - 1];
}

}  // namespace

Percentiles Samples::summarize() {
  Percentiles r;
  r.count = values_.size();
  if (values_.empty()) return r;
  std::sort(values_.begin(), values_.end());
  r.p50 = nearest_rank(values_, 50);
  r.p90 = nearest_rank(values_, 90);
  r.p99 = nearest_rank(values_, 99);
  r.p999 = nearest_rank(values_, 99.9);
  r.max = values_.back();
  double sum = 0;
  for (int64_t v : values_) sum += static_cast<double>(v);
  r.mean = sum / static_cast<double>(values_.size());
  return r;
}

bool has_content(std::string_view data) {
  static constexpr std::string_view kKey = "\"content\"";
  for (size_t at = data.find(kKey); at != std::string_view::npos; at = data.find(kKey, at + 1)) {
    size_t i = at + kKey.size();
    while (i < data.size() && (data[i] == ' ' || data[i] == ':')) ++i;
    if (i + 1 < data.size() && data[i] == '"' && data[i + 1] != '"') return true;
  }
  return false;
}

bool SseScanner::feed(std::string_view bytes) {
  for (char c : bytes) {
    if (c == '\r') continue;
    if (c == '\n' && !pending_.empty() && pending_.back() == '\n') {
      pending_.pop_back();
      on_event(pending_);
      pending_.clear();
      continue;
    }
    if (c == '\n' && pending_.empty()) continue;  // stray blank line
    pending_.push_back(c);
    if (pending_.size() > kMaxEventBytes) return false;
  }
  return true;
}

void SseScanner::on_event(std::string_view event) {
  ++events_;
  // Only "data:" lines matter; several are joined, as SSE specifies.
  std::string data;
  size_t pos = 0;
  while (pos <= event.size()) {
    size_t end = event.find('\n', pos);
    if (end == std::string_view::npos) end = event.size();
    std::string_view line = event.substr(pos, end - pos);
    if (line.starts_with("data:")) {
      line.remove_prefix(5);
      if (line.starts_with(' ')) line.remove_prefix(1);
      if (!data.empty()) data.push_back('\n');
      data.append(line);
    }
    pos = end + 1;
  }
  if (data == "[DONE]") {
    done_ = true;
  } else if (has_content(data)) {
    ++content_chunks_;
  }
}

}  // namespace agora::load
