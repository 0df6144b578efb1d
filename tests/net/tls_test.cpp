// TLS: the self-signed CA and server certificate on disk, and real
// handshakes over loopback between make_server_tls_context() and
// make_client_tls_context() (CA file, host names, pins, protocol versions).
#include "net/tls.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "fakes/manual_clock.h"
#include "support/test_models.h"

namespace agora::net {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
namespace fs = std::filesystem;
using boost::system::error_code;
using tcp = asio::ip::tcp;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr auto kHandshakeTimeout = std::chrono::seconds(10);

using fakes::ManualClock;
constexpr std::chrono::hours days(int n) { return std::chrono::hours(24 * n); }

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Owner = std::unique_ptr<X509, X509Free>;

std::vector<X509Owner> read_pem_certs(const fs::path& path) {
  std::vector<X509Owner> out;
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return out;
  while (X509* x = PEM_read_X509(f, nullptr, nullptr, nullptr)) out.emplace_back(x);
  std::fclose(f);
  return out;
}

std::vector<std::string> san_strings(X509* cert) {
  std::vector<std::string> out;
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type == GEN_DNS) {
      out.push_back("DNS:" + std::string(reinterpret_cast<const char*>(
                                             ASN1_STRING_get0_data(name->d.dNSName)),
                                         static_cast<size_t>(ASN1_STRING_length(name->d.dNSName))));
    } else if (name->type == GEN_IPADD) {
      const unsigned char* p = ASN1_STRING_get0_data(name->d.iPAddress);
      const int len = ASN1_STRING_length(name->d.iPAddress);
      if (len == 4) {
        out.push_back("IP:" + asio::ip::address_v4({p[0], p[1], p[2], p[3]}).to_string());
      } else if (len == 16) {
        asio::ip::address_v6::bytes_type bytes;
        std::copy(p, p + 16, bytes.begin());
        out.push_back("IP:" + asio::ip::address_v6(bytes).to_string());
      }
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

std::string common_name(X509* cert) {
  char buf[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof buf);
  return buf;
}

unsigned file_mode(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 0777;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream(path) << text;
}

TlsFiles make_tls(const fs::path& dir, const std::vector<std::string>& extra = {}) {
  auto files = ensure_self_signed_tls(dir, extra);
  if (!files) ADD_FAILURE() << files.error().to_string();
  return files ? *files : TlsFiles{};
}

std::shared_ptr<ssl::context> server_context(const TlsFiles& files) {
  auto ctx = make_server_tls_context(files.cert, files.key);
  if (!ctx) ADD_FAILURE() << ctx.error().to_string();
  return ctx ? *ctx : nullptr;
}

std::shared_ptr<ssl::context> client_context(const ClientTlsOptions& options) {
  auto ctx = make_client_tls_context(options);
  if (!ctx) ADD_FAILURE() << ctx.error().to_string();
  return ctx ? *ctx : nullptr;
}

struct Outcome {
  bool finished = false;  // both sides completed within kHandshakeTimeout
  error_code client;
  error_code server;
  std::string client_error;  // describe_tls_error(client, stream)
  std::string server_error;
  int version = 0;   // negotiated protocol (client side), on success
  std::string alpn;  // ALPN protocol the client saw
  bool ok() const { return finished && !client && !server; }
};

// One TLS handshake over loopback: a server (ssl::stream<tcp::socket>) on
// `bind`:0 and a client (ssl::stream<beast::tcp_stream>) that verifies
// `verify_host`, on one io_context run for at most kHandshakeTimeout.
Outcome run_handshake(ssl::context& server_ctx, ssl::context& client_ctx,
                      const std::string& verify_host, const ClientTlsOptions& options,
                      const std::string& bind = "127.0.0.1") {
  Outcome out;
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address(bind), 0));
  ssl::stream<tcp::socket> server(io, server_ctx);
  ssl::stream<boost::beast::tcp_stream> client(io, client_ctx);
  bool server_done = false;
  bool client_done = false;

