// Pure pieces of agora-load (no I/O): latency samples and their percentiles,
// and an incremental scanner for a Server-Sent Events body that counts
// content chunks. Single-threaded; callers own the objects.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace agora::load {

// Percentiles of a set of samples (nearest-rank: the smallest sample with at
// least p % of the samples at or below it). All zero when count == 0.
struct Percentiles {
  size_t count = 0;
  int64_t p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0;
  double mean = 0;
};

// Every sample kept (8 bytes each: fine up to a few million requests), so
// percentiles are exact.
class Samples {
 public:
  void add(int64_t v) { values_.push_back(v); }
  size_t size() const { return values_.size(); }
  // Sorts the samples in place (later add() calls are fine).
  Percentiles summarize();

 private:
  std::vector<int64_t> values_;
};

// Scans an SSE body fed in arbitrary pieces. An event ends at a blank line;
// '\r' is ignored. An event whose data is "[DONE]" marks the end; an event
// whose data carries a non-empty "content" string counts as a content chunk.
class SseScanner {
 public:
  // An event longer than this is a protocol error.
  static constexpr size_t kMaxEventBytes = 1 << 20;

  // Feeds the next bytes. Returns false on a protocol error (an oversized
  // event); the scanner is then unusable.
  [[nodiscard]] bool feed(std::string_view bytes);

  size_t events() const { return events_; }
  size_t content_chunks() const { return content_chunks_; }
  bool done() const { return done_; }

 private:
  void on_event(std::string_view event);

  std::string pending_;
  size_t events_ = 0;
  size_t content_chunks_ = 0;
  bool done_ = false;
};

// Whether an SSE data payload (one chat.completion.chunk JSON object) carries
// a non-empty "content" string. A byte scan, not a JSON parse: the generator
// must stay cheap next to the gateway it measures.
bool has_content(std::string_view data);

}  // namespace agora::load
