// agora-test-attester: the attestation command of the end-to-end tests
// (agora node --attestation-cmd), standing in for a device or for NVIDIA's
// attestation service, with a PKI made at test time.
//
//   agora-test-attester init DIR
//       a test NRAS root, intermediate and signer (DIR/nvidia-root.pem is
//       what the gateway and the proxy pin), and Play Integrity keys
//       (DIR/play-decryption.b64, DIR/play-verification.b64)
//   agora-test-attester nvidia DIR [--control FILE] [--ttl-s N] NONCE
//       prints an EAT bundle for one healthy H100 bound to NONCE
//   agora-test-attester play DIR [--control FILE] NONCE
//       prints a Play Integrity token bound to NONCE
//
// With --control FILE: when FILE holds "fail" the command fails (exit 3),
// "hang" it never answers (the node's timeout kills it), "debug" the GPU
// reports debug mode enabled; otherwise it answers normally.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "common/clock.h"
#include "common/file.h"
#include "common/text.h"
#include "crypto/encoding.h"
#include "crypto/random.h"
#include "test_pki.h"

#include <openssl/pem.h>

using namespace agora;
using namespace agora::attest::test_pki;
namespace json = boost::json;

namespace {

const char* kPackage = "net.agora.provider";
const char* kCertDigest = "dGVzdC1hcHAtc2lnbmluZy1jZXJ0aWZpY2F0ZQ";

std::string slurp(const std::string& path) {
  auto text = read_file(path);
  if (!text) throw std::runtime_error(text.error().message);
  return std::move(*text);
}

void spit(const std::string& path, const std::string& text) {
  if (Status st = write_file_atomic(path, text, 0600); !st) throw std::runtime_error(st.error().message);
}

std::string trimmed(const std::string& s) { return std::string(trim(s)); }

int init(const std::string& dir) {
  Cert root = make_cert("Agora Test NRAS Root", nullptr, true, "critical,keyCertSign,cRLSign");
  Cert inter = make_cert("Agora Test NRAS Intermediate", &root, true, "critical,keyCertSign,cRLSign");
  Cert signer = make_cert("Agora Test NRAS Signer", &inter, false, "critical,digitalSignature");
  spit(dir + "/nvidia-root.pem", pem(root.x509));
  spit(dir + "/nvidia-intermediate.pem", pem(inter.x509));
  spit(dir + "/nvidia-intermediate.key", private_pem(inter.key.get()));
  spit(dir + "/nvidia-signer.pem", pem(signer.x509));
  spit(dir + "/nvidia-signer.key", private_pem(signer.key.get()));
  attest::Pkey play(EVP_EC_gen("P-256"));
  spit(dir + "/play-signing.key", private_pem(play.get()));
  unsigned char* der = nullptr;
  const int n = i2d_PUBKEY(play.get(), &der);
  spit(dir + "/play-verification.b64",
       crypto::to_base64(std::string(reinterpret_cast<char*>(der), static_cast<size_t>(n))) + "\n");
  OPENSSL_free(der);
  spit(dir + "/play-decryption.b64", crypto::to_base64(crypto::random_bytes(32)) + "\n");
  spit(dir + "/play-package", std::string(kPackage) + "\n");
  spit(dir + "/play-cert-digest", std::string(kCertDigest) + "\n");
  return 0;
}

int nvidia(const std::string& dir, const std::string& nonce, int64_t ttl_s, bool debug) {
  Cert inter = cert_from_pem(slurp(dir + "/nvidia-intermediate.pem"), slurp(dir + "/nvidia-intermediate.key"));
  Cert signer = cert_from_pem(slurp(dir + "/nvidia-signer.pem"), slurp(dir + "/nvidia-signer.key"));
  const int64_t now_s = SystemClock::instance().unix_millis() / 1000;
  auto claims = gpu_claims(nonce, now_s, ttl_s);
  if (debug) claims["dbgstat"] = "enabled";
  const std::string gpu = sign_with_chain(claims, signer, {&signer, &inter});
  std::printf("%s\n", eat_bundle(nonce, now_s, {{"GPU-0", gpu}}, signer, {&signer, &inter}, {}, ttl_s).c_str());
  return 0;
}

int play(const std::string& dir, const std::string& nonce) {
  const std::string kek = *crypto::from_base64(trimmed(slurp(dir + "/play-decryption.b64")));
  const std::string key_pem = slurp(dir + "/play-signing.key");
  BIO* b = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  attest::Pkey key(PEM_read_bio_PrivateKey(b, nullptr, nullptr, nullptr));
  BIO_free(b);
  std::printf("%s\n", play_token(play_payload(nonce, SystemClock::instance().unix_millis(), kPackage, kCertDigest), kek, key.get()).c_str());
  return 0;
}

int usage() {
  std::fprintf(stderr,
               "usage: agora-test-attester init DIR\n"
               "       agora-test-attester nvidia DIR [--control FILE] [--ttl-s N] NONCE\n"
               "       agora-test-attester play DIR [--control FILE] NONCE\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc < 3) return usage();
  const std::string cmd = argv[1], dir = argv[2];
  if (cmd == "init") return init(dir);
  std::string control, nonce;
  int64_t ttl_s = 3600;
  for (int i = 3; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--control" && i + 1 < argc) control = argv[++i];
    else if (a == "--ttl-s" && i + 1 < argc) ttl_s = std::stoll(argv[++i]);
    else nonce = a;
  }
  if (nonce.empty()) return usage();
  std::string mode;
  if (!control.empty() && access(control.c_str(), R_OK) == 0) mode = trimmed(slurp(control));
  if (mode == "fail") {
    std::fprintf(stderr, "test attestation service: refusing to attest (control file says fail)\n");
    return 3;
  }
  if (mode == "hang") {
    for (;;) pause();  // until the node's timeout kills the process group
  }
  if (cmd == "nvidia") return nvidia(dir, nonce, ttl_s, mode == "debug");
  if (cmd == "play") return play(dir, nonce);
  return usage();
} catch (const std::exception& e) {
  std::fprintf(stderr, "agora-test-attester: %s\n", e.what());
  return 1;
}
