// agora-fuzz-seeds: writes the seeds that need keys — signed NRAS bundles,
// Play Integrity tokens, JWS/JWE, sealed jobs and responses — with a fresh
// test PKI, and the public half of it (plus the test-only symmetric keys)
// into tests/fuzz/keys, which the targets load. Run by `make fuzz-seeds`;
// the output is committed. The certificates are valid for 100 years, the
// tokens for the fixed time the targets verify at (fuzz_check.h).
//   agora-fuzz-seeds CORPUS_DIR
#include <openssl/evp.h>

#include <boost/json.hpp>
#include <filesystem>
#include <iostream>

#include "attest/jose.h"
#include "attest/verifier.h"
#include "crypto/hpke.h"
#include "crypto/random.h"
#include "fuzz_check.h"
#include "protocol/messages.h"
#include "protocol/sealed.h"
#include "test_pki.h"

using namespace agora;
namespace fs = std::filesystem;
namespace json = boost::json;
namespace pki = attest::test_pki;

namespace {

fs::path g_corpus;

void write(const fs::path& path, std::string_view bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::cerr << "cannot write " << path << "\n";
    std::exit(1);
  }
}
void seed(const char* target, const char* name, std::string_view bytes) { write(g_corpus / target / name, bytes); }
void key(const char* name, std::string_view bytes) { write(fs::path(AGORA_FUZZ_KEYS_DIR) / name, bytes); }

constexpr long kHundredYears = 100L * 365 * 24 * 3600;
const std::string kNonce(fuzz::kNonce);
constexpr int64_t kNowS = fuzz::kNowMs / 1000;

void nvidia_seeds() {
  pki::Cert root = pki::make_cert("Fuzz NRAS Root", nullptr, true, "critical,keyCertSign,cRLSign", kHundredYears);
  pki::Cert inter = pki::make_cert("Fuzz NRAS Intermediate", &root, true, "critical,keyCertSign,cRLSign", kHundredYears);
  pki::Cert leaf = pki::make_cert("Fuzz NRAS Signer", &inter, false, "critical,digitalSignature", kHundredYears);
  key("nvidia_root.pem", pki::pem(root.x509));
  key("nvidia_signer.pem", pki::public_pem(leaf.key.get()));
  const std::vector<const pki::Cert*> chain{&leaf, &inter};
  auto gpu = [&](json::object claims) { return pki::sign_with_chain(claims, leaf, chain); };
  const std::string t0 = gpu(pki::gpu_claims(kNonce, kNowS)), t1 = gpu(pki::gpu_claims(kNonce, kNowS));
  const std::string one = pki::eat_bundle(kNonce, kNowS, {{"GPU-0", t0}}, leaf, chain);
  seed("nvidia", "one_gpu.json", one);
  // The valid seeds must pass, or the fuzzer never gets past the checks.
  attest::NvidiaPolicy policy;
  policy.root_pem = pki::pem(root.x509);
  policy.hw_models = {"GH100 A01 GSP BROM"};
  policy.min_driver_version = "550.54.15";
  auto verdict = attest::make_nvidia_verifier(std::move(policy)).value()->verify(one, kNonce, fuzz::kNowMs);
  FUZZ_CHECK(verdict.ok(), "the one-GPU seed must verify");
  seed("nvidia", "two_gpus.json", pki::eat_bundle(kNonce, kNowS, {{"GPU-0", t0}, {"GPU-1", t1}}, leaf, chain));
  seed("nvidia", "overall_false.json", pki::eat_bundle(kNonce, kNowS, {{"GPU-0", t0}}, leaf, chain, [](json::object& o) {
         o["x-nvidia-overall-att-result"] = false;
       }));
  auto debug = pki::gpu_claims(kNonce, kNowS);
  debug["dbgstat"] = "enabled";
  seed("nvidia", "debug_gpu.json", pki::eat_bundle(kNonce, kNowS, {{"GPU-0", gpu(debug)}}, leaf, chain));
  seed("jose", "es384.jws", t0);
  seed("nvidia_claims", "gpu.json", json::serialize(pki::gpu_claims(kNonce, kNowS)));
  auto old = pki::gpu_claims(kNonce, kNowS);
  old["x-nvidia-gpu-driver-version"] = "535.1";
  seed("nvidia_claims", "old_driver.json", json::serialize(old));
  seed("pem", "root.pem", pki::pem(root.x509));
  seed("pem", "chain.pem", pki::pem(leaf.x509) + pki::pem(inter.x509));
  seed("pem", "public.pem", pki::public_pem(leaf.key.get()));
}

