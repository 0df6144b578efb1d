// The text side of generation, sans I/O: turns sampled tokens' raw bytes into
// stream events that are valid UTF-8, never contain a stop sequence (even one
// spread over several tokens), and carry each token's logprobs once its text
// is released.
#pragma once

#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "common/utf8.h"
#include "engine/engine.h"

namespace agora::engine {

// Holds back any suffix that could be the start of a stop sequence.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  struct Output {
    std::string text;      // safe to release now
    bool stopped = false;  // a stop sequence was found; `text` ends just before it
  };
  // `text` must be valid UTF-8 (stop sequences are, too), so every cut falls
  // on a character boundary.
  Output push(std::string_view text);
  // End of stream without a stop: releases what was held back.
  std::string flush();

 private:
  std::vector<std::string> stops_;
  std::string held_;
  size_t max_stop_ = 0;
};

class TokenTextStream {
 public:
  explicit TokenTextStream(std::vector<std::string> stops) : stop_(std::move(stops)) {}

  // Adds one generated token's raw bytes (and its logprobs when requested).
  // Returns what can be released now; sets `stopped` when a stop sequence
  // completed (the stream must then end).
  StreamEvent push(std::string_view token_bytes, TokenLogprob logprob, bool with_logprob,
                   bool& stopped);
  // Ends the stream (length, end-of-generation or cancel): releases the rest.
  StreamEvent finish();

 private:
  void release(std::string text, StreamEvent& ev, bool final);

  Utf8StreamDecoder utf8_;
  StopMatcher stop_;
  size_t decoded_ = 0;   // bytes of text produced by the UTF-8 decoder so far
  size_t released_ = 0;  // bytes released to the client so far
  static constexpr size_t kOpen = static_cast<size_t>(-1);
  struct Pending {
    size_t end;  // decoded_ once all of this token's bytes are decoded; kOpen until then
    TokenLogprob lp;
  };
  std::deque<Pending> pending_;
  bool done_ = false;
};

}  // namespace agora::engine