  const Status prepared = prepare_client_stream(client, verify_host, options);
  if (!prepared) {
    ADD_FAILURE() << prepared.error().to_string();
    return out;
  }
  acceptor.async_accept(server.lowest_layer(), [&](error_code ec) {
    if (ec) {
      out.server = ec;
      server_done = true;
      return;
    }
    server.async_handshake(ssl::stream_base::server, [&](error_code hec) {
      out.server = hec;
      if (hec) {
        out.server_error = describe_tls_error(hec, server);
        server.lowest_layer().close();
      }
      server_done = true;
    });
  });
  client.next_layer().async_connect(acceptor.local_endpoint(), [&](error_code ec) {
    if (ec) {
      out.client = ec;
      client_done = true;
      return;
    }
    client.async_handshake(ssl::stream_base::client, [&](error_code hec) {
      out.client = hec;
      if (hec) {
        out.client_error = describe_tls_error(hec, client);
        client.next_layer().close();  // so a server still waiting sees the end
      } else {
        out.version = SSL_version(client.native_handle());
        const unsigned char* alpn = nullptr;
        unsigned int alpn_len = 0;
        SSL_get0_alpn_selected(client.native_handle(), &alpn, &alpn_len);
        out.alpn.assign(reinterpret_cast<const char*>(alpn), alpn_len);
      }
      client_done = true;
    });
  });
  io.run_for(kHandshakeTimeout);
  out.finished = server_done && client_done;
  EXPECT_TRUE(out.finished) << "handshake did not finish in time";
  return out;
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = agora::testing::temp_dir() / "tls";
    files_ = make_tls(dir_);
    ASSERT_TRUE(files_.created);
    server_ = server_context(files_);
    ASSERT_NE(server_, nullptr);
  }

  // A client trusting the CA file and verifying `host`.
  Outcome handshake_with_ca_file(const std::string& host) {
    ClientTlsOptions options;
    options.ca_file = files_.ca_cert;
    auto client = client_context(options);
    if (!client) return {};
    return run_handshake(*server_, *client, host, options);
  }

  Outcome handshake_with_pin(const std::string& pin, const std::string& host = "localhost") {
    ClientTlsOptions options;
    options.pinned_fingerprint = pin;
    options.system_roots = false;
    auto client = client_context(options);
    if (!client) return {};
    return run_handshake(*server_, *client, host, options);
  }

  fs::path dir_;
  TlsFiles files_;
  std::shared_ptr<ssl::context> server_;
};

// --- The files ---

TEST_F(TlsTest, CreatesCaAndServerFilesWithPrivatePermissions) {
  EXPECT_EQ(files_.ca_cert, dir_ / "ca.pem");
  EXPECT_EQ(files_.cert, dir_ / "server.pem");
  EXPECT_EQ(files_.key, dir_ / "server-key.pem");
  EXPECT_EQ(file_mode(dir_), 0700u);
  EXPECT_EQ(file_mode(dir_ / "ca-key.pem"), 0600u);
  EXPECT_EQ(file_mode(dir_ / "server-key.pem"), 0600u);
  EXPECT_EQ(file_mode(dir_ / "ca.pem"), 0644u);
  EXPECT_EQ(file_mode(dir_ / "server.pem"), 0644u);
  // No temporary files left behind.
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir_)) ++entries;
  EXPECT_EQ(entries, 4u);

  auto ca_fp = certificate_fingerprint(files_.ca_cert);
  ASSERT_TRUE(ca_fp) << ca_fp.error().to_string();
  EXPECT_EQ(*ca_fp, files_.ca_fingerprint);
  EXPECT_EQ(files_.ca_fingerprint.size(), 95u);
  EXPECT_EQ(normalize_fingerprint(files_.ca_fingerprint), files_.ca_fingerprint);

  auto ca = read_pem_certs(files_.ca_cert);
  ASSERT_EQ(ca.size(), 1u);
  EXPECT_THAT(common_name(ca[0].get()), StartsWith("Agora local CA "));
  EXPECT_EQ(X509_check_ca(ca[0].get()), 1);
  EXPECT_EQ(X509_get_key_usage(ca[0].get()), static_cast<uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  EXPECT_EQ(X509_get_pathlen(ca[0].get()), 0);
  EXPECT_NE(X509_get0_subject_key_id(ca[0].get()), nullptr);

  auto chain = read_pem_certs(files_.cert);
  ASSERT_EQ(chain.size(), 2u) << "server.pem holds the leaf, then the CA";
  X509* leaf = chain[0].get();
  EXPECT_EQ(fingerprint_of(chain[1].get()), files_.ca_fingerprint);
  EXPECT_EQ(common_name(leaf), "localhost");
  EXPECT_EQ(X509_check_ca(leaf), 0);
  EXPECT_EQ(X509_get_key_usage(leaf), static_cast<uint32_t>(KU_DIGITAL_SIGNATURE));
  EXPECT_EQ(X509_get_extended_key_usage(leaf), static_cast<uint32_t>(XKU_SSL_SERVER));
  EXPECT_NE(X509_get0_authority_key_id(leaf), nullptr);
  EXPECT_EQ(X509_check_issued(ca[0].get(), leaf), X509_V_OK);
  const auto sans = san_strings(leaf);
  EXPECT_THAT(sans, ::testing::IsSupersetOf({std::string("DNS:localhost"),
                                             std::string("IP:127.0.0.1"), std::string("IP:::1")}));
  // 397 days of validity, starting about now.
  int days = 0;
  int seconds = 0;
  ASSERT_EQ(ASN1_TIME_diff(&days, &seconds, X509_get0_notBefore(leaf), X509_get0_notAfter(leaf)),
            1);
  EXPECT_GE(days, 397);
  EXPECT_LE(days, 398);
  // A random serial of about 128 bits.
  const ASN1_INTEGER* serial = X509_get0_serialNumber(leaf);
  EXPECT_GE(ASN1_STRING_length(serial), 14);
}

