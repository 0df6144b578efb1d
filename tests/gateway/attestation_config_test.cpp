// The gateway's verifiers from its configuration: none unless configured,
// and a clear error naming the setting for every bad root or key file.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "crypto/encoding.h"
#include "crypto/random.h"
#include "gateway/attestation.h"

namespace agora::gateway {
namespace {

class AttestationConfig : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("agora-attest-config-" + crypto::random_base62(8));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
    return dir_ / name;
  }
  std::string error(const GatewayConfig& c) {
    auto v = load_verifiers(c);
    EXPECT_FALSE(v);
    return v ? std::string() : v.error().message;
  }
  std::filesystem::path dir_;
};

TEST_F(AttestationConfig, NoneUnlessConfigured) {
  auto v = load_verifiers(GatewayConfig{});
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->empty());
}

TEST_F(AttestationConfig, BadNvidiaRootsNameTheSetting) {
  GatewayConfig c;
  c.nvidia_root_cert = dir_ / "missing.pem";
  EXPECT_NE(error(c).find("nvidia_root_cert"), std::string::npos);
  c.nvidia_root_cert = write("junk.pem", "not a certificate");
  EXPECT_NE(error(c).find("nvidia_root_cert: nvidia attestation: the pinned root is not a PEM certificate"),
            std::string::npos);
  c.nvidia_hw_models.clear();
  EXPECT_NE(error(c).find("nvidia_hw_models"), std::string::npos);
}

TEST_F(AttestationConfig, PlayIntegrityNeedsEveryPieceAndTheRightKeys) {
  GatewayConfig c;
  c.play_integrity_decryption_key = write("kek.b64", crypto::to_base64(crypto::random_bytes(32)) + "\n");
  EXPECT_NE(error(c).find("must be given together"), std::string::npos);
  c.play_integrity_verification_key = write("verify.b64", "AAAA\n");
  EXPECT_NE(error(c).find("play_integrity_package"), std::string::npos);
  c.play_integrity_package = "net.agora.provider";
  c.play_integrity_cert_sha256 = "digest";
  EXPECT_NE(error(c).find("play_integrity_verification_key: the file must hold an EC public key"), std::string::npos);
  c.play_integrity_decryption_key = write("short.b64", crypto::to_base64(crypto::random_bytes(16)));
  EXPECT_NE(error(c).find("AES-256 key (32 bytes)"), std::string::npos);
}

}  // namespace
}  // namespace agora::gateway
