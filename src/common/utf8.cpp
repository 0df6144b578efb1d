#include "common/utf8.h"

#include <cstdint>

namespace agora {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

// Length of the sequence a lead byte announces; 0 when it cannot start one.
int sequence_length(uint8_t lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

// Whether `b` may follow `lead` as the byte at `index` (1..3) of a sequence.
bool valid_continuation(uint8_t lead, int index, uint8_t b) {
  if (index == 1) {
    if (lead == 0xE0) return b >= 0xA0 && b <= 0xBF;  // no overlongs
    if (lead == 0xED) return b >= 0x80 && b <= 0x9F;  // no surrogates
    if (lead == 0xF0) return b >= 0x90 && b <= 0xBF;  // no overlongs
    if (lead == 0xF4) return b >= 0x80 && b <= 0x8F;  // <= U+10FFFF
  }
  return b >= 0x80 && b <= 0xBF;
}

enum class Scan { complete, incomplete, invalid };

// Examines the sequence at s[i]. On `complete`, `len` is its length; on
// `invalid`, `len` is the length of the maximal invalid subpart (>= 1); on
// `incomplete`, the input ended inside a sequence that may still be valid.
Scan scan(std::string_view s, size_t i, size_t& len) {
  const auto lead = static_cast<uint8_t>(s[i]);
  const int need = sequence_length(lead);
  if (need == 0) {
    len = 1;
    return Scan::invalid;
  }
  for (int k = 1; k < need; ++k) {
    if (i + static_cast<size_t>(k) >= s.size()) return Scan::incomplete;
    if (!valid_continuation(lead, k, static_cast<uint8_t>(s[i + static_cast<size_t>(k)]))) {
      len = static_cast<size_t>(k);
      return Scan::invalid;
    }
  }
  len = static_cast<size_t>(need);
  return Scan::complete;
}

}  // namespace

bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t len = 0;
    if (scan(s, i, len) != Scan::complete) return false;
    i += len;
  }
  return true;
}

std::string Utf8StreamDecoder::push(std::string_view bytes) {
  pending_.append(bytes);
  std::string out;
  out.reserve(pending_.size());
  size_t i = 0;
  while (i < pending_.size()) {
    size_t len = 0;
    const Scan r = scan(pending_, i, len);
    if (r == Scan::incomplete) break;
    if (r == Scan::complete) {
      out.append(pending_, i, len);
    } else {
      out.append(kReplacement);
    }
    i += len;
  }
  pending_.erase(0, i);
  return out;
}

std::string Utf8StreamDecoder::flush() {
  std::string out = pending_.empty() ? std::string() : std::string(kReplacement);
  pending_.clear();
  return out;
}

}  // namespace agora
