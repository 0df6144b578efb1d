// TLS for every Agora connection: the gateway's self-signed CA and server
// certificate, certificate fingerprints (the pins people copy from the
// gateway's start-up banner), and the OpenSSL contexts for the server side
// (gateway) and the client side (provider node, client proxy).
//
// Policy, in one place:
//   - TLS 1.2 minimum, TLS 1.3 preferred; TLS 1.2 only with ECDHE + AEAD
//     ciphers (kTls12CipherList); no compression, no renegotiation.
//   - Clients always verify the peer. Either the normal way (a chain to a
//     trusted CA plus the host name, RFC 6125) or, when a fingerprint is
//     pinned, by the pin alone: the pinned certificate becomes the only
//     trust anchor (see ClientTlsOptions).
//
// Threading: every function here is thread-safe (OpenSSL 3 is). A returned
// context may be shared by any number of streams on any threads, as long as
// it is not reconfigured afterwards.
#pragma once

#include <openssl/ssl.h>

#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/system/error_code.hpp>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/result.h"

namespace agora::net {

// File names inside the TLS directory managed by ensure_self_signed_tls().
inline constexpr std::string_view kCaCertFile = "ca.pem";
inline constexpr std::string_view kCaKeyFile = "ca-key.pem";
inline constexpr std::string_view kServerCertFile = "server.pem";
inline constexpr std::string_view kServerKeyFile = "server-key.pem";

// The TLS 1.2 cipher list of both sides (TLS 1.3 keeps OpenSSL's default
// suites, which are all AEAD).
inline constexpr const char* kTls12CipherList =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// Validity of what ensure_self_signed_tls() issues, and when it re-issues.
inline constexpr int kCaValidityDays = 3650;
inline constexpr int kServerValidityDays = 397;
inline constexpr int kServerRenewBeforeDays = 30;

struct TlsFiles {
  std::filesystem::path ca_cert;  // <dir>/ca.pem: the CA clients trust or pin
  std::filesystem::path cert;     // <dir>/server.pem: the leaf, then the CA (a full chain)
  std::filesystem::path key;      // <dir>/server-key.pem
  // SHA-256 of the CA certificate's DER, upper-case hex with colons (the form
  // of `openssl x509 -fingerprint -sha256`).
  std::string ca_fingerprint;
  // Whether this call wrote anything (a new CA, or a new/re-issued server
  // certificate).
  bool created = false;
};

// Makes sure `tls_dir` holds a local CA and a server certificate it signed,
// for a gateway that has no certificate of its own.
//
// First call: creates `tls_dir` (mode 0700 when this call creates it) and
//   ca.pem          self-signed CA, EC P-256, CN "Agora local CA <8 hex>",
//                   basicConstraints critical CA:TRUE pathlen:0, keyUsage
//                   critical keyCertSign+cRLSign, SKI, 10 years
//   ca-key.pem      its key (0600)
//   server.pem      leaf signed by the CA followed by the CA certificate:
//                   EC P-256, CN localhost, SAN DNS:localhost, IP:127.0.0.1,
//                   IP:::1, the host name (gethostname, when it is a valid DNS
//                   name) and every `extra_names` entry (IP literals, with or
//                   without brackets, become IP SANs; others must be DNS
//                   names, "*." wildcards allowed); basicConstraints CA:FALSE,
//                   keyUsage digitalSignature, EKU serverAuth, SKI, AKI,
//                   397 days, random 128-bit serial
//   server-key.pem  its key (0600)
// Every file is written to a temporary name, fsync'ed and renamed, so a crash
// never leaves a half-written file.
//
// Later calls load what exists and keep the CA (so clients that pinned or
// trust it keep working). The server certificate is re-issued from that CA
// when it is missing, unreadable, not signed by the CA, not matching its key,
// expiring within 30 days, or lacking any of the names above. A missing
// ca.pem means a new CA (and server certificate). The CA key is needed only
// to issue; it may be moved offline once server.pem exists.
//
// Errors: invalid_argument (a bad extra name), io_error (cannot create or
// write; the message names the path), corrupt (a PEM file OpenSSL cannot
// read; the message names the file and carries the OpenSSL error string),
// unavailable (re-issue needed but ca-key.pem missing), internal.
// Not safe to run concurrently on one directory from several processes.
Result<TlsFiles> ensure_self_signed_tls(const std::filesystem::path& tls_dir,
                                        const std::vector<std::string>& extra_names = {});

// The same with the clock that gives "now" (clock.unix_millis()) for the
// validity dates and the renewal check; the overload above uses the system
// clock. Tests pass a fake one to check renewal.
Result<TlsFiles> ensure_self_signed_tls(const std::filesystem::path& tls_dir,
                                        const std::vector<std::string>& extra_names,
                                        const Clock& clock);

// SHA-256 fingerprint (upper-case hex, colons) of the first certificate in a
// PEM file. Errors: not_found, corrupt (names the file and the OpenSSL error).
Result<std::string> certificate_fingerprint(const std::filesystem::path& pem);

// SHA-256 fingerprint (upper-case hex, colons) of a certificate's DER.
// `cert` must not be null.
std::string fingerprint_of(const X509* cert);

// Canonical form of a fingerprint someone typed or pasted: 32 bytes of hex,
// any case, with or without ':' separators (all of them or none), surrounding
// spaces ignored, an optional "sha256:" / "SHA256 Fingerprint=" prefix
// skipped. Returns "AB:CD:…" (95 characters), or nullopt when it is not that.
std::optional<std::string> normalize_fingerprint(std::string_view text);

// The gateway's context. `cert_chain`: PEM, the leaf first then any
// intermediates (server.pem above); `key`: its private key (PEM).
// TLS 1.2 minimum with kTls12CipherList and the server's cipher order, TLS
// 1.3 allowed, no compression, no renegotiation. ALPN: "http/1.1" is
// selected when offered; a client offering only other protocols goes on
// without ALPN (no failure). Session tickets stay on (stateless, keys held in
// memory and rotated by OpenSSL): resumption saves a full handshake when
// nodes and clients reconnect, and a restart just forces full handshakes.
// Errors: not_found (a missing file), corrupt (unreadable PEM; names the file
// and OpenSSL's reason), invalid_argument ("the private key in K does not
// match the certificate in C"), internal.
Result<std::shared_ptr<boost::asio::ssl::context>> make_server_tls_context(
    const std::filesystem::path& cert_chain, const std::filesystem::path& key);

struct ClientTlsOptions {
  // Trust exactly the CA certificate(s) in this PEM file (system roots are
  // then not used).
  std::optional<std::filesystem::path> ca_file;
  // A SHA-256 certificate fingerprint (any form normalize_fingerprint()
  // accepts). When set, the server is accepted if and only if a certificate
  // of the chain it presents has this fingerprint and the chain verifies up
  // to that certificate (signatures, validity dates, CA constraints,
  // serverAuth); CA files, system roots and the host name are not consulted.
  // Pin either the gateway's CA (survives server certificate re-issue) or
  // its leaf. A copy of the CA placed in front of a foreign leaf does not
  // pass: the leaf must be signed by the pinned CA.
  std::optional<std::string> pinned_fingerprint;
  // Trust the system's roots when no ca_file is given.
  bool system_roots = true;
};

// The client's context (provider node, client proxy). TLS 1.2 minimum, the
// same ciphers as the server, ALPN "http/1.1", verify_peer always.
// Errors: invalid_argument (a malformed pin; no ca_file, no system roots and
// no pin, which could trust nothing), not_found / corrupt (ca_file).
Result<std::shared_ptr<boost::asio::ssl::context>> make_client_tls_context(
    const ClientTlsOptions& options);

// Prepares one client connection before its handshake: SNI (only when `host`
// is a DNS name; IP literals, with or without brackets, send none) and,
// unless `options` pins a fingerprint, host-name verification inside the
// chain verification (SSL_set1_host for names, the IP SAN check for IP
// literals). A mismatch fails the handshake with verify result "hostname
// mismatch" / "IP address mismatch". `options` must be the ones the stream's
// context was made with. Works on the SSL* so that any stream type can use
// it; the template below takes an asio ssl::stream<tcp_stream or socket>.
// Errors: invalid_argument (empty host), internal.
Status prepare_client_stream(SSL* ssl, const std::string& host, const ClientTlsOptions& options);

template <class NextLayer>
Status prepare_client_stream(boost::asio::ssl::stream<NextLayer>& stream, const std::string& host,
                             const ClientTlsOptions& options) {
  return prepare_client_stream(stream.native_handle(), host, options);
}

// A readable message for a TLS error (handshake, read, write), for logs and
// CLI errors: OpenSSL's reason ("wrong version number") plus a hint where
// one helps, and, when `ssl` is the failed connection, why the certificate
// was rejected ("certificate verify failed: self-signed certificate in
// certificate chain", "... hostname mismatch", "... no certificate in the
// presented chain has the pinned fingerprint"). Non-TLS errors give
// ec.message().
std::string describe_tls_error(const boost::system::error_code& ec, const SSL* ssl = nullptr);

template <class NextLayer>
std::string describe_tls_error(const boost::system::error_code& ec,
                               boost::asio::ssl::stream<NextLayer>& stream) {
  return describe_tls_error(ec, stream.native_handle());
}

}  // namespace agora::net