TEST_F(TlsTest, SecondCallLoadsWhatExists) {
  const auto leaf_fp = certificate_fingerprint(files_.cert);
  ASSERT_TRUE(leaf_fp);
  auto again = ensure_self_signed_tls(dir_);
  ASSERT_TRUE(again) << again.error().to_string();
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->ca_fingerprint, files_.ca_fingerprint);
  EXPECT_EQ(certificate_fingerprint(files_.cert).value(), *leaf_fp);
}

TEST_F(TlsTest, ReissuesForAMissingExtraNameAndKeepsTheCa) {
  const auto old_leaf = certificate_fingerprint(files_.cert).value();
  auto reissued = ensure_self_signed_tls(dir_, {"Gateway.Example", "10.1.2.3", "[fd00::7]"});
  ASSERT_TRUE(reissued) << reissued.error().to_string();
  EXPECT_TRUE(reissued->created);
  EXPECT_EQ(reissued->ca_fingerprint, files_.ca_fingerprint);
  EXPECT_NE(certificate_fingerprint(files_.cert).value(), old_leaf);
  auto chain = read_pem_certs(files_.cert);
  ASSERT_FALSE(chain.empty());
  EXPECT_THAT(
      san_strings(chain[0].get()),
      ::testing::IsSupersetOf({std::string("DNS:localhost"), std::string("DNS:gateway.example"),
                               std::string("IP:10.1.2.3"), std::string("IP:fd00::7")}));

  // Same names again: nothing to do. A subset: nothing to do either.
  auto same = ensure_self_signed_tls(dir_, {"gateway.example", "10.1.2.3"});
  ASSERT_TRUE(same) << same.error().to_string();
  EXPECT_FALSE(same->created);

  // A client that trusted (or pinned) the CA before keeps working with the
  // new certificate, under the new name.
  server_ = server_context(files_);
  ASSERT_NE(server_, nullptr);
  EXPECT_TRUE(handshake_with_ca_file("gateway.example").ok());
  EXPECT_TRUE(handshake_with_ca_file("10.1.2.3").ok());
  EXPECT_TRUE(handshake_with_pin(files_.ca_fingerprint).ok());
}

TEST_F(TlsTest, RenewsTheServerCertificateThirtyDaysBeforeItExpires) {
  const fs::path dir = agora::testing::temp_dir() / "tls-clock";
  ManualClock clock(SystemClock::instance().unix_millis());
  auto first = ensure_self_signed_tls(dir, {}, clock);
  ASSERT_TRUE(first) << first.error().to_string();
  const auto leaf = certificate_fingerprint(first->cert).value();

  clock.advance(days(366));  // expires in 31 days: keep
  auto kept = ensure_self_signed_tls(dir, {}, clock);
  ASSERT_TRUE(kept) << kept.error().to_string();
  EXPECT_FALSE(kept->created);
  EXPECT_EQ(certificate_fingerprint(first->cert).value(), leaf);

  clock.advance(days(2));  // expires in 29 days: re-issue from the same CA
  auto renewed = ensure_self_signed_tls(dir, {}, clock);
  ASSERT_TRUE(renewed) << renewed.error().to_string();
  EXPECT_TRUE(renewed->created);
  EXPECT_EQ(renewed->ca_fingerprint, first->ca_fingerprint);
  EXPECT_NE(certificate_fingerprint(first->cert).value(), leaf);
}

