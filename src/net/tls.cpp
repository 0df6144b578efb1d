// TLS contexts (server and client), fingerprints, pinning and TLS error text.
// ensure_self_signed_tls() is in tls_files.cpp.
#include "net/tls.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <boost/asio/ip/address.hpp>
#include <cctype>
#include <exception>

#include "net/openssl_handles.h"
#include "net/pem.h"

namespace agora::net {
namespace fs = std::filesystem;
namespace ssl = boost::asio::ssl;
using detail::take_openssl_errors;
using detail::X509StoreCtxPtr;
using detail::X509StorePtr;

namespace {

// ALPN wire format: a length byte, then the protocol name.
constexpr unsigned char kAlpnHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
constexpr size_t kSha256Bytes = 32;
constexpr size_t kFingerprintChars = kSha256Bytes * 3 - 1;  // "AB:" * 32 - the last ':'

std::string hex_with_colons(const unsigned char* p, size_t n) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(n * 3);
  for (size_t i = 0; i < n; ++i) {
    if (i > 0) out += ':';
    out += kDigits[p[i] >> 4];
    out += kDigits[p[i] & 0xF];
  }
  return out;
}

// --- The pinned fingerprint, stored in the SSL_CTX (ex_data) so it lives
// exactly as long as the context. ---

void free_pin(void* /*parent*/, void* ptr, CRYPTO_EX_DATA* /*ad*/, int /*idx*/, long /*argl*/,
              void* /*argp*/) {
  delete static_cast<std::string*>(ptr);
}

int pin_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, free_pin);
  return index;
}

const std::string* pin_of(const SSL_CTX* ctx) {
  if (ctx == nullptr || pin_index() < 0) return nullptr;
  return static_cast<const std::string*>(SSL_CTX_get_ex_data(ctx, pin_index()));
}

// The certificate of the peer's chain (leaf first, then what it sent) whose
// fingerprint is `pin`, or null.
X509* find_pinned(X509* leaf, STACK_OF(X509) * chain, const std::string& pin) {
  if (leaf != nullptr && fingerprint_of(leaf) == pin) return leaf;
  for (int i = 0; chain != nullptr && i < sk_X509_num(chain); ++i) {
    X509* cert = sk_X509_value(chain, i);
    if (fingerprint_of(cert) == pin) return cert;
  }
  return nullptr;
}

// SSL_CTX_set_cert_verify_callback for pinned contexts: replaces the chain
// verification. The pinned certificate must be in the presented chain; it is
// then the only trust anchor (partial chains allowed, so a pinned leaf is
// its own anchor) and the chain is verified up to it as an SSL server chain:
// signatures, validity dates, basicConstraints, key usage. Host names are
// not checked. The result lands in the handshake's X509_STORE_CTX, so
// SSL_get_verify_result() tells what failed.
int verify_pinned_chain(X509_STORE_CTX* store_ctx, void* /*arg*/) {
  const auto* ssl = static_cast<const SSL*>(
      X509_STORE_CTX_get_ex_data(store_ctx, SSL_get_ex_data_X509_STORE_CTX_idx()));
  const std::string* pin = ssl != nullptr ? pin_of(SSL_get_SSL_CTX(ssl)) : nullptr;
  X509* leaf = X509_STORE_CTX_get0_cert(store_ctx);
  STACK_OF(X509)* chain = X509_STORE_CTX_get0_untrusted(store_ctx);
  X509* anchor = pin != nullptr ? find_pinned(leaf, chain, *pin) : nullptr;
  if (anchor == nullptr) {
    // CERT_REJECTED makes the client send a bad_certificate alert (an
    // application error would send handshake_failure, which reads like a
    // cipher problem on the server); describe_tls_error() names the pin.
    X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_CERT_REJECTED);
    return 0;
  }
  X509StorePtr store(X509_STORE_new());
  X509StoreCtxPtr verify_ctx(X509_STORE_CTX_new());
  if (!store || !verify_ctx || X509_STORE_add_cert(store.get(), anchor) != 1 ||
      X509_STORE_CTX_init(verify_ctx.get(), store.get(), leaf, chain) != 1 ||
      X509_STORE_CTX_set_default(verify_ctx.get(), "ssl_server") != 1) {
    X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_UNSPECIFIED);
    return 0;
  }
  X509_STORE_CTX_set_flags(verify_ctx.get(), X509_V_FLAG_PARTIAL_CHAIN);
  const int ok = X509_verify_cert(verify_ctx.get());
  X509_STORE_CTX_set_error(store_ctx, X509_STORE_CTX_get_error(verify_ctx.get()));
  X509_STORE_CTX_set_error_depth(store_ctx, X509_STORE_CTX_get_error_depth(verify_ctx.get()));
  X509_STORE_CTX_set_current_cert(store_ctx, X509_STORE_CTX_get_current_cert(verify_ctx.get()));
  if (ok == 1) {
    // Hand the verified chain over, so SSL_get0_verified_chain() works.
    X509_STORE_CTX_set0_verified_chain(store_ctx, X509_STORE_CTX_get1_chain(verify_ctx.get()));
  }
  return ok == 1 ? 1 : 0;
}

