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

Result<BioPtr> memory_bio(std::string_view data) {
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

Result<std::vector<X509Ptr>> certificates_from_pem(std::string_view pem, std::string_view what) {
  if (pem.size() > kMaxPemFileBytes) return make_error(Errc::too_large, std::string(what) + ": larger than 1 MiB");
  auto bio = memory_bio(pem);
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
    return make_error(Errc::corrupt, std::string(what) + ": cannot read a PEM certificate (" +
                                         take_openssl_errors() + ")");
  }
  ERR_clear_error();
  return certs;
}

Result<std::vector<X509Ptr>> read_certificates(const fs::path& path) {
  auto data = read_small_file(path);
  if (!data) return data.error();
  return certificates_from_pem(*data, path.string());
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


}  // namespace agora::net::detail