TEST_F(TlsTest, ReissuesADamagedServerCertificate) {
  write_text(files_.cert, "not a certificate\n");
  auto repaired = ensure_self_signed_tls(dir_);
  ASSERT_TRUE(repaired) << repaired.error().to_string();
  EXPECT_TRUE(repaired->created);
  EXPECT_EQ(repaired->ca_fingerprint, files_.ca_fingerprint);
  EXPECT_TRUE(make_server_tls_context(files_.cert, files_.key));
}

TEST_F(TlsTest, ReissueWithoutTheCaKeyIsAClearError) {
  fs::remove(dir_ / "ca-key.pem");
  auto still_fine = ensure_self_signed_tls(dir_);  // nothing to issue: the CA key is not needed
  ASSERT_TRUE(still_fine) << still_fine.error().to_string();
  EXPECT_FALSE(still_fine->created);
  auto needs_key = ensure_self_signed_tls(dir_, {"new.example"});
  ASSERT_FALSE(needs_key);
  EXPECT_EQ(needs_key.error().code, Errc::unavailable);
  EXPECT_THAT(needs_key.error().message, HasSubstr("ca-key.pem"));
}

TEST_F(TlsTest, DamagedCaIsReportedNotReplaced) {
  const std::string pem = read_text(files_.ca_cert);
  write_text(files_.ca_cert, pem.substr(0, pem.size() / 2));
  auto broken = ensure_self_signed_tls(dir_);
  ASSERT_FALSE(broken);
  EXPECT_EQ(broken.error().code, Errc::corrupt);
  EXPECT_THAT(broken.error().message, HasSubstr("ca.pem"));
  EXPECT_THAT(broken.error().message, HasSubstr("error:")) << "carries OpenSSL's error string";
}

TEST(TlsNames, BadExtraNameIsRejected) {
  for (const char* name : {"bad name", "exa mple.com", "-x.example", "a..b", "*", "*.com", ""}) {
    auto r = ensure_self_signed_tls(agora::testing::temp_dir() / "tls", {name});
    ASSERT_FALSE(r) << name;
    EXPECT_EQ(r.error().code, Errc::invalid_argument) << name;
  }
  EXPECT_TRUE(ensure_self_signed_tls(agora::testing::temp_dir() / "tls", {"*.gw.example"}));
}

// --- Fingerprints ---

TEST(TlsFingerprint, NormalizesAnyCaseWithOrWithoutColons) {
  const std::string canonical =
      "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:"
      "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";
  EXPECT_EQ(normalize_fingerprint(canonical), canonical);
  EXPECT_EQ(
      normalize_fingerprint("abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"),
      canonical);
  std::string lower_colons = canonical;
  for (char& c : lower_colons) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  EXPECT_EQ(normalize_fingerprint("  " + lower_colons + "\n"), canonical);
  EXPECT_EQ(normalize_fingerprint("sha256 Fingerprint=" + canonical), canonical);
  EXPECT_EQ(normalize_fingerprint("SHA256:" + lower_colons), canonical);

  EXPECT_EQ(normalize_fingerprint(""), std::nullopt);
  EXPECT_EQ(normalize_fingerprint(canonical.substr(3)), std::nullopt);  // 31 bytes
  EXPECT_EQ(normalize_fingerprint(canonical + ":AB"), std::nullopt);    // 33 bytes
  EXPECT_EQ(normalize_fingerprint("zz" + canonical.substr(2)), std::nullopt);
  std::string shifted = canonical;
  std::swap(shifted[2], shifted[3]);  // "ABC:D..."
  EXPECT_EQ(normalize_fingerprint(shifted), std::nullopt);
  EXPECT_EQ(normalize_fingerprint(std::string(64, 'g')), std::nullopt);
}

