#include "engine/model_file.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "crypto/sha256.h"

namespace agora::engine {
namespace fs = std::filesystem;

Status check_gguf_header(const fs::path& path) {
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) return make_error(Errc::not_found, "model file not found: " + path.string());
  if (!fs::is_regular_file(st)) return make_error(Errc::invalid_argument, "not a regular file: " + path.string());
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(Errc::io_error, "cannot open model file: " + path.string());
  unsigned char head[8] = {};
  in.read(reinterpret_cast<char*>(head), sizeof head);
  if (in.gcount() != sizeof head || std::memcmp(head, "GGUF", 4) != 0) {
    return make_error(Errc::corrupt, "not a GGUF file (bad magic): " + path.string());
  }
  const uint32_t version = head[4] | (head[5] << 8) | (head[6] << 16) | (static_cast<uint32_t>(head[7]) << 24);
  if (version < 2 || version > 3) {
    return make_error(Errc::corrupt, "unsupported GGUF version " + std::to_string(version) + ": " + path.string());
  }
  return ok_status();
}

Result<std::string> model_sha256(const fs::path& path,
                                 const std::function<void(uint64_t, uint64_t)>& progress) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) return make_error(Errc::not_found, "model file not found: " + path.string());
  const auto mtime = fs::last_write_time(path, ec).time_since_epoch().count();
  const fs::path cache = path.string() + ".sha256";
  {
    std::ifstream in(cache);
    std::string hex;
    uint64_t csize = 0;
    long long cmtime = 0;
    if (in >> hex >> csize >> cmtime && hex.size() == 64 && csize == size && cmtime == mtime) return hex;
  }
  auto digest = crypto::sha256_file_hex(path, progress);
  if (!digest) return digest;
  // Best effort: write to a temporary name and rename, so a reader never sees half a line.
  const fs::path tmp = cache.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (out) out << *digest << ' ' << size << ' ' << mtime << '\n';
    if (!out) {
      fs::remove(tmp, ec);
      return digest;
    }
  }
  fs::rename(tmp, cache, ec);
  if (ec) fs::remove(tmp, ec);
  return digest;
}

}  // namespace agora::engine
