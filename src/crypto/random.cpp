#include "crypto/random.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>

namespace agora::crypto {
namespace {

constexpr char kBase62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
constexpr unsigned kAlphabet = 62;
// Largest multiple of 62 that fits in a byte's range: bytes >= 248 are
// rejected so that `b % 62` is uniform.
constexpr unsigned kAcceptBelow = (256 / kAlphabet) * kAlphabet;

void fill_random(unsigned char* out, size_t n) {
  while (n > 0) {
    const int chunk = n > static_cast<size_t>(INT_MAX) ? INT_MAX : static_cast<int>(n);
    if (RAND_bytes(out, chunk) != 1) {
      std::fputs("fatal: RAND_bytes failed (no usable entropy source)\n", stderr);
      std::abort();
    }
    out += chunk;
    n -= static_cast<size_t>(chunk);
  }
}

}  // namespace

std::string random_bytes(size_t n) {
  std::string out(n, '\0');
  if (n > 0) fill_random(reinterpret_cast<unsigned char*>(out.data()), n);
  return out;
}

std::string random_base62(size_t chars) {
  std::string out;
  out.reserve(chars);
  // 248/256 of bytes are accepted; draw a little more than needed per round.
  unsigned char buf[128];
  while (out.size() < chars) {
    const size_t want = chars - out.size();
    const size_t n = std::min(sizeof buf, want + want / 16 + 4);
    fill_random(buf, n);
    for (size_t i = 0; i < n && out.size() < chars; ++i) {
      if (buf[i] < kAcceptBelow) out.push_back(kBase62[buf[i] % kAlphabet]);
    }
  }
  return out;
}

std::string new_secret(std::string_view prefix) {
  std::string out(prefix);
  out += random_base62(kSecretRandomChars);
  return out;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string secret_display_prefix(std::string_view secret) {
  return std::string(secret.substr(0, kSecretDisplayPrefixChars));
}

}  // namespace agora::crypto
