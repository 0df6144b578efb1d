#include "net/pem.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>

namespace agora::net::detail {
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

std::string errno_text(int err) {
  return std::strerror(err);
}

Result<std::string> read_small_file(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return make_error(Errc::not_found, path.string() + ": no such file");
  const auto size = fs::file_size(path, ec);
  if (ec) return make_error(Errc::io_error, path.string() + ": " + ec.message());
  if (size > kMaxPemFileBytes) {
    return make_error(Errc::too_large, path.string() + ": " + std::to_string(size) +
                                           " bytes, more than a PEM file should hold");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(Errc::io_error, path.string() + ": cannot open for reading");
  std::string data(size, '\0');
  in.read(data.data(), static_cast<std::streamsize>(size));
  if (in.gcount() != static_cast<std::streamsize>(size)) {
    return make_error(Errc::io_error, path.string() + ": short read");
  }
  return data;
}

Result<BioPtr> memory_bio(const std::string& data) {
  if (data.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return make_error(Errc::too_large, "PEM data too large");
  }
  BioPtr bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
  if (!bio) return make_error(Errc::internal, "BIO_new_mem_buf: " + take_openssl_errors());
  return bio;
}

// The passphrase callback for PEM reads: never prompts, so an encrypted key
// fails instead of blocking on the terminal.
int no_passphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*u*/) {
  return 0;
}

Result<std::string> bio_contents(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  if (n <= 0 || data == nullptr) return make_error(Errc::internal, "empty PEM output");
  return std::string(data, static_cast<size_t>(n));
}

Status fsync_directory(const fs::path& dir) {
  FileDescriptor fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0 || ::fsync(fd.get()) != 0) {
    return make_error(Errc::io_error,
                      dir.string() + ": cannot sync directory: " + errno_text(errno));
  }
  return ok_status();
}

std::string random_suffix() {
  unsigned char bytes[6];
  if (RAND_bytes(bytes, sizeof bytes) != 1) std::memset(bytes, 0, sizeof bytes);
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += kDigits[b >> 4];
    out += kDigits[b & 0xF];
  }
  return out;
}

}  // namespace

std::string take_openssl_errors() {
  std::string out;
  while (const unsigned long code = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "no OpenSSL error detail" : out;
}

Result<std::vector<X509Ptr>> read_certificates(const fs::path& path) {
  auto data = read_small_file(path);
  if (!data) return data.error();
  auto bio = memory_bio(*data);
  if (!bio) return bio.error();
  ERR_clear_error();
  std::vector<X509Ptr> certs;
  while (X509* cert = PEM_read_bio_X509(bio->get(), nullptr, no_passphrase, nullptr)) {
    certs.emplace_back(cert);
  }
  // The loop ends on "no start line" after the last certificate: expected
  // when at least one was read; anything else is a damaged file.
  const unsigned long last = ERR_peek_last_error();
  const bool clean_end =
      ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE;
  if (certs.empty() || !clean_end) {
    return make_error(Errc::corrupt, path.string() + ": cannot read a PEM certificate (" +
                                         take_openssl_errors() + ")");
  }
  ERR_clear_error();
  return certs;
}

Result<PkeyPtr> read_private_key(const fs::path& path) {
  auto data = read_small_file(path);
  if (!data) return data.error();
  auto bio = memory_bio(*data);
  if (!bio) return bio.error();
  ERR_clear_error();
  PkeyPtr key(PEM_read_bio_PrivateKey(bio->get(), nullptr, no_passphrase, nullptr));
  if (!key) {
    return make_error(Errc::corrupt, path.string() +
                                         ": cannot read a PEM private key (encrypted keys are not "
                                         "supported) (" +
                                         take_openssl_errors() + ")");
  }
  return key;
}

Result<std::string> certificate_pem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) {
    return make_error(Errc::internal, "PEM_write_bio_X509: " + take_openssl_errors());
  }
  return bio_contents(bio.get());
}

Result<std::string> private_key_pem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio ||
      PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return make_error(Errc::internal, "PEM_write_bio_PrivateKey: " + take_openssl_errors());
  }
  return bio_contents(bio.get());
}

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

}  // namespace agora::net::detail
