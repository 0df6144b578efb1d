#include "engine/text_stream.h"

#include <algorithm>

namespace agora::engine {

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  for (const auto& s : stops_) max_stop_ = std::max(max_stop_, s.size());
}

StopMatcher::Output StopMatcher::push(std::string_view text) {
  held_.append(text);
  Output out;
  if (stops_.empty()) {
    out.text = std::move(held_);
    held_.clear();
    return out;
  }
  // Earliest complete stop sequence wins.
  size_t hit = std::string::npos;
  for (const auto& s : stops_) hit = std::min(hit, held_.find(s));
  if (hit != std::string::npos) {
    out.text = held_.substr(0, hit);
    out.stopped = true;
    held_.clear();
    return out;
  }
  // Keep the longest suffix that is a proper prefix of some stop sequence.
  size_t keep = 0;
  const size_t limit = std::min(held_.size(), max_stop_ - 1);
  for (size_t len = limit; len > 0 && keep == 0; --len) {
    const std::string_view tail(held_.data() + held_.size() - len, len);
    for (const auto& s : stops_) {
      if (s.size() > len && std::string_view(s).substr(0, len) == tail) {
        keep = len;
        break;
      }
    }
  }
  out.text = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopMatcher::flush() {
  std::string out = std::move(held_);
  held_.clear();
  return out;
}

void TokenTextStream::release(std::string text, StreamEvent& ev, bool final) {
  released_ += text.size();
  ev.text += text;
  while (!pending_.empty() && (final || pending_.front().end <= released_)) {
    ev.logprobs.push_back(std::move(pending_.front().lp));
    pending_.pop_front();
  }
}

StreamEvent TokenTextStream::push(std::string_view token_bytes, TokenLogprob logprob,
                                  bool with_logprob, bool& stopped) {
  StreamEvent ev;
  stopped = false;
  if (done_) return ev;
  std::string text = utf8_.push(token_bytes);
  decoded_ += text.size();
  // A token whose last character is still incomplete ends where that
  // character does, which a later token decides.
  if (utf8_.pending() == 0) {
    for (auto it = pending_.rbegin(); it != pending_.rend() && it->end == kOpen; ++it) it->end = decoded_;
  }
  if (with_logprob) pending_.push_back({utf8_.pending() == 0 ? decoded_ : kOpen, std::move(logprob)});
  auto out = stop_.push(text);
  if (out.stopped) {
    // Tokens that reach into the stop sequence are not part of the answer.
    release(std::move(out.text), ev, false);
    pending_.clear();
    stopped = true;
    done_ = true;
    return ev;
  }
  release(std::move(out.text), ev, false);
  return ev;
}

StreamEvent TokenTextStream::finish() {
  StreamEvent ev;
  if (done_) return ev;
  done_ = true;
  // An unfinished character at the very end becomes U+FFFD; it can still
  // complete a stop sequence.
  const std::string tail = utf8_.flush();
  auto out = stop_.push(tail);
  if (out.stopped) {
    release(std::move(out.text), ev, false);
    pending_.clear();
    return ev;
  }
  std::string text = std::move(out.text);
  text += stop_.flush();
  release(std::move(text), ev, true);
  return ev;
}

}  // namespace agora::engine