// The server's ALPN choice: http/1.1 when offered; otherwise no ALPN at all
// (the handshake goes on).
int select_alpn(SSL* /*ssl*/, const unsigned char** out, unsigned char* out_len,
                const unsigned char* in, unsigned int in_len, void* /*arg*/) {
  unsigned char* selected = nullptr;
  unsigned char selected_len = 0;
  if (SSL_select_next_proto(&selected, &selected_len, kAlpnHttp11, sizeof kAlpnHttp11, in,
                            in_len) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;
  }
  *out = selected;
  *out_len = selected_len;
  return SSL_TLSEXT_ERR_OK;
}

Result<std::shared_ptr<ssl::context>> new_context(ssl::context::method method) {
  try {
    return std::make_shared<ssl::context>(method);
  } catch (const std::exception& e) {
    return make_error(Errc::internal, std::string("cannot create a TLS context: ") + e.what());
  }
}

// What both sides share: TLS 1.2+, the AEAD cipher list, no compression, no
// renegotiation.
Status apply_common_policy(SSL_CTX* ctx) {
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(ctx, kTls12CipherList) != 1) {
    return make_error(Errc::internal, "cannot set the TLS policy: " + take_openssl_errors());
  }
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  return ok_status();
}

// "[::1]" → "::1", "host." → "host".
std::string bare_host(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.size() > 1 && host.back() == '.') host.remove_suffix(1);
  return std::string(host);
}

// SSL_set_tlsext_host_name() without the macro's old-style cast.
long set_server_name_indication(SSL* ssl, const std::string& name) {
  return SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                  const_cast<char*>(name.c_str()));
}

bool is_ip_literal(const std::string& host) {
  boost::system::error_code ec;
  (void)boost::asio::ip::make_address(host, ec);
  return !ec;
}

}  // namespace

std::string fingerprint_of(const X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_digest(cert, EVP_sha256(), md, &len) != 1) return {};
  return hex_with_colons(md, len);
}

Result<std::string> certificate_fingerprint(const fs::path& pem) {
  auto certs = detail::read_certificates(pem);
  if (!certs) return certs.error();
  return fingerprint_of(certs->front().get());
}

std::optional<std::string> normalize_fingerprint(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) {
    text.remove_prefix(1);
  }
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
    text.remove_suffix(1);
  }
  // Prefixes people paste along: "sha256:", "SHA256 Fingerprint=".
  if (const size_t eq = text.find('='); eq != std::string_view::npos) text.remove_prefix(eq + 1);
  if (text.size() > 7) {
    std::string head(text.substr(0, 7));
    for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (head == "sha256:") text.remove_prefix(7);
  }
  const bool colons = text.size() == kFingerprintChars;
  if (!colons && text.size() != kSha256Bytes * 2) return std::nullopt;
  std::string out;
  out.reserve(kFingerprintChars);
  const size_t stride = colons ? 3 : 2;
  for (size_t i = 0; i < kSha256Bytes; ++i) {
    const size_t at = i * stride;
    if (colons && i > 0 && text[at - 1] != ':') return std::nullopt;
    for (size_t j = 0; j < 2; ++j) {
      const char c = text[at + j];
      if (!std::isxdigit(static_cast<unsigned char>(c))) return std::nullopt;
      if (j == 0 && i > 0) out += ':';
      out += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
  }
  return out;
}

