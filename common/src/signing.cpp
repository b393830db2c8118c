#include "common/signing.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/digest.h"
#include "common/handles.h"

namespace courtyard {
namespace {

using PkeyPtr = std::unique_ptr<EVP_PKEY, CDeleter<EVP_PKEY_free>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, CDeleter<EVP_MD_CTX_free>>;
using BioPtr = std::unique_ptr<BIO, CDeleter<BIO_free>>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, CDeleter<EVP_PKEY_CTX_free>>;

std::string raw_public(EVP_PKEY* key) {
  std::size_t n = 32;
  std::string raw(n, '\0');
  if (EVP_PKEY_get_raw_public_key(key, reinterpret_cast<unsigned char*>(raw.data()), &n) != 1) return {};
  raw.resize(n);
  return raw;
}

std::string pem_of(EVP_PKEY* key, bool private_key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  const int ok = private_key ? PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr)
                             : PEM_write_bio_PUBKEY(bio.get(), key);
  if (ok != 1) return {};
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

PkeyPtr read_pem(std::string_view pem, bool private_key) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return PkeyPtr(private_key ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr)
                             : PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
}

}  // namespace

struct Signer::Key {
  PkeyPtr pkey;
};

Signer::Signer(Signer&&) noexcept = default;
Signer& Signer::operator=(Signer&&) noexcept = default;
Signer::~Signer() = default;

std::expected<Signer, std::string> Signer::open_or_create(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    PkeyCtxPtr ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr));
    EVP_PKEY* made = nullptr;
    if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_keygen(ctx.get(), &made) != 1) {
      return std::unexpected(std::string("cannot make an Ed25519 key"));
    }
    PkeyPtr fresh(made);
    const std::string pem = pem_of(fresh.get(), true);
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
    const std::string temp = path + ".tmp." + std::to_string(::getpid());
    int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return std::unexpected("cannot write key file " + temp + ": " + std::strerror(errno));
    const bool written = ::write(fd, pem.data(), pem.size()) == static_cast<ssize_t>(pem.size()) && ::fsync(fd) == 0;
    ::close(fd);
    // link() fails if the file exists: the first writer wins, everyone reads what it wrote.
    if (!written || (::link(temp.c_str(), path.c_str()) != 0 && errno != EEXIST)) {
      ::unlink(temp.c_str());
      return std::unexpected("cannot write key file " + path);
    }
    ::unlink(temp.c_str());
  }
  std::ifstream in(path);
  std::string pem((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto key = read_pem(pem, true);
  if (!key || EVP_PKEY_get_id(key.get()) != EVP_PKEY_ED25519) return std::unexpected(path + " holds no Ed25519 private key");
  Signer s;
  s.key_ = std::make_unique<Key>();
  s.key_->pkey = std::move(key);
  return s;
}

std::string Signer::sign(std::string_view message) const {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  std::size_t n = 64;
  std::string sig(n, '\0');
  if (EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key_->pkey.get()) != 1 ||
      EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &n,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1) {
    throw std::runtime_error("Ed25519 signing failed");  // a broken invariant: the key was checked at open
  }
  sig.resize(n);
  return base64(sig);
}

std::string Signer::public_key_pem() const { return pem_of(key_->pkey.get(), false); }

std::string Signer::key_id() const { return sha256_hex(raw_public(key_->pkey.get())).substr(0, 16); }

std::expected<void, std::string> verify_signature(std::string_view public_key_pem, std::string_view message,
                                                  std::string_view signature_base64) {
  auto key = read_pem(public_key_pem, false);
  if (!key || EVP_PKEY_get_id(key.get()) != EVP_PKEY_ED25519) return std::unexpected(std::string("not an Ed25519 public key"));
  auto sig = base64_decode(signature_base64);
  if (!sig || sig->size() != 64) return std::unexpected(std::string("the signature is not 64 bytes of base64"));
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1) {
    return std::unexpected(std::string("cannot verify with this key"));
  }
  if (EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig->data()), sig->size(),
                       reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1) {
    return std::unexpected(std::string("the signature does not match"));
  }
  return {};
}

std::expected<std::string, std::string> key_id_of(std::string_view public_key_pem) {
  auto key = read_pem(public_key_pem, false);
  if (!key || EVP_PKEY_get_id(key.get()) != EVP_PKEY_ED25519) return std::unexpected(std::string("not an Ed25519 public key"));
  return sha256_hex(raw_public(key.get())).substr(0, 16);
}

}  // namespace courtyard
