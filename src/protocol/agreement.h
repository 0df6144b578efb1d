// The provider data-handling agreement (docs/PROVIDER_AGREEMENT.md): a
// versioned document a node must accept — by sending its SHA-256 in the
// hello, or in an Accept frame — before the gateway sends it any job.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace agora::protocol {

struct Agreement {
  int32_t version = 0;
  std::string sha256;  // lower-case hex, of `text`'s bytes
  std::string text;
};

// Reads the version from the document's first "Version: N" line (N ≥ 1) and
// hashes it. Errors: invalid_argument (no such line, empty or over 1 MiB).
Result<Agreement> parse_agreement(std::string text);

// docs/PROVIDER_AGREEMENT.md as this binary was built with it.
const Agreement& builtin_agreement();

}  // namespace agora::protocol
