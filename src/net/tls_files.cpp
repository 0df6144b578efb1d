// ensure_self_signed_tls(): the gateway's local CA and server certificate.
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/ip/address.hpp>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "net/openssl_handles.h"
#include "common/file.h"
#include "net/pem.h"
#include "net/tls.h"

namespace agora::net {
namespace fs = std::filesystem;
using detail::Asn1StringPtr;
using detail::BignumPtr;
using detail::GeneralNamePtr;
using detail::GeneralNamesPtr;
using detail::PkeyCtxPtr;
using detail::PkeyPtr;
using detail::take_openssl_errors;
using detail::X509ExtensionPtr;
using detail::X509Ptr;

namespace {

// notBefore is set this far in the past, for peers whose clock is behind.
constexpr long kBackdateSeconds = 3600;
constexpr time_t kSecondsPerDay = 24 * 60 * 60;
constexpr mode_t kKeyMode = 0600;
constexpr mode_t kCertMode = 0644;

// The names a server certificate carries: DNS names (lower case) and IP
// addresses (canonical text), each in SAN order, without duplicates.
struct SanNames {
  std::vector<std::string> dns;
  std::vector<std::string> ips;
};

void add_unique(std::vector<std::string>& v, std::string s) {
  if (std::find(v.begin(), v.end(), s) == v.end()) v.push_back(std::move(s));
}

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool is_label_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

// A lower-case RFC 1123 host name; the first label may be a "*" wildcard
// when at least two labels follow it.
bool is_valid_dns_name(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  size_t labels = 0;
  bool wildcard = false;
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('.', start);
    if (end == std::string_view::npos) end = name.size();
    const std::string_view label = name.substr(start, end - start);
    if (label.empty() || label.size() > 63) return false;
    if (label == "*" && labels == 0) {
      wildcard = true;
    } else {
      if (label.front() == '-' || label.back() == '-') return false;
      if (!std::all_of(label.begin(), label.end(), is_label_char)) return false;
    }
    ++labels;
    start = end + 1;
  }
  return !wildcard || labels >= 3;
}

// Canonical text of an IP literal ("[::1]" and "::1" alike), or nullopt.
std::optional<std::string> canonical_ip(std::string_view text) {
  std::string s(text);
  if (s.size() >= 2 && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(s, ec);
  if (ec) return std::nullopt;
  if (address.is_v6() && address.to_v6().scope_id() != 0) return std::nullopt;  // no zones in SANs
  return address.to_string();
}

Status add_name(SanNames& names, std::string_view raw) {
  std::string_view name = raw;
  while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
  while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
  if (auto ip = canonical_ip(name)) {
    add_unique(names.ips, *ip);
    return ok_status();
  }
  std::string dns = to_lower(name);
  if (!dns.empty() && dns.back() == '.') dns.pop_back();
  if (!is_valid_dns_name(dns)) {
    return make_error(Errc::invalid_argument,
                      "TLS certificate name '" + std::string(raw) +
                          "' is neither an IP address nor a valid DNS name");
  }
  add_unique(names.dns, std::move(dns));
  return ok_status();
}

// This machine's host name when it can go in a certificate.
std::optional<std::string> local_hostname() {
  std::array<char, 256> buf{};
  if (::gethostname(buf.data(), buf.size() - 1) != 0) return std::nullopt;
  std::string host = to_lower(buf.data());
  if (!host.empty() && host.back() == '.') host.pop_back();
  if (host == "localhost" || host.find('*') != std::string::npos || !is_valid_dns_name(host)) {
    return std::nullopt;
  }
  return host;
}

Result<SanNames> wanted_names(const std::vector<std::string>& extra_names) {
  SanNames names;
  names.dns = {"localhost"};
  names.ips = {"127.0.0.1", "::1"};
  if (auto host = local_hostname()) add_unique(names.dns, std::move(*host));
  for (const auto& extra : extra_names) {
    if (auto s = add_name(names, extra); !s) return s.error();
  }
  return names;
}

// The DNS and IP SANs `cert` carries.
SanNames certificate_names(const X509* cert) {
  SanNames out;
  GeneralNamesPtr names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type == GEN_DNS) {
      const ASN1_STRING* s = name->d.dNSName;
      const std::string_view text(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                  static_cast<size_t>(ASN1_STRING_length(s)));
      add_unique(out.dns, to_lower(text));
    } else if (name->type == GEN_IPADD) {
      const ASN1_STRING* s = name->d.iPAddress;
      const unsigned char* p = ASN1_STRING_get0_data(s);
      if (ASN1_STRING_length(s) == 4) {
        boost::asio::ip::address_v4::bytes_type bytes;
        std::copy(p, p + 4, bytes.begin());
        add_unique(out.ips, boost::asio::ip::address_v4(bytes).to_string());
      } else if (ASN1_STRING_length(s) == 16) {
        boost::asio::ip::address_v6::bytes_type bytes;
        std::copy(p, p + 16, bytes.begin());
        add_unique(out.ips, boost::asio::ip::address_v6(bytes).to_string());
      }
    }
  }
  return out;
}

