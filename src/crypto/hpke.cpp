#include "crypto/hpke.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <limits>
#include <memory>

#include "crypto/hmac.h"
#include "crypto/random.h"

namespace agora::crypto::hpke {

namespace {

constexpr std::string_view kVersion = "HPKE-v1";
constexpr size_t kNh = 32;  // HKDF-SHA256 output
constexpr size_t kNsecret = 32;

std::string i2osp2(size_t v) {
  return std::string{static_cast<char>((v >> 8) & 0xff), static_cast<char>(v & 0xff)};
}

std::string kem_suite_id() { return "KEM" + i2osp2(kKemX25519Sha256); }
std::string hpke_suite_id(AeadAlgorithm a) {
  return "HPKE" + i2osp2(kKemX25519Sha256) + i2osp2(kKdfHkdfSha256) + i2osp2(aead_id(a));
}

// A string wiped when it goes out of scope.
struct Secret {
  std::string v;
  Secret() = default;
  explicit Secret(std::string s) : v(std::move(s)) {}
  Secret(const Secret&) = delete;
  Secret& operator=(const Secret&) = delete;
  ~Secret() { secure_wipe(v); }
};

std::string labeled_extract(std::string_view suite, std::string_view salt, std::string_view label,
                            std::string_view ikm) {
  Secret labeled_ikm;
  labeled_ikm.v.reserve(kVersion.size() + suite.size() + label.size() + ikm.size());
  labeled_ikm.v.append(kVersion).append(suite).append(label).append(ikm);
  Digest256 prk = hkdf_extract(as_bytes(salt), as_bytes(labeled_ikm.v));
  std::string out(reinterpret_cast<const char*>(prk.data()), prk.size());
  OPENSSL_cleanse(prk.data(), prk.size());
  return out;
}

std::string labeled_expand(std::string_view suite, std::string_view prk, std::string_view label,
                           std::string_view info, size_t length) {
  std::string labeled_info = i2osp2(length);
  labeled_info.append(kVersion).append(suite).append(label).append(info);
  return hkdf_expand(as_bytes(prk), as_bytes(labeled_info), length);
}

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct PctxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using Pctx = std::unique_ptr<EVP_PKEY_CTX, PctxFree>;

const unsigned char* u8(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

// X25519(sk, pk), refusing the all-zero result of a low-order point.
Result<std::string> dh(std::string_view private_key, std::string_view public_key) {
  if (private_key.size() != kPrivateKeyBytes || public_key.size() != kPublicKeyBytes) {
    return make_error(Errc::invalid_argument, "hpke: X25519 keys are 32 bytes");
  }
  Pkey sk(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, u8(private_key), private_key.size()));
  Pkey pk(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, u8(public_key), public_key.size()));
  if (!sk || !pk) return make_error(Errc::invalid_argument, "hpke: not an X25519 key");
  Pctx ctx(EVP_PKEY_CTX_new(sk.get(), nullptr));
  std::string out(32, '\0');
  size_t len = out.size();
  const bool ok = ctx && EVP_PKEY_derive_init(ctx.get()) == 1 && EVP_PKEY_derive_set_peer(ctx.get(), pk.get()) == 1 &&
                  EVP_PKEY_derive(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len) == 1 && len == 32;
  unsigned char any = 0;
  for (char c : out) any |= static_cast<unsigned char>(c);
  if (!ok || any == 0) {
    secure_wipe(out);
    return make_error(Errc::invalid_argument, "hpke: the X25519 result is all zeros (a low-order public key)");
  }
  return out;
}

// ExtractAndExpand (§4.1).
std::string extract_and_expand(std::string_view dh_secret, std::string_view kem_context) {
  const std::string suite = kem_suite_id();
  Secret eae_prk(labeled_extract(suite, "", "eae_prk", dh_secret));
  return labeled_expand(suite, eae_prk.v, "shared_secret", kem_context, kNsecret);
}

}  // namespace

std::string compute_nonce(std::string_view base_nonce, uint64_t seq) {
  std::string nonce(base_nonce);
  for (size_t i = 0; i < 8 && i < nonce.size(); ++i) {
    char& c = nonce[nonce.size() - 1 - i];
    c = static_cast<char>(static_cast<unsigned char>(c) ^ ((seq >> (8 * i)) & 0xff));
  }
  return nonce;
}

uint16_t aead_id(AeadAlgorithm a) {
  switch (a) {
    case AeadAlgorithm::aes128gcm: return 0x0001;
    case AeadAlgorithm::aes256gcm: return 0x0002;
    case AeadAlgorithm::chacha20poly1305: return 0x0003;
  }
  return 0;
}

KeyPair::~KeyPair() { secure_wipe(private_key); }