void play_seeds() {
  attest::Pkey signing(EVP_EC_gen("P-256"));
  const std::string kek = crypto::random_bytes(32);
  key("play_verification.pem", pki::public_pem(signing.get()));
  key("play_decryption.key", kek);
  const std::string package = "dev.agora.node", cert = "ZnV6eiBjZXJ0aWZpY2F0ZSBkaWdlc3Q";
  json::object payload = pki::play_payload(kNonce, fuzz::kNowMs, package, cert);
  const std::string token = pki::play_token(payload, kek, signing.get());
  seed("play_integrity", "device.jwe", token);
  attest::PlayIntegrityPolicy policy;
  policy.decryption_key = kek;
  policy.verification_key = attest::public_key_from_pem(pki::public_pem(signing.get())).value();
  policy.package_name = package;
  policy.certificate_sha256 = cert;
  auto verdict = attest::make_play_integrity_verifier(std::move(policy))->verify(token, kNonce, fuzz::kNowMs);
  FUZZ_CHECK(verdict.ok(), "the Play Integrity seed must verify");
  seed("play_integrity_claims", "device.json", json::serialize(payload));
  json::object strong = payload;
  strong["deviceIntegrity"].as_object()["deviceRecognitionVerdict"] = json::array{"MEETS_STRONG_INTEGRITY"};
  seed("play_integrity_claims", "strong.json", json::serialize(strong));
  json::object stamped = payload;
  stamped["requestDetails"].as_object()["timestampMillis"] = std::to_string(fuzz::kNowMs);
  seed("play_integrity_claims", "string_time.json", json::serialize(stamped));
  auto jws = attest::sign_jws({{"alg", "ES256"}}, json::serialize(payload), attest::JwsAlg::es256, signing.get());
  seed("jose", "es256.jws", *jws);
  seed("jose", "a256kw.jwe", *attest::encrypt_jwe(*jws, kek));
}

void sealed_seeds() {
  auto identity = *crypto::hpke::derive_key_pair(fuzz::kIdentityIkm);
  const std::string node(fuzz::kFuzzNodeId);
  protocol::GenerationRequest payload;
  payload.messages.push_back({"user", "Hello!"});
  payload.max_tokens = 16;
  protocol::sealed::Header h{"tiny", 16, true, fuzz::kNowMs, {node}};
  protocol::sealed::Recipient r{node, identity.public_key};
  auto sealed = protocol::sealed::seal_request(h, payload, std::span(&r, 1)).value();
  protocol::Job job;
  job.job = 7;
  job.model = "tiny";
  job.request.max_tokens = 16;
  const auto& wk = sealed.request.keys.front();
  job.sealed = protocol::SealedJob{fuzz::kNowMs, true, {node}, wk.enc, wk.wrapped, sealed.request.ciphertext};
  // The node's side: open and seal two chunks back.
  auto opened = protocol::sealed::open_request(h, wk, sealed.request.ciphertext, identity).value();
  protocol::sealed::ResponseSealer sealer(opened.context);
  // The plaintexts are frames, as the node seals them (node.cpp).
  protocol::Delta inner_delta{0, "Hi", {}, std::nullopt};
  protocol::Done inner_done{0, protocol::FinishReason::stop, {5, 1, 0}, {0.1, 2.0, 3.0}, std::nullopt};
  protocol::Delta d{7, "", {}, protocol::SealedChunk{0, false, *sealer.seal(protocol::encode(inner_delta), false)}};
  protocol::Done done;
  done.job = 7;
  done.sealed = protocol::SealedChunk{1, true, *sealer.seal(protocol::encode(inner_done), true)};
  const std::string frames = protocol::encode(job) + "\n" + protocol::encode(d) + "\n" + protocol::encode(done);
  seed("sealed", "job_and_chunks.txt", frames);
  seed("sealed", "job_only.txt", protocol::encode(job));
  seed("node_frame", "sealed_job.json", protocol::encode(job));
  seed("node_frame", "sealed_delta.json", protocol::encode(d));
  seed("node_frame", "sealed_done.json", protocol::encode(done));
  seed("sealed", "raw_hpke.bin", wk.enc + wk.wrapped);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: agora-fuzz-seeds CORPUS_DIR (tests/fuzz/corpus)\n";
    return 2;
  }
  g_corpus = argv[1];
  nvidia_seeds();
  play_seeds();
  sealed_seeds();
  std::cout << "wrote seeds under " << g_corpus.string() << " and keys under " << AGORA_FUZZ_KEYS_DIR << "\n";
  return 0;
}