bool covers(const SanNames& have, const SanNames& want) {
  auto contains = [](const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
  };
  return std::all_of(want.dns.begin(), want.dns.end(),
                     [&](const std::string& n) { return contains(have.dns, n); }) &&
         std::all_of(want.ips.begin(), want.ips.end(),
                     [&](const std::string& n) { return contains(have.ips, n); });
}

Error openssl_failure(const std::string& what) {
  return make_error(Errc::internal, what + ": " + take_openssl_errors());
}

Result<PkeyPtr> generate_p256_key() {
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  EVP_PKEY* key = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_group_name(ctx.get(), "P-256") != 1 ||
      EVP_PKEY_generate(ctx.get(), &key) != 1) {
    return openssl_failure("cannot generate an EC P-256 key");
  }
  return PkeyPtr(key);
}

std::string random_hex(size_t bytes) {
  std::vector<unsigned char> raw(bytes);
  if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1) {
    // No entropy: a process that cannot make keys fails later anyway.
    std::fill(raw.begin(), raw.end(), static_cast<unsigned char>(0));
  }
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : raw) {
    out += kDigits[b >> 4];
    out += kDigits[b & 0xF];
  }
  return out;
}

// Version 3, random 128-bit serial, subject CN, issuer, validity, public key.
Status set_basics(X509* cert, const std::string& common_name, const X509_NAME* issuer,
                  EVP_PKEY* key, time_t now, int days) {
  BignumPtr serial(BN_new());
  if (X509_set_version(cert, X509_VERSION_3) != 1 || !serial ||
      BN_rand(serial.get(), 128, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
      !BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert))) {
    return openssl_failure("cannot set the certificate serial");
  }
  X509_NAME* subject = X509_get_subject_name(cert);  // owned by cert
  if (X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(common_name.data()),
                                 static_cast<int>(common_name.size()), -1, 0) != 1 ||
      X509_set_issuer_name(cert, issuer ? issuer : subject) != 1) {
    return openssl_failure("cannot set the certificate names");
  }
  if (!X509_time_adj_ex(X509_getm_notBefore(cert), 0, -kBackdateSeconds, &now) ||
      !X509_time_adj_ex(X509_getm_notAfter(cert), days, 0, &now)) {
    return openssl_failure("cannot set the certificate validity");
  }
  if (X509_set_pubkey(cert, key) != 1) return openssl_failure("cannot set the public key");
  return ok_status();
}

// Adds an extension given in OpenSSL's config syntax ("critical,CA:TRUE").
Status add_extension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    return openssl_failure(std::string("cannot add the ") + OBJ_nid2sn(nid) + " extension");
  }
  return ok_status();
}

