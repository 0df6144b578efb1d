#include "crypto/master_secret.h"

#include <openssl/crypto.h>

#include "crypto/secret_file.h"

namespace agora::crypto {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kExtractSalt = "agora master secret v1";

std::string derive_key(const Digest256& prk, std::string_view label) {
  std::string info(label);
  info.push_back('\0');
  return hkdf_expand(prk, as_bytes(info), 32);
}

Digest256 extract(std::string_view bytes) { return hkdf_extract(as_bytes(kExtractSalt), as_bytes(bytes)); }

}  // namespace

MasterSecret::MasterSecret(std::string_view bytes)
    : prk_(extract(bytes)),
      api_key_hasher_(as_bytes(derive_key(prk_, "agora/v1/api-key-hash"))),
      token_hasher_(as_bytes(derive_key(prk_, "agora/v1/provider-token-hash"))) {}

MasterSecret::~MasterSecret() { OPENSSL_cleanse(prk_.data(), prk_.size()); }

std::shared_ptr<const MasterSecret> MasterSecret::from_bytes(std::string_view bytes) {
  return std::shared_ptr<const MasterSecret>(new MasterSecret(bytes));
}

Result<std::shared_ptr<const MasterSecret>> MasterSecret::load(const fs::path& path, bool create) {
  auto bytes = load_secret_file(path, "master secret", create);
  if (!bytes) return bytes.error();
  auto secret = from_bytes(*bytes);
  OPENSSL_cleanse(bytes->data(), bytes->size());
  return secret;
}

std::string MasterSecret::derive(std::string_view label, std::string_view context, size_t length) const {
  std::string info(label);
  info.push_back('\0');
  info.append(context);
  return hkdf_expand(prk_, as_bytes(info), length);
}

fs::path default_master_secret_path(const fs::path& data_dir) { return data_dir / "master.key"; }

}  // namespace agora::crypto
