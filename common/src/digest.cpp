#include "common/digest.h"

#include <array>
#include <memory>
#include <stdexcept>

#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>

namespace courtyard {

namespace {

std::string to_hex(const unsigned char* md, unsigned int size) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (unsigned int i = 0; i < size; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 0xf];
  }
  return out;
}

// SHA-256 fetched from OpenSSL's provider once: EVP_sha256() and HMAC() look it up again on every
// call, which costs more than hashing a short message (a replay hashes every event twice).
const EVP_MD* sha256_md() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  if (!md) throw std::runtime_error("SHA256 is not available from OpenSSL");
  return md;
}

struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
struct MacFree {
  void operator()(EVP_MAC* m) const { EVP_MAC_free(m); }
};
struct MacCtxFree {
  void operator()(EVP_MAC_CTX* c) const { EVP_MAC_CTX_free(c); }
};
using MacCtxPtr = std::unique_ptr<EVP_MAC_CTX, MacCtxFree>;

// HMAC-SHA256 keyed once per key and thread: each MAC starts from a copy of the keyed state.
class KeyedHmac {
 public:
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac(std::string_view key, std::string_view data, std::size_t& size) {
    if (!keyed_ || key != key_) rekey(key);
    MacCtxPtr ctx(EVP_MAC_CTX_dup(keyed_.get()));
    std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
    if (!ctx || !EVP_MAC_update(ctx.get(), reinterpret_cast<const unsigned char*>(data.data()), data.size()) ||
        !EVP_MAC_final(ctx.get(), out.data(), &size, out.size())) {
      throw std::runtime_error("HMAC(sha256) failed");
    }
    return out;
  }

 private:
  void rekey(std::string_view key) {
    static std::unique_ptr<EVP_MAC, MacFree> hmac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
    if (!hmac) throw std::runtime_error("HMAC is not available from OpenSSL");
    MacCtxPtr ctx(EVP_MAC_CTX_new(hmac.get()));
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0), OSSL_PARAM_construct_end()};
    if (!ctx || !EVP_MAC_init(ctx.get(), reinterpret_cast<const unsigned char*>(key.data()), key.size(), params)) {
      throw std::runtime_error("HMAC(sha256) key setup failed");
    }
    keyed_ = std::move(ctx);
    key_.assign(key);
  }
  std::string key_;
  MacCtxPtr keyed_;
};

}  // namespace

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (!ctx_ || !EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), sha256_md(), nullptr)) {
    throw std::runtime_error("EVP_DigestInit_ex(sha256) failed");
  }
}

Sha256::~Sha256() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

void Sha256::update(std::string_view data) { EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data.data(), data.size()); }

std::string Sha256::hex() {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int size = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), md.data(), &size);
  return to_hex(md.data(), size);
}

std::string base64(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(data.data()), static_cast<int>(data.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out(text.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  // EVP_DecodeBlock counts the padding as zero bytes.
  std::size_t padding = text.ends_with("==") ? 2 : text.ends_with("=") ? 1 : 0;
  out.resize(static_cast<std::size_t>(n) - padding);
  return out;
}

std::string hmac_sha256_hex(std::string_view key, std::string_view data) {
  thread_local KeyedHmac hmac;
  std::size_t size = 0;
  auto md = hmac.mac(key, data, size);
  return to_hex(md.data(), static_cast<unsigned int>(size));
}

std::string sha256_hex(std::string_view data) {
  thread_local std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int size = 0;
  if (!ctx || !EVP_DigestInit_ex2(ctx.get(), sha256_md(), nullptr) || !EVP_DigestUpdate(ctx.get(), data.data(), data.size()) ||
      !EVP_DigestFinal_ex(ctx.get(), md.data(), &size)) {
    throw std::runtime_error("SHA-256 failed");
  }
  return to_hex(md.data(), size);
}

}  // namespace courtyard
