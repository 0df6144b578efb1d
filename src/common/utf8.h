// UTF-8 helpers: validation and a streaming decoder that never splits a
// multi-byte character. Pure functions, no I/O.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace agora {

// True when `s` is well-formed UTF-8 (RFC 3629: no overlongs, no surrogates,
// nothing above U+10FFFF).
bool is_valid_utf8(std::string_view s);

// Feeds arbitrary byte chunks (e.g. the pieces of byte-level BPE tokens) and
// returns only complete, valid UTF-8. A multi-byte character split across
// chunks is held back until it completes; bytes that can never form a valid
// character are replaced by U+FFFD (one per maximal invalid subpart, as the
// Unicode standard recommends). Not thread-safe; one per stream.
class Utf8StreamDecoder {
 public:
  // Returns the newly completed text (possibly empty).
  std::string push(std::string_view bytes);
  // Ends the stream: an incomplete trailing sequence becomes U+FFFD.
  std::string flush();
  // Bytes held back waiting for the rest of a character (0..3).
  size_t pending() const { return pending_.size(); }

 private:
  std::string pending_;
};

}  // namespace agora