TEST(TlsFingerprint, MissingOrGarbageFilesNameTheFile) {
  const fs::path dir = agora::testing::temp_dir();
  auto missing = certificate_fingerprint(dir / "nope.pem");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::not_found);
  EXPECT_THAT(missing.error().message, HasSubstr("nope.pem"));
  write_text(dir / "garbage.pem",
             "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n");
  auto garbage = certificate_fingerprint(dir / "garbage.pem");
  ASSERT_FALSE(garbage);
  EXPECT_EQ(garbage.error().code, Errc::corrupt);
  EXPECT_THAT(garbage.error().message, HasSubstr("garbage.pem"));
}

// --- Contexts ---

TEST_F(TlsTest, KeyThatDoesNotMatchTheCertificateIsAClearError) {
  const TlsFiles other = make_tls(agora::testing::temp_dir() / "other");
  auto ctx = make_server_tls_context(files_.cert, other.key);
  ASSERT_FALSE(ctx);
  EXPECT_EQ(ctx.error().code, Errc::invalid_argument);
  EXPECT_THAT(ctx.error().message, HasSubstr("does not match"));
  EXPECT_THAT(ctx.error().message, HasSubstr(other.key.string()));
  EXPECT_THAT(ctx.error().message, HasSubstr(files_.cert.string()));
}

TEST(TlsContext, ClientOptionErrors) {
  ClientTlsOptions bad_pin;
  bad_pin.pinned_fingerprint = "12:34";
  auto a = make_client_tls_context(bad_pin);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().code, Errc::invalid_argument);

  ClientTlsOptions trusts_nothing;
  trusts_nothing.system_roots = false;
  auto b = make_client_tls_context(trusts_nothing);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code, Errc::invalid_argument);

  ClientTlsOptions missing_ca;
  missing_ca.ca_file = agora::testing::temp_dir() / "missing.pem";
  auto c = make_client_tls_context(missing_ca);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, Errc::not_found);

  EXPECT_TRUE(make_client_tls_context(ClientTlsOptions{}));  // system roots
}

TEST_F(TlsTest, PrepareRefusesOptionsThatDisagreeWithTheContext) {
  ClientTlsOptions unpinned;
  unpinned.ca_file = files_.ca_cert;
  auto ctx = client_context(unpinned);
  ASSERT_NE(ctx, nullptr);
  asio::io_context io;
  ssl::stream<tcp::socket> stream(io, *ctx);
  ClientTlsOptions pinned = unpinned;
  pinned.pinned_fingerprint = files_.ca_fingerprint;
  // Skipping the host-name check without a pin in the context would accept
  // any certificate the CA signed, for any name.
  EXPECT_FALSE(prepare_client_stream(stream, "localhost", pinned));
  EXPECT_TRUE(prepare_client_stream(stream, "localhost", unpinned));
  EXPECT_FALSE(prepare_client_stream(stream, "", unpinned));
}

// --- Handshakes: CA file and host names ---

TEST_F(TlsTest, CaFileVerifiesLocalhost) {
  const Outcome out = handshake_with_ca_file("localhost");
  EXPECT_TRUE(out.ok()) << out.client_error << " / " << out.server_error;
  EXPECT_EQ(out.alpn, "http/1.1");
  EXPECT_EQ(out.version, TLS1_3_VERSION);
}

TEST_F(TlsTest, CaFileVerifiesTheLoopbackIp) {
  const Outcome out = handshake_with_ca_file("127.0.0.1");
  EXPECT_TRUE(out.ok()) << out.client_error << " / " << out.server_error;
}

TEST_F(TlsTest, CaFileVerifiesIpv6Loopback) {
  ClientTlsOptions options;
  options.ca_file = files_.ca_cert;
  auto client = client_context(options);
  ASSERT_NE(client, nullptr);
  // Debian 12 machines (and CI) have the IPv6 loopback; a missing one is a
  // failure here, not a skip.
  const Outcome out = run_handshake(*server_, *client, "[::1]", options, "::1");
  EXPECT_TRUE(out.ok()) << out.client_error << " / " << out.server_error;
}

