#include "common/sealing.h"

#include <memory>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "common/digest.h"
#include "common/handles.h"

namespace courtyard {
namespace {

using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CDeleter<EVP_CIPHER_CTX_free>>;
constexpr int kNonce = 12, kTag = 16;

const unsigned char* bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

// base64url without padding, and back.
std::string url_safe(std::string b64) {
  for (auto& c : b64) c = c == '+' ? '-' : c == '/' ? '_' : c;
  while (!b64.empty() && b64.back() == '=') b64.pop_back();
  return b64;
}
std::optional<std::string> from_url_safe(std::string_view text) {
  std::string b64(text);
  for (auto& c : b64) {
    if (c == '+' || c == '/') return std::nullopt;
    c = c == '-' ? '+' : c == '_' ? '/' : c;
  }
  while (b64.size() % 4) b64 += '=';
  return base64_decode(b64);
}

}  // namespace

Sealer::Sealer() : key_(32, '\0') {
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key_.data()), 32) != 1) throw std::runtime_error("no random bytes for a key");
}

std::string Sealer::seal(std::string_view plain) const {
  std::string out(kNonce + plain.size() + kTag, '\0');
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  if (RAND_bytes(o, kNonce) != 1) throw std::runtime_error("no random bytes for a nonce");
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int n = 0;
  if (EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, bytes(key_), o) != 1 ||
      EVP_EncryptUpdate(ctx.get(), o + kNonce, &n, bytes(plain), static_cast<int>(plain.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), o + kNonce + n, &n) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTag, o + kNonce + plain.size()) != 1) {
    throw std::runtime_error("AES-GCM sealing failed");
  }
  return url_safe(base64(out));
}

std::optional<std::string> Sealer::open(std::string_view sealed) const {
  auto raw = from_url_safe(sealed);
  if (!raw || raw->size() < static_cast<std::size_t>(kNonce + kTag)) return std::nullopt;
  const std::size_t length = raw->size() - kNonce - kTag;
  std::string plain(length, '\0');
  auto* r = reinterpret_cast<unsigned char*>(raw->data());
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int n = 0;
  if (EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, bytes(key_), r) != 1 ||
      EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(plain.data()), &n, r + kNonce, static_cast<int>(length)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTag, r + kNonce + length) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(plain.data()) + n, &n) != 1) {
    return std::nullopt;
  }
  return plain;
}

}  // namespace courtyard
