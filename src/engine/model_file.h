// Model files on disk: cheap structural checks before llama.cpp sees a file,
// and the file's SHA-256, computed once and cached beside it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "common/result.h"

namespace agora::engine {

// Checks that `path` is a readable regular file that starts like a GGUF file
// (magic, supported version). Errors: not_found, io_error, corrupt.
Status check_gguf_header(const std::filesystem::path& path);

// SHA-256 (hex) of the model file. The digest is cached in `<path>.sha256`
// together with the file's size and modification time, and recomputed when
// either changed or the cache is unreadable; a read-only directory just means
// no caching. `progress(done, total)` reports hashing progress.
Result<std::string> model_sha256(const std::filesystem::path& path,
                                 const std::function<void(uint64_t, uint64_t)>& progress = {});

}  // namespace agora::engine