Result<std::shared_ptr<ssl::context>> make_server_tls_context(const fs::path& cert_chain,
                                                              const fs::path& key) {
  auto certs = detail::read_certificates(cert_chain);
  if (!certs) return certs.error();
  auto private_key = detail::read_private_key(key);
  if (!private_key) return private_key.error();
  X509* leaf = certs->front().get();
  if (X509_check_private_key(leaf, private_key->get()) != 1) {
    ERR_clear_error();
    return make_error(Errc::invalid_argument, "the private key in " + key.string() +
                                                  " does not match the certificate in " +
                                                  cert_chain.string());
  }

  auto context = new_context(ssl::context::tls_server);
  if (!context) return context.error();
  SSL_CTX* ctx = (*context)->native_handle();
  if (auto s = apply_common_policy(ctx); !s) return s.error();
  SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (SSL_CTX_use_certificate(ctx, leaf) != 1) {
    return make_error(Errc::corrupt,
                      cert_chain.string() + ": certificate refused: " + take_openssl_errors());
  }
  for (size_t i = 1; i < certs->size(); ++i) {
    if (SSL_CTX_add1_chain_cert(ctx, (*certs)[i].get()) != 1) {
      return make_error(Errc::corrupt, cert_chain.string() + ": chain certificate " +
                                           std::to_string(i) +
                                           " refused: " + take_openssl_errors());
    }
  }
  if (SSL_CTX_use_PrivateKey(ctx, private_key->get()) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    return make_error(Errc::invalid_argument,
                      key.string() + ": private key refused: " + take_openssl_errors());
  }
  SSL_CTX_set_alpn_select_cb(ctx, select_alpn, nullptr);
  return std::move(*context);
}

Result<std::shared_ptr<ssl::context>> make_client_tls_context(const ClientTlsOptions& options) {
  std::optional<std::string> pin;
  if (options.pinned_fingerprint) {
    pin = normalize_fingerprint(*options.pinned_fingerprint);
    if (!pin) {
      return make_error(Errc::invalid_argument,
                        "pinned fingerprint '" + *options.pinned_fingerprint +
                            "' is not a SHA-256 fingerprint (32 bytes of hex, colons optional)");
    }
  }
  if (!options.ca_file && !options.system_roots && !pin) {
    return make_error(Errc::invalid_argument,
                      "TLS client trusts nothing: give a CA file, a pinned fingerprint or allow "
                      "the system roots");
  }

  auto context = new_context(ssl::context::tls_client);
  if (!context) return context.error();
  SSL_CTX* ctx = (*context)->native_handle();
  if (auto s = apply_common_policy(ctx); !s) return s.error();
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  if (SSL_CTX_set_alpn_protos(ctx, kAlpnHttp11, sizeof kAlpnHttp11) != 0) {  // 0 = success
    return make_error(Errc::internal, "cannot set ALPN: " + take_openssl_errors());
  }

  if (options.ca_file) {
    auto certs = detail::read_certificates(*options.ca_file);
    if (!certs) return certs.error();
    X509_STORE* store = SSL_CTX_get_cert_store(ctx);
    for (const auto& cert : *certs) {
      if (X509_STORE_add_cert(store, cert.get()) != 1) {
        return make_error(Errc::corrupt, options.ca_file->string() +
                                             ": certificate refused: " + take_openssl_errors());
      }
    }
  } else if (options.system_roots && SSL_CTX_set_default_verify_paths(ctx) != 1) {
    return make_error(Errc::internal,
                      "cannot load the system's CA certificates: " + take_openssl_errors());
  }

  if (pin) {
    auto stored = std::make_unique<std::string>(*pin);
    if (pin_index() < 0 || SSL_CTX_set_ex_data(ctx, pin_index(), stored.get()) != 1) {
      return make_error(Errc::internal,
                        "cannot store the pinned fingerprint: " + take_openssl_errors());
    }
    stored.release();  // now owned by the SSL_CTX (freed by free_pin)
    SSL_CTX_set_cert_verify_callback(ctx, verify_pinned_chain, nullptr);
  }
  return std::move(*context);
}