TEST_F(TlsTest, ADifferentCaFails) {
  const TlsFiles other = make_tls(agora::testing::temp_dir() / "other");
  ClientTlsOptions options;
  options.ca_file = other.ca_cert;
  auto client = client_context(options);
  ASSERT_NE(client, nullptr);
  const Outcome out = run_handshake(*server_, *client, "localhost", options);
  ASSERT_TRUE(out.finished);
  EXPECT_TRUE(out.client);
  EXPECT_TRUE(out.server) << "the server sees the client's alert";
  EXPECT_EQ(out.client_error,
            "certificate verify failed: self-signed certificate in certificate chain");
  EXPECT_THAT(out.server_error, HasSubstr("unknown ca"));
}

TEST_F(TlsTest, SystemRootsDoNotTrustTheLocalCa) {
  ClientTlsOptions options;  // no CA file, no pin: system roots only
  auto client = client_context(options);
  ASSERT_NE(client, nullptr);
  const Outcome out = run_handshake(*server_, *client, "localhost", options);
  ASSERT_TRUE(out.finished);
  EXPECT_THAT(out.client_error, StartsWith("certificate verify failed"));
}

TEST_F(TlsTest, HostNameMismatchFails) {
  const Outcome out = handshake_with_ca_file("example.com");
  ASSERT_TRUE(out.finished);
  EXPECT_TRUE(out.client);
  EXPECT_EQ(out.client_error, "certificate verify failed: hostname mismatch");
}

TEST_F(TlsTest, IpAddressMismatchFails) {
  const Outcome out = handshake_with_ca_file("127.0.0.2");
  ASSERT_TRUE(out.finished);
  EXPECT_TRUE(out.client);
  EXPECT_EQ(out.client_error, "certificate verify failed: IP address mismatch");
}

// --- Handshakes: pins ---

TEST_F(TlsTest, PinnedCaSucceedsWithoutTheCaFileAndIgnoresTheHostName) {
  EXPECT_TRUE(handshake_with_pin(files_.ca_fingerprint).ok());
  EXPECT_TRUE(handshake_with_pin(files_.ca_fingerprint, "example.com").ok());
}