Status add_subject_alt_names(X509* cert, const SanNames& names) {
  GeneralNamesPtr general_names(GENERAL_NAMES_new());
  if (!general_names) return openssl_failure("GENERAL_NAMES_new");
  auto push = [&](int type, Asn1StringPtr value) -> bool {
    GeneralNamePtr name(GENERAL_NAME_new());
    if (!name || !value) return false;
    GENERAL_NAME_set0_value(name.get(), type, value.release());
    if (sk_GENERAL_NAME_push(general_names.get(), name.get()) <= 0) return false;
    name.release();  // now owned by general_names
    return true;
  };
  for (const auto& dns : names.dns) {
    Asn1StringPtr s(ASN1_IA5STRING_new());
    if (!s || ASN1_STRING_set(s.get(), dns.data(), static_cast<int>(dns.size())) != 1 ||
        !push(GEN_DNS, std::move(s))) {
      return openssl_failure("cannot add DNS name " + dns);
    }
  }
  for (const auto& ip : names.ips) {
    if (!push(GEN_IPADD, Asn1StringPtr(a2i_IPADDRESS(ip.c_str())))) {
      return openssl_failure("cannot add IP address " + ip);
    }
  }
  if (X509_add1_ext_i2d(cert, NID_subject_alt_name, general_names.get(), 0, X509V3_ADD_DEFAULT) !=
      1) {
    return openssl_failure("cannot add the subjectAltName extension");
  }
  return ok_status();
}

Result<X509Ptr> issue_ca(EVP_PKEY* key, time_t now) {
  X509Ptr cert(X509_new());
  if (!cert) return openssl_failure("X509_new");
  const std::string cn = "Agora local CA " + random_hex(4);
  if (auto s = set_basics(cert.get(), cn, nullptr, key, now, kCaValidityDays); !s) return s.error();
  for (auto [nid, value] : {std::pair{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
                            std::pair{NID_key_usage, "critical,keyCertSign,cRLSign"},
                            std::pair{NID_subject_key_identifier, "hash"}}) {
    if (auto s = add_extension(cert.get(), cert.get(), nid, value); !s) return s.error();
  }
  if (X509_sign(cert.get(), key, EVP_sha256()) <= 0) return openssl_failure("cannot sign the CA");
  return cert;
}

Result<X509Ptr> issue_server(EVP_PKEY* key, X509* ca, EVP_PKEY* ca_key, const SanNames& names,
                             time_t now) {
  X509Ptr cert(X509_new());
  if (!cert) return openssl_failure("X509_new");
  if (auto s = set_basics(cert.get(), "localhost", X509_get_subject_name(ca), key, now,
                          kServerValidityDays);
      !s) {
    return s.error();
  }
  for (auto [nid, value] :
       {std::pair{NID_basic_constraints, "critical,CA:FALSE"},
        std::pair{NID_key_usage, "critical,digitalSignature"},
        std::pair{NID_ext_key_usage, "serverAuth"}, std::pair{NID_subject_key_identifier, "hash"},
        std::pair{NID_authority_key_identifier, "keyid:always"}}) {
    if (auto s = add_extension(cert.get(), ca, nid, value); !s) return s.error();
  }
  if (auto s = add_subject_alt_names(cert.get(), names); !s) return s.error();
  if (X509_sign(cert.get(), ca_key, EVP_sha256()) <= 0) {
    return openssl_failure("cannot sign the server certificate");
  }
  return cert;
}

Status make_private_dir(const fs::path& dir) {
  std::error_code ec;
  if (fs::is_directory(dir, ec)) return ok_status();
  if (dir.has_parent_path()) {
    fs::create_directories(dir.parent_path(), ec);
    if (ec) return make_error(Errc::io_error, dir.parent_path().string() + ": " + ec.message());
  }
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return make_error(Errc::io_error, dir.string() + ": cannot create: " + std::strerror(errno));
  }
  if (!fs::is_directory(dir, ec)) {
    return make_error(Errc::io_error, dir.string() + ": not a directory");
  }
  return ok_status();
}

// Whether the server certificate and key on disk can be kept: readable, a
// matching pair, issued by `ca`, valid now and for kServerRenewBeforeDays
// more, and carrying every wanted name.
bool server_usable(const fs::path& cert_path, const fs::path& key_path, X509* ca,
                   const SanNames& want, time_t now) {
  auto certs = detail::read_certificates(cert_path);
  auto key = detail::read_private_key(key_path);
  ERR_clear_error();
  if (!certs || !key) return false;
  X509* leaf = certs->front().get();
  time_t renew_at = now + kServerRenewBeforeDays * kSecondsPerDay;
  const bool usable = X509_check_private_key(leaf, key->get()) == 1 &&
                      X509_check_issued(ca, leaf) == X509_V_OK &&
                      X509_verify(leaf, X509_get0_pubkey(ca)) == 1 &&
                      X509_cmp_time(X509_get0_notBefore(leaf), &now) < 0 &&
                      X509_cmp_time(X509_get0_notAfter(leaf), &renew_at) > 0 &&
                      covers(certificate_names(leaf), want);
  ERR_clear_error();
  return usable;
}

