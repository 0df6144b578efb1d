// Small file helpers shared by every library (TLS files, CLI state files).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>

#include "common/result.h"

namespace agora {

// Writes `data` to `path` atomically: a temporary file in the same
// directory created with exactly `mode` (0600 for secrets: never readable by
// others, not even for a moment), written, fsync'ed, renamed over `path`,
// then the directory fsync'ed. A reader sees the old file or the new one,
// never a part. Errors: io_error naming the path and errno text.
Status write_file_atomic(const std::filesystem::path& path, std::string_view data, mode_t mode);

// The whole file, refused when larger than `max_bytes`. Errors: not_found,
// too_large, io_error.
Result<std::string> read_file(const std::filesystem::path& path, size_t max_bytes = 16u << 20);

}  // namespace agora