Result<std::string> public_key_of(std::string_view private_key) {
  if (private_key.size() != kPrivateKeyBytes) return make_error(Errc::invalid_argument, "hpke: X25519 keys are 32 bytes");
  Pkey sk(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, u8(private_key), private_key.size()));
  std::string pub(kPublicKeyBytes, '\0');
  size_t len = pub.size();
  if (!sk || EVP_PKEY_get_raw_public_key(sk.get(), reinterpret_cast<unsigned char*>(pub.data()), &len) != 1 ||
      len != kPublicKeyBytes) {
    return make_error(Errc::invalid_argument, "hpke: not an X25519 private key");
  }
  return pub;
}

Result<KeyPair> derive_key_pair(std::string_view ikm) {
  if (ikm.size() < kNsecret) return make_error(Errc::invalid_argument, "hpke: DeriveKeyPair needs at least 32 bytes");
  const std::string suite = kem_suite_id();
  Secret dkp_prk(labeled_extract(suite, "", "dkp_prk", ikm));
  KeyPair kp;
  kp.private_key = labeled_expand(suite, dkp_prk.v, "sk", "", kPrivateKeyBytes);
  auto pub = public_key_of(kp.private_key);
  if (!pub) return pub.error();
  kp.public_key = std::move(*pub);
  return kp;
}

Result<KeyPair> generate_key_pair() { return derive_key_pair(random_bytes(kNsecret)); }

struct Setup {
  // KeySchedule (§5.1), base mode: no PSK.
  static Context key_schedule(AeadAlgorithm aead, std::string_view shared_secret, std::string_view info) {
    const std::string suite = hpke_suite_id(aead);
    const std::string psk_id_hash = labeled_extract(suite, "", "psk_id_hash", "");
    const std::string info_hash = labeled_extract(suite, "", "info_hash", info);
    std::string context(1, '\0');  // mode_base
    context += psk_id_hash;
    context += info_hash;
    Secret secret(labeled_extract(suite, shared_secret, "secret", ""));
    Context c;
    c.aead_ = aead;
    c.key_ = labeled_expand(suite, secret.v, "key", context, aead_key_bytes(aead));
    c.base_nonce_ = labeled_expand(suite, secret.v, "base_nonce", context, kAeadNonceBytes);
    c.exporter_secret_ = labeled_expand(suite, secret.v, "exp", context, kNh);
    return c;
  }
};

Result<Sender> setup_base_sender(AeadAlgorithm aead, std::string_view pk_r, std::string_view info,
                                 const KeyPair& ephemeral) {
  auto dh_secret = dh(ephemeral.private_key, pk_r);
  if (!dh_secret) return dh_secret.error();
  Secret z(std::move(*dh_secret));
  std::string kem_context = ephemeral.public_key;
  kem_context.append(pk_r);
  Secret shared(extract_and_expand(z.v, kem_context));
  return Sender{ephemeral.public_key, Setup::key_schedule(aead, shared.v, info)};
}

Result<Sender> setup_base_sender(AeadAlgorithm aead, std::string_view pk_r, std::string_view info) {
  auto eph = generate_key_pair();
  if (!eph) return eph.error();
  return setup_base_sender(aead, pk_r, info, *eph);
}

Result<Context> setup_base_recipient(AeadAlgorithm aead, std::string_view enc, std::string_view sk_r,
                                     std::string_view info) {
  if (enc.size() != kPublicKeyBytes) return make_error(Errc::invalid_argument, "hpke: enc must be 32 bytes");
  auto dh_secret = dh(sk_r, enc);
  if (!dh_secret) return dh_secret.error();
  Secret z(std::move(*dh_secret));
  auto pk_r = public_key_of(sk_r);
  if (!pk_r) return pk_r.error();
  std::string kem_context(enc);
  kem_context.append(*pk_r);
  Secret shared(extract_and_expand(z.v, kem_context));
  return Setup::key_schedule(aead, shared.v, info);
}

Context::~Context() {
  secure_wipe(key_);
  secure_wipe(base_nonce_);
  secure_wipe(exporter_secret_);
}

Result<std::string> Context::next_nonce() const {
  // The 96-bit sequence number is kept in 64 bits; it cannot wrap: the last
  // value is never used.
  if (seq_ == std::numeric_limits<uint64_t>::max()) {
    return make_error(Errc::unavailable, "hpke: the context's sequence number is exhausted");
  }
  return compute_nonce(base_nonce_, seq_);
}

Result<std::string> Context::seal(std::string_view aad, std::string_view plaintext) {
  auto nonce = next_nonce();
  if (!nonce) return nonce.error();
  auto ct = aead_seal(aead_, key_, *nonce, aad, plaintext);
  if (!ct) return ct.error();
  ++seq_;
  return ct;
}

Result<std::string> Context::open(std::string_view aad, std::string_view ciphertext) {
  auto nonce = next_nonce();
  if (!nonce) return nonce.error();
  auto pt = aead_open(aead_, key_, *nonce, aad, ciphertext);
  if (!pt) return pt.error();
  ++seq_;
  return pt;
}

std::string Context::export_secret(std::string_view exporter_context, size_t length) const {
  return labeled_expand(hpke_suite_id(aead_), exporter_secret_, "sec", exporter_context, length);
}

}  // namespace agora::crypto::hpke
