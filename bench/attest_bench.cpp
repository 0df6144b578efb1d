// What verifying attestation evidence costs the gateway (once per node per
// challenge: on connect and before each verdict expires) and the proxy
// (once per new evidence it is shown), with evidence minted by the test PKI
// (tests/attest/test_pki.h): a one-GPU and an eight-GPU NRAS EAT bundle, and
// a Play Integrity token.
#include <benchmark/benchmark.h>

#include <chrono>
#include <map>

#include "attest/verifier.h"
#include "common/clock.h"
#include "test_pki.h"

namespace {

using namespace agora::attest;
using namespace agora::attest::test_pki;

void BM_VerifyNvidiaBundle(benchmark::State& state) {
  Cert root = make_cert("Bench Root", nullptr, true, "critical,keyCertSign,cRLSign");
  Cert inter = make_cert("Bench Intermediate", &root, true, "critical,keyCertSign,cRLSign");
  Cert leaf = make_cert("Bench Signer", &inter, false, "critical,digitalSignature");
  NvidiaPolicy p;
  p.root_pem = pem(root.x509);
  p.hw_models = {"GH100 A01 GSP BROM"};
  p.min_driver_version = "550.54.15";
  auto verifier = make_nvidia_verifier(p);
  const std::string nonce = evidence_nonce(std::string(32, '\1'), std::string(32, '\2'));
  const int64_t now = agora::SystemClock::instance().unix_millis();
  std::map<std::string, std::string> gpus;
  for (int64_t i = 0; i < state.range(0); ++i) {
    gpus["GPU-" + std::to_string(i)] = sign_with_chain(gpu_claims(nonce, now / 1000), leaf, {&leaf, &inter});
  }
  const std::string bundle = eat_bundle(nonce, now / 1000, gpus, leaf, {&leaf, &inter});
  for (auto _ : state) {
    auto v = (*verifier)->verify(bundle, nonce, now);
    if (!v) state.SkipWithError(v.error().message.c_str());
    benchmark::DoNotOptimize(v);
  }
  state.counters["bytes"] = static_cast<double>(bundle.size());
}
BENCHMARK(BM_VerifyNvidiaBundle)->Arg(1)->Arg(8)->ArgName("gpus")->Unit(benchmark::kMicrosecond);

void BM_VerifyPlayIntegrity(benchmark::State& state) {
  const std::string kek(32, '\3');
  Pkey signing(EVP_EC_gen("P-256"));
  PlayIntegrityPolicy p;
  p.decryption_key = kek;
  EVP_PKEY_up_ref(signing.get());
  p.verification_key = Pkey(signing.get());
  p.package_name = "net.agora.provider";
  p.certificate_sha256 = "digest";
  auto verifier = make_play_integrity_verifier(std::move(p));
  const std::string nonce = evidence_nonce(std::string(32, '\1'), std::string(32, '\2'));
  const int64_t now = agora::SystemClock::instance().unix_millis();
  const std::string token = play_token(play_payload(nonce, now, "net.agora.provider", "digest"), kek, signing.get());
  for (auto _ : state) {
    auto v = verifier->verify(token, nonce, now);
    if (!v) state.SkipWithError(v.error().message.c_str());
    benchmark::DoNotOptimize(v);
  }
  state.counters["bytes"] = static_cast<double>(token.size());
}
BENCHMARK(BM_VerifyPlayIntegrity)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
