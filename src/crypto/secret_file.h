// A 32-byte secret in a file of its own: one line of 64 hex digits, mode
// 0600, refused when group or others can read it, created atomically (two
// processes creating it at once agree on one). The master secret and a
// node's identity key live in such files.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "common/result.h"

namespace agora::crypto {

// The 32 bytes of `path`, or fresh random ones written there first when it
// is missing and `create` is set. `what` names it in errors ("master
// secret"). Errors: not_found (missing, !create), corrupt, invalid_argument
// (too open: "chmod 600 FILE"), io_error.
Result<std::string> load_secret_file(const std::filesystem::path& path, std::string_view what, bool create);

}  // namespace agora::crypto
