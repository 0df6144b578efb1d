#include "crypto/ed25519.h"

#include <openssl/evp.h>

namespace agora::crypto {

struct Ed25519Signer::Key {
  EVP_PKEY* pkey = nullptr;
  ~Key() { EVP_PKEY_free(pkey); }
};

namespace {
struct MdCtx {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~MdCtx() { EVP_MD_CTX_free(ctx); }
};
const unsigned char* bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }
}  // namespace

Ed25519Signer::Ed25519Signer(std::unique_ptr<Key> key, std::string public_hex)
    : key_(std::move(key)), public_hex_(std::move(public_hex)) {}
Ed25519Signer::~Ed25519Signer() = default;

Result<std::unique_ptr<Ed25519Signer>> Ed25519Signer::from_seed(std::string_view seed) {
  if (seed.size() != 32) return make_error(Errc::invalid_argument, "ed25519: the seed must be 32 bytes");
  auto key = std::make_unique<Key>();
  key->pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, bytes(seed), seed.size());
  if (!key->pkey) return make_error(Errc::internal, "ed25519: cannot make the key");
  std::string pub(32, '\0');
  size_t len = pub.size();
  if (EVP_PKEY_get_raw_public_key(key->pkey, reinterpret_cast<unsigned char*>(pub.data()), &len) != 1 ||
      len != 32) {
    return make_error(Errc::internal, "ed25519: cannot read the public key");
  }
  return std::unique_ptr<Ed25519Signer>(new Ed25519Signer(std::move(key), to_hex(pub)));
}

std::string Ed25519Signer::sign_hex(std::string_view message) const {
  MdCtx md;
  std::string sig(64, '\0');
  size_t len = sig.size();
  if (!md.ctx || EVP_DigestSignInit(md.ctx, nullptr, nullptr, nullptr, key_->pkey) != 1 ||
      EVP_DigestSign(md.ctx, reinterpret_cast<unsigned char*>(sig.data()), &len, bytes(message), message.size()) !=
          1 ||
      len != 64) {
    return {};  // callers store it; an empty signature never verifies
  }
  return to_hex(sig);
}

bool ed25519_verify(std::string_view public_key_hex, std::string_view message, std::string_view signature_hex) {
  auto pub = from_hex(public_key_hex);
  auto sig = from_hex(signature_hex);
  if (!pub || !sig || pub->size() != 32 || sig->size() != 64) return false;
  EVP_PKEY* pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, bytes(*pub), pub->size());
  if (!pkey) return false;
  MdCtx md;
  const bool ok = md.ctx && EVP_DigestVerifyInit(md.ctx, nullptr, nullptr, nullptr, pkey) == 1 &&
                  EVP_DigestVerify(md.ctx, bytes(*sig), sig->size(), bytes(message), message.size()) == 1;
  EVP_PKEY_free(pkey);
  return ok;
}

}  // namespace agora::crypto
