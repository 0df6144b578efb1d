// PEM files and OpenSSL errors: the small file-level helpers shared by
// tls.cpp and tls_files.cpp. Internal to agora_net.
//
// Threading: all thread-safe (OpenSSL's error queue is per thread).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "net/openssl_handles.h"

namespace agora::net::detail {

// PEM files larger than this are refused (a certificate chain is a few KB).
inline constexpr size_t kMaxPemFileBytes = 1 << 20;

// Drains this thread's OpenSSL error queue into one line, each entry as
// ERR_error_string_n gives it, joined by "; ". "no OpenSSL error detail"
// when the queue is empty. Call right after the failing OpenSSL call.
std::string take_openssl_errors();

// Every certificate in a PEM file, in file order (at least one).
// Errors: not_found, io_error, too_large, corrupt ("<path>: no certificate
// (<OpenSSL error>)").
Result<std::vector<X509Ptr>> read_certificates(const std::filesystem::path& path);
// The same from PEM text; `what` names it in errors (the file's path).
// Errors: too_large (over kMaxPemFileBytes), corrupt.
Result<std::vector<X509Ptr>> certificates_from_pem(std::string_view pem, std::string_view what);

// The private key in a PEM file (PKCS#8 or traditional). An encrypted key is
// refused, never prompted for. Errors as read_certificates().
Result<PkeyPtr> read_private_key(const std::filesystem::path& path);

// PEM text of a certificate / of a private key (unencrypted PKCS#8).
// Errors: internal.
Result<std::string> certificate_pem(X509* cert);
Result<std::string> private_key_pem(EVP_PKEY* key);


}  // namespace agora::net::detail
