#include "crypto/secret_file.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/file.h"
#include "crypto/encoding.h"
#include "crypto/hmac.h"
#include "crypto/random.h"

namespace agora::crypto {
namespace {

namespace fs = std::filesystem;

constexpr size_t kSecretBytes = 32;

// The file's text → 32 bytes. One line of 64 hex digits (a trailing
// newline allowed).
Result<std::string> parse(const fs::path& path, std::string text, std::string_view what) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  if (text.size() != 2 * kSecretBytes) {
    OPENSSL_cleanse(text.data(), text.size());
    return make_error(Errc::corrupt, path.string() + ": not a " + std::string(what) + " (expected one line of 64 hex digits)");
  }
  auto out = from_hex(text);
  OPENSSL_cleanse(text.data(), text.size());
  if (!out) return make_error(Errc::corrupt, path.string() + ": not a " + std::string(what) + " (non-hex characters)");
  return std::move(*out);
}

Result<std::string> read_secret_file(const fs::path& path, std::string_view what) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return make_error(Errc::not_found, path.string() + ": no " + std::string(what));
    return make_error(Errc::io_error, path.string() + ": cannot open: " + std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return make_error(Errc::io_error, path.string() + ": not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return make_error(Errc::invalid_argument, path.string() + ": permissions " + mode +
                                                  " are too open for a secret; run: chmod 600 " + path.string());
  }
  char buf[256];
  std::string text;
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > 1024) break;
  }
  OPENSSL_cleanse(buf, sizeof buf);
  ::close(fd);
  return parse(path, std::move(text), what);
}

// Writes a fresh secret to a temporary file, then link()s it into place:
// link fails if another process created the file first, and then that one
// is what both use.
Status create_secret_file(const fs::path& path) {
  std::error_code ec;
  if (path.has_parent_path()) fs::create_directories(path.parent_path(), ec);
  const std::string bytes = random_bytes(kSecretBytes);
  std::string text = to_hex(as_bytes(bytes)) + "\n";
  fs::path tmp = path;
  tmp += ".tmp-" + random_base62(12);
  Status st = write_file_atomic(tmp, text, 0600);
  OPENSSL_cleanse(text.data(), text.size());
  if (!st) return st;
  const int rc = ::link(tmp.c_str(), path.c_str());
  const int err = errno;
  ::unlink(tmp.c_str());
  if (rc != 0 && err != EEXIST) {
    return make_error(Errc::io_error, path.string() + ": cannot create: " + std::strerror(err));
  }
  return ok_status();
}

}  // namespace

Result<std::string> load_secret_file(const fs::path& path, std::string_view what, bool create) {
  auto bytes = read_secret_file(path, what);
  if (!bytes && bytes.error().code == Errc::not_found && create) {
    if (Status st = create_secret_file(path); !st) return st.error();
    bytes = read_secret_file(path, what);
  }
  return bytes;
}

}  // namespace agora::crypto
