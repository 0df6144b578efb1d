#include "crypto/aead.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <climits>
#include <memory>

namespace agora::crypto {
namespace {

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

const unsigned char* u8(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }
unsigned char* u8(std::string& s) { return reinterpret_cast<unsigned char*>(s.data()); }

Status check_sizes(std::string_view key, std::string_view nonce, size_t data) {
  if (key.size() != kAesGcmKeyBytes) return make_error(Errc::invalid_argument, "aes-256-gcm: the key must be 32 bytes");
  if (nonce.size() != kAesGcmNonceBytes) {
    return make_error(Errc::invalid_argument, "aes-256-gcm: the nonce must be 12 bytes");
  }
  if (data > static_cast<size_t>(INT_MAX) - 64) return make_error(Errc::too_large, "aes-256-gcm: message too large");
  return ok_status();
}

}  // namespace

Result<std::string> aes256gcm_seal(std::string_view key, std::string_view nonce, std::string_view aad,
                                   std::string_view plaintext) {
  if (Status st = check_sizes(key, nonce, plaintext.size() + aad.size()); !st) return st.error();
  Ctx ctx(EVP_CIPHER_CTX_new());
  std::string out(plaintext.size() + kAesGcmTagBytes, '\0');
  int len = 0, total = 0;
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, u8(key), u8(nonce)) != 1 ||
      (!aad.empty() && EVP_EncryptUpdate(ctx.get(), nullptr, &len, u8(aad), static_cast<int>(aad.size())) != 1) ||
      EVP_EncryptUpdate(ctx.get(), u8(out), &len, u8(plaintext), static_cast<int>(plaintext.size())) != 1) {
    return make_error(Errc::internal, "aes-256-gcm: encryption failed");
  }
  total = len;
  if (EVP_EncryptFinal_ex(ctx.get(), u8(out) + total, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kAesGcmTagBytes),
                          u8(out) + plaintext.size()) != 1) {
    return make_error(Errc::internal, "aes-256-gcm: encryption failed");
  }
  return out;
}

Result<std::string> aes256gcm_open(std::string_view key, std::string_view nonce, std::string_view aad,
                                   std::string_view sealed) {
  if (Status st = check_sizes(key, nonce, sealed.size() + aad.size()); !st) return st.error();
  if (sealed.size() < kAesGcmTagBytes) return make_error(Errc::corrupt, "aes-256-gcm: shorter than its tag");
  const size_t n = sealed.size() - kAesGcmTagBytes;
  Ctx ctx(EVP_CIPHER_CTX_new());
  std::string out(n, '\0');
  std::string tag(sealed.substr(n));
  int len = 0;
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, u8(key), u8(nonce)) != 1 ||
      (!aad.empty() && EVP_DecryptUpdate(ctx.get(), nullptr, &len, u8(aad), static_cast<int>(aad.size())) != 1) ||
      EVP_DecryptUpdate(ctx.get(), u8(out), &len, u8(sealed), static_cast<int>(n)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kAesGcmTagBytes), u8(tag)) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), u8(out) + len, &len) != 1) {
    OPENSSL_cleanse(out.data(), out.size());
    return make_error(Errc::corrupt, "aes-256-gcm: authentication failed (wrong key, or the data was altered)");
  }
  return out;
}

void secure_wipe(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

}  // namespace agora::crypto
