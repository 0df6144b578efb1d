// SHA-256 on OpenSSL's EVP interface.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>

#include "common/result.h"

namespace agora::crypto {

// Lower-case hex SHA-256 of a byte string.
std::string sha256_hex(std::span<const uint8_t> data);
std::string sha256_hex(std::string_view data);

// Streams a file through SHA-256 (1 MiB reads). `progress(done, total)` is
// called after each read when given. Errors: not_found, io_error.
Result<std::string> sha256_file_hex(const std::filesystem::path& path,
                                    const std::function<void(uint64_t, uint64_t)>& progress = {});

}  // namespace agora::crypto
