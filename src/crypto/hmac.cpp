#include "crypto/hmac.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace agora::crypto {
namespace {

constexpr size_t kBlock = 64;

struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "agora: fatal: %s failed in OpenSSL\n", what);
  std::abort();
}

MdCtx new_ctx() {
  MdCtx c(EVP_MD_CTX_new());
  if (!c) die("EVP_MD_CTX_new");
  return c;
}

// The SHA-256 implementation, fetched once (EVP_sha256() would fetch it
// implicitly on every init).
const EVP_MD* sha256_md() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  if (!md) die("EVP_MD_fetch(SHA256)");
  return md;
}

}  // namespace

struct HmacSha256::States {
  MdCtx inner = new_ctx();  // SHA-256 state after (key ^ ipad)
  MdCtx outer = new_ctx();  // SHA-256 state after (key ^ opad)
};

HmacSha256::HmacSha256(std::span<const uint8_t> key) : s_(std::make_unique<States>()) {
  uint8_t k[kBlock] = {};
  if (key.size() > kBlock) {
    unsigned int n = 0;
    if (EVP_Digest(key.data(), key.size(), k, &n, sha256_md(), nullptr) != 1) die("EVP_Digest");
  } else if (!key.empty()) {
    std::memcpy(k, key.data(), key.size());
  }
  uint8_t pad[kBlock];
  for (size_t i = 0; i < kBlock; ++i) pad[i] = k[i] ^ 0x36;
  if (EVP_DigestInit_ex(s_->inner.get(), sha256_md(), nullptr) != 1 ||
      EVP_DigestUpdate(s_->inner.get(), pad, kBlock) != 1) {
    die("HMAC inner init");
  }
  for (size_t i = 0; i < kBlock; ++i) pad[i] = k[i] ^ 0x5c;
  if (EVP_DigestInit_ex(s_->outer.get(), sha256_md(), nullptr) != 1 ||
      EVP_DigestUpdate(s_->outer.get(), pad, kBlock) != 1) {
    die("HMAC outer init");
  }
  OPENSSL_cleanse(k, sizeof k);
  OPENSSL_cleanse(pad, sizeof pad);
}

HmacSha256::~HmacSha256() = default;

Digest256 HmacSha256::mac(std::string_view message) const {
  // One context per thread, reused: copying a state into it allocates
  // nothing after the first call.
  thread_local MdCtx work = new_ctx();
  Digest256 inner{};
  Digest256 out{};
  unsigned int n = 0;
  if (EVP_MD_CTX_copy_ex(work.get(), s_->inner.get()) != 1 ||
      EVP_DigestUpdate(work.get(), message.data(), message.size()) != 1 ||
      EVP_DigestFinal_ex(work.get(), inner.data(), &n) != 1 ||
      EVP_MD_CTX_copy_ex(work.get(), s_->outer.get()) != 1 ||
      EVP_DigestUpdate(work.get(), inner.data(), inner.size()) != 1 ||
      EVP_DigestFinal_ex(work.get(), out.data(), &n) != 1) {
    die("HMAC");
  }
  return out;
}

std::string HmacSha256::mac_hex(std::string_view message) const {
  const Digest256 d = mac(message);
  return to_hex(d);
}

Digest256 hmac_sha256(std::span<const uint8_t> key, std::string_view message) {
  return HmacSha256(key).mac(message);
}

Digest256 hkdf_extract(std::span<const uint8_t> salt, std::span<const uint8_t> ikm) {
  // RFC 5869 §2.2: an absent salt is HashLen zero bytes, which HMAC's
  // zero-padding of short keys makes identical to an empty key.
  return hmac_sha256(salt, std::string_view(reinterpret_cast<const char*>(ikm.data()), ikm.size()));
}

std::string hkdf_expand(std::span<const uint8_t> prk, std::span<const uint8_t> info, size_t length) {
  if (length > 255 * 32) die("hkdf_expand length");
  HmacSha256 h(prk);
  std::string out;
  out.reserve(length);
  std::string block;  // T(i-1) || info || i
  Digest256 t{};
  for (uint8_t i = 1; out.size() < length; ++i) {
    block.assign(i == 1 ? 0 : t.size(), '\0');
    if (i != 1) std::memcpy(block.data(), t.data(), t.size());
    block.append(reinterpret_cast<const char*>(info.data()), info.size());
    block.push_back(static_cast<char>(i));
    t = h.mac(block);
    out.append(reinterpret_cast<const char*>(t.data()), std::min(t.size(), length - out.size()));
  }
  OPENSSL_cleanse(t.data(), t.size());
  OPENSSL_cleanse(block.data(), block.size());
  return out;
}

}  // namespace agora::crypto