Status write_pem_pair(const fs::path& cert_path, const std::string& cert_pem,
                      const fs::path& key_path, EVP_PKEY* key) {
  auto key_pem = detail::private_key_pem(key);
  if (!key_pem) return key_pem.error();
  // The key first: a crash in between leaves a pair that does not match,
  // which the next call re-issues.
  if (auto s = write_file_atomic(key_path, *key_pem, kKeyMode); !s) return s;
  return write_file_atomic(cert_path, cert_pem, kCertMode);
}

}  // namespace

Result<TlsFiles> ensure_self_signed_tls(const fs::path& tls_dir,
                                        const std::vector<std::string>& extra_names) {
  return ensure_self_signed_tls(tls_dir, extra_names, SystemClock::instance());
}

Result<TlsFiles> ensure_self_signed_tls(const fs::path& tls_dir,
                                        const std::vector<std::string>& extra_names,
                                        const Clock& clock) {
  auto want = wanted_names(extra_names);
  if (!want) return want.error();
  if (auto s = make_private_dir(tls_dir); !s) return s.error();
  const time_t now = static_cast<time_t>(clock.unix_millis() / 1000);

  TlsFiles files;
  files.ca_cert = tls_dir / kCaCertFile;
  files.cert = tls_dir / kServerCertFile;
  files.key = tls_dir / kServerKeyFile;
  const fs::path ca_key_path = tls_dir / kCaKeyFile;

  X509Ptr ca;
  PkeyPtr ca_key;
  std::error_code ec;
  if (!fs::exists(files.ca_cert, ec)) {
    auto key = generate_p256_key();
    if (!key) return key.error();
    auto cert = issue_ca(key->get(), now);
    if (!cert) return cert.error();
    auto pem = detail::certificate_pem(cert->get());
    if (!pem) return pem.error();
    if (auto s = write_pem_pair(files.ca_cert, *pem, ca_key_path, key->get()); !s) return s.error();
    ca = std::move(*cert);
    ca_key = std::move(*key);
    files.created = true;
  } else {
    auto certs = detail::read_certificates(files.ca_cert);
    if (!certs) return certs.error();
    ca = std::move(certs->front());
    if (fs::exists(ca_key_path, ec)) {
      auto key = detail::read_private_key(ca_key_path);
      if (!key) return key.error();
      if (X509_check_private_key(ca.get(), key->get()) != 1) {
        ERR_clear_error();
        return make_error(Errc::corrupt,
                          ca_key_path.string() + " is not the key of " + files.ca_cert.string());
      }
      ca_key = std::move(*key);
    }
  }

  if (files.created || !server_usable(files.cert, files.key, ca.get(), *want, now)) {
    if (!ca_key) {
      return make_error(Errc::unavailable, files.cert.string() +
                                               " needs to be (re-)issued but the CA key " +
                                               ca_key_path.string() + " is missing");
    }
    auto key = generate_p256_key();
    if (!key) return key.error();
    auto cert = issue_server(key->get(), ca.get(), ca_key.get(), *want, now);
    if (!cert) return cert.error();
    auto leaf_pem = detail::certificate_pem(cert->get());
    if (!leaf_pem) return leaf_pem.error();
    auto ca_pem = detail::certificate_pem(ca.get());
    if (!ca_pem) return ca_pem.error();
    // server.pem is the full chain, so clients that pin the CA find it in
    // the chain the server presents.
    if (auto s = write_pem_pair(files.cert, *leaf_pem + *ca_pem, files.key, key->get()); !s) {
      return s.error();
    }
    files.created = true;
  }
  files.ca_fingerprint = fingerprint_of(ca.get());
  return files;
}

}  // namespace agora::net
