#include "common/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <string>

namespace agora {
namespace fs = std::filesystem;

namespace {

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  // Closes now and reports whether close() succeeded.
  bool close() {
    const int fd = fd_;
    fd_ = -1;
    return ::close(fd) == 0;
  }

 private:
  int fd_;
};

std::string errno_text(int err) { return std::strerror(err); }

Status fsync_directory(const fs::path& dir) {
  FileDescriptor fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0 || ::fsync(fd.get()) != 0) {
    return make_error(Errc::io_error, dir.string() + ": cannot sync directory: " + errno_text(errno));
  }
  return ok_status();
}

// A name for the temporary file; O_EXCL makes a collision an error, not a
// race, so it only needs to be unlikely.
std::string random_suffix() {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::random_device rd;
  std::string out;
  for (int i = 0; i < 3; ++i) {
    uint32_t v = rd();
    for (int k = 0; k < 4; ++k, v >>= 8) {
      out += kDigits[(v >> 4) & 0xF];
      out += kDigits[v & 0xF];
    }
  }
  return out;
}

}  // namespace

Status write_file_atomic(const fs::path& path, std::string_view data, mode_t mode) {
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  // Built by appending: GCC 12 warns falsely (-Wrestrict) on "." + string.
  std::string tmp_name(1, '.');
  tmp_name += path.filename().string();
  tmp_name += ".tmp-";
  tmp_name += random_suffix();
  const fs::path tmp = dir / tmp_name;
  FileDescriptor fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (fd.get() < 0) {
    return make_error(Errc::io_error, tmp.string() + ": cannot create: " + errno_text(errno));
  }
  auto fail = [&](const std::string& what) -> Status {
    const int err = errno;
    const std::string message = path.string() + ": " + what + ": " + errno_text(err);
    ::unlink(tmp.c_str());
    return make_error(Errc::io_error, message);
  };
  // The umask may have taken bits away; set exactly what was asked.
  if (::fchmod(fd.get(), mode) != 0) return fail("cannot set permissions");
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("cannot write");
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return fail("cannot sync");
  if (!fd.close()) return fail("cannot close");
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail("cannot rename into place");
  return fsync_directory(dir);
}

Result<std::string> read_file(const std::filesystem::path& path, size_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    return make_error(err == ENOENT ? Errc::not_found : Errc::io_error,
                      "cannot read " + path.string() + ": " + std::strerror(err));
  }
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return make_error(Errc::io_error, "cannot read " + path.string() + ": " + std::strerror(err));
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_bytes) {
      ::close(fd);
      return make_error(Errc::too_large, path.string() + " is larger than " + std::to_string(max_bytes) + " bytes");
    }
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

}  // namespace agora