Status prepare_client_stream(SSL* ssl, const std::string& host, const ClientTlsOptions& options) {
  if (ssl == nullptr) return make_error(Errc::internal, "prepare_client_stream: no SSL handle");
  const std::string name = bare_host(host);
  if (name.empty()) return make_error(Errc::invalid_argument, "TLS: empty host name");

  // The options must be the ones the context was made with: a pin here but
  // not in the context would skip the host-name check with no pin enforced.
  const std::string* context_pin = pin_of(SSL_get_SSL_CTX(ssl));
  const std::optional<std::string> pin = options.pinned_fingerprint
                                             ? normalize_fingerprint(*options.pinned_fingerprint)
                                             : std::nullopt;
  if (options.pinned_fingerprint.has_value() != (context_pin != nullptr) ||
      (context_pin != nullptr && (!pin || *pin != *context_pin))) {
    return make_error(Errc::invalid_argument,
                      "TLS: the pinned fingerprint does not match the one the context was made "
                      "with");
  }

  const bool ip = is_ip_literal(name);
  if (!ip && set_server_name_indication(ssl, name) != 1) {
    return make_error(Errc::invalid_argument,
                      "TLS: cannot send SNI for '" + name + "': " + take_openssl_errors());
  }
  if (context_pin != nullptr) return ok_status();  // the pin alone decides

  if (ip) {
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str()) != 1) {
      return make_error(Errc::invalid_argument,
                        "TLS: cannot verify IP address '" + name + "': " + take_openssl_errors());
    }
  } else {
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (SSL_set1_host(ssl, name.c_str()) != 1) {
      return make_error(Errc::invalid_argument,
                        "TLS: cannot verify host name '" + name + "': " + take_openssl_errors());
    }
  }
  return ok_status();
}

std::string describe_tls_error(const boost::system::error_code& ec, const SSL* ssl) {
  if (!ec) return "no error";
  if (ec == ssl::error::stream_truncated) {
    return "stream truncated (the peer closed the connection without a TLS close_notify)";
  }
  if (ec.category() != boost::asio::error::get_ssl_category()) return ec.message();

  const auto code = static_cast<unsigned long>(static_cast<unsigned int>(ec.value()));
  const char* reason = ERR_reason_error_string(code);
  std::string out = reason != nullptr ? reason : ec.message();
  if (ERR_GET_LIB(code) != ERR_LIB_SSL) return out;

  switch (ERR_GET_REASON(code)) {
    case SSL_R_CERTIFICATE_VERIFY_FAILED: {
      if (ssl == nullptr) break;
      const long result = SSL_get_verify_result(ssl);
      const std::string* pin = pin_of(SSL_get_SSL_CTX(ssl));
      if (result == X509_V_ERR_CERT_REJECTED && pin != nullptr) {
        out += ": no certificate in the presented chain has the pinned fingerprint " + *pin;
      } else if (result != X509_V_OK) {
        out += ": ";
        out += X509_verify_cert_error_string(result);
      }
      break;
    }
    case SSL_R_WRONG_VERSION_NUMBER:
      out +=
          " (the peer does not speak TLS here: plain HTTP on a TLS port, or TLS to a plain port?)";
      break;
    case SSL_R_HTTP_REQUEST:
      out += " (plain HTTP sent to a TLS port: use https:// or wss://)";
      break;
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
      out += " (no TLS version in common: TLS 1.2 or newer is required)";
      break;
    case SSL_R_NO_SHARED_CIPHER:
      out += " (no cipher suite in common)";
      break;
    case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
      out += " (the peer refused the handshake, e.g. no cipher suite in common)";
      break;
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
      out +=
          " (the peer does not trust this certificate: give it the CA file or the CA fingerprint)";
      break;
    default:
      break;
  }
  return out;
}

}  // namespace agora::net
