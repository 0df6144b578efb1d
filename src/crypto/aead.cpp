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

const EVP_CIPHER* cipher(AeadAlgorithm a) {
  switch (a) {
    case AeadAlgorithm::aes128gcm: return EVP_aes_128_gcm();
    case AeadAlgorithm::aes256gcm: return EVP_aes_256_gcm();
    case AeadAlgorithm::chacha20poly1305: return EVP_chacha20_poly1305();
  }
  return nullptr;
}

const char* name(AeadAlgorithm a) {
  switch (a) {
    case AeadAlgorithm::aes128gcm: return "aes-128-gcm";
    case AeadAlgorithm::aes256gcm: return "aes-256-gcm";
    case AeadAlgorithm::chacha20poly1305: return "chacha20-poly1305";
  }
  return "aead";
}

Status check_sizes(AeadAlgorithm a, std::string_view key, std::string_view nonce, size_t data) {
  if (key.size() != aead_key_bytes(a)) {
    return make_error(Errc::invalid_argument,
                      std::string(name(a)) + ": the key must be " + std::to_string(aead_key_bytes(a)) + " bytes");
  }
  if (nonce.size() != kAeadNonceBytes) {
    return make_error(Errc::invalid_argument, std::string(name(a)) + ": the nonce must be 12 bytes");
  }
  if (data > static_cast<size_t>(INT_MAX) - 64) {
    return make_error(Errc::too_large, std::string(name(a)) + ": message too large");
  }
  return ok_status();
}

}  // namespace

size_t aead_key_bytes(AeadAlgorithm a) { return a == AeadAlgorithm::aes128gcm ? 16 : 32; }

Result<std::string> aead_seal(AeadAlgorithm a, std::string_view key, std::string_view nonce, std::string_view aad,
                              std::string_view plaintext) {
  if (Status st = check_sizes(a, key, nonce, plaintext.size() + aad.size()); !st) return st.error();
  Ctx ctx(EVP_CIPHER_CTX_new());
  std::string out(plaintext.size() + kAeadTagBytes, '\0');
  int len = 0;
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), cipher(a), nullptr, u8(key), u8(nonce)) != 1 ||
      (!aad.empty() && EVP_EncryptUpdate(ctx.get(), nullptr, &len, u8(aad), static_cast<int>(aad.size())) != 1) ||
      EVP_EncryptUpdate(ctx.get(), u8(out), &len, u8(plaintext), static_cast<int>(plaintext.size())) != 1) {
    return make_error(Errc::internal, std::string(name(a)) + ": encryption failed");
  }
  const int total = len;
  if (EVP_EncryptFinal_ex(ctx.get(), u8(out) + total, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_GET_TAG, static_cast<int>(kAeadTagBytes),
                          u8(out) + plaintext.size()) != 1) {
    return make_error(Errc::internal, std::string(name(a)) + ": encryption failed");
  }
  return out;
}

Result<std::string> aead_open(AeadAlgorithm a, std::string_view key, std::string_view nonce, std::string_view aad,
                              std::string_view sealed) {
  if (Status st = check_sizes(a, key, nonce, sealed.size() + aad.size()); !st) return st.error();
  if (sealed.size() < kAeadTagBytes) {
    return make_error(Errc::corrupt, std::string(name(a)) + ": shorter than its tag");
  }
  const size_t n = sealed.size() - kAeadTagBytes;
  Ctx ctx(EVP_CIPHER_CTX_new());
  std::string out(n, '\0');
  std::string tag(sealed.substr(n));
  int len = 0;
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), cipher(a), nullptr, u8(key), u8(nonce)) != 1 ||
      (!aad.empty() && EVP_DecryptUpdate(ctx.get(), nullptr, &len, u8(aad), static_cast<int>(aad.size())) != 1) ||
      EVP_DecryptUpdate(ctx.get(), u8(out), &len, u8(sealed), static_cast<int>(n)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_TAG, static_cast<int>(kAeadTagBytes), u8(tag)) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), u8(out) + len, &len) != 1) {
    OPENSSL_cleanse(out.data(), out.size());
    return make_error(Errc::corrupt,
                      std::string(name(a)) + ": authentication failed (wrong key, or the data was altered)");
  }
  return out;
}

void secure_wipe(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

}  // namespace agora::crypto