TEST_F(TlsTest, PinnedLeafSucceedsInAnyFingerprintForm) {
  std::string leaf = certificate_fingerprint(files_.cert).value();
  ASSERT_NE(leaf, files_.ca_fingerprint);
  std::string bare;
  for (char c : leaf) {
    if (c != ':') bare += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  const Outcome out = handshake_with_pin(bare, "127.0.0.1");
  EXPECT_TRUE(out.ok()) << out.client_error << " / " << out.server_error;
}

TEST_F(TlsTest, WrongPinFails) {
  const TlsFiles other = make_tls(agora::testing::temp_dir() / "other");
  const Outcome out = handshake_with_pin(other.ca_fingerprint);
  ASSERT_TRUE(out.finished);
  EXPECT_TRUE(out.client);
  EXPECT_THAT(out.client_error, StartsWith("certificate verify failed: no certificate in the "
                                           "presented chain has the pinned fingerprint"));
  EXPECT_THAT(out.server_error, HasSubstr("bad certificate"));
}

// An attacker can copy the (public) CA certificate into the chain in front of
// a leaf of their own: pinning the CA must still reject it.
TEST_F(TlsTest, PinnedCaRejectsAForeignLeafBehindACopiedCa) {
  const TlsFiles attacker = make_tls(agora::testing::temp_dir() / "attacker");
  const fs::path forged = agora::testing::temp_dir() / "forged.pem";
  const std::string attacker_chain = read_text(attacker.cert);
  const std::string attacker_leaf =
      attacker_chain.substr(0, attacker_chain.find("-----END CERTIFICATE-----") + 26);
  write_text(forged, attacker_leaf + read_text(files_.ca_cert));
  auto forged_ctx = make_server_tls_context(forged, attacker.key);
  ASSERT_TRUE(forged_ctx) << forged_ctx.error().to_string();
  server_ = *forged_ctx;

  const Outcome out = handshake_with_pin(files_.ca_fingerprint);
  ASSERT_TRUE(out.finished);
  EXPECT_TRUE(out.client);
  EXPECT_THAT(out.client_error, StartsWith("certificate verify failed"));
  EXPECT_THAT(out.client_error, ::testing::Not(HasSubstr("pinned fingerprint")))
      << "the pin was found; the chain to it must be what failed";
}

// --- Handshakes: protocol versions ---

TEST_F(TlsTest, Tls11ClientIsRefused) {
  ClientTlsOptions options;
  options.ca_file = files_.ca_cert;
  auto client = client_context(options);
  ASSERT_NE(client, nullptr);
  SSL_CTX* ctx = client->native_handle();
  ASSERT_EQ(SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION), 1);
  ASSERT_EQ(SSL_CTX_set_max_proto_version(ctx, TLS1_1_VERSION), 1);
  // OpenSSL 3 allows TLS < 1.2 only at security level 0.
  ASSERT_EQ(SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0"), 1);
  const Outcome out = run_handshake(*server_, *client, "localhost", options);
  ASSERT_TRUE(out.finished);
  EXPECT_TRUE(out.client);
  EXPECT_TRUE(out.server);
  EXPECT_THAT(out.server_error, HasSubstr("unsupported protocol"))
      << "the server refused, not the client";
  EXPECT_THAT(out.client_error, HasSubstr("protocol version"));
}

TEST_F(TlsTest, Tls12ClientSucceeds) {
  ClientTlsOptions options;
  options.ca_file = files_.ca_cert;
  auto client = client_context(options);
  ASSERT_NE(client, nullptr);
  ASSERT_EQ(SSL_CTX_set_max_proto_version(client->native_handle(), TLS1_2_VERSION), 1);
  const Outcome out = run_handshake(*server_, *client, "localhost", options);
  EXPECT_TRUE(out.ok()) << out.client_error << " / " << out.server_error;
  EXPECT_EQ(out.version, TLS1_2_VERSION);
  EXPECT_EQ(out.alpn, "http/1.1");
}

TEST_F(TlsTest, Tls12ClientWithoutAnAeadCipherIsRefused) {
  ClientTlsOptions options;
  options.ca_file = files_.ca_cert;
  auto client = client_context(options);
  ASSERT_NE(client, nullptr);
  ASSERT_EQ(SSL_CTX_set_max_proto_version(client->native_handle(), TLS1_2_VERSION), 1);
  ASSERT_EQ(SSL_CTX_set_cipher_list(client->native_handle(), "ECDHE-ECDSA-AES128-SHA"), 1);
  const Outcome out = run_handshake(*server_, *client, "localhost", options);
  ASSERT_TRUE(out.finished);
  EXPECT_TRUE(out.server);
  EXPECT_THAT(out.server_error, HasSubstr("no shared cipher"));
}

// --- Error text for a peer that does not speak TLS ---

TEST(TlsErrors, TlsClientAgainstPlainHttpSaysWrongVersionNumber) {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket plain(io);
  const std::string reply = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
  acceptor.async_accept(plain, [&](error_code ec) {
    if (!ec) asio::async_write(plain, asio::buffer(reply), [](error_code, size_t) {});
  });
  ClientTlsOptions options;
  options.system_roots = false;
  options.pinned_fingerprint = std::string(64, 'a');
  auto ctx = make_client_tls_context(options);
  ASSERT_TRUE(ctx) << ctx.error().to_string();
  ssl::stream<boost::beast::tcp_stream> client(io, **ctx);
  ASSERT_TRUE(prepare_client_stream(client, "localhost", options));
  std::string text;
  bool done = false;
  client.next_layer().async_connect(acceptor.local_endpoint(), [&](error_code ec) {
    ASSERT_FALSE(ec) << ec.message();
    client.async_handshake(ssl::stream_base::client, [&](error_code hec) {
      text = describe_tls_error(hec, client);
      done = true;
      plain.close();
    });
  });
  io.run_for(kHandshakeTimeout);
  ASSERT_TRUE(done);
  EXPECT_THAT(text, StartsWith("wrong version number"));
}

TEST(TlsErrors, NonTlsErrorsUseTheirOwnMessage) {
  EXPECT_EQ(describe_tls_error(error_code{}), "no error");
  EXPECT_EQ(describe_tls_error(asio::error::connection_refused),
            error_code(asio::error::connection_refused).message());
  EXPECT_THAT(describe_tls_error(ssl::error::stream_truncated), StartsWith("stream truncated"));
}

}  // namespace
}  // namespace agora::net
