#pragma once
// Ed25519 signatures (OpenSSL's libcrypto) for records that others must be able to check without
// trusting whoever stored them: the hub signs its audit records; an auditor checks them with the
// hub's public key. The private key never leaves its file (PKCS#8 PEM, mode 0600).
#include <expected>
#include <memory>
#include <string>
#include <string_view>

namespace courtyard {

class Signer {
 public:
  // The key in `path`, made there (0600, exclusively: concurrent starts agree) when there is none.
  static std::expected<Signer, std::string> open_or_create(const std::string& path);
  Signer(Signer&&) noexcept;
  Signer& operator=(Signer&&) noexcept;
  ~Signer();
  // The signature of `message`, base64.
  std::string sign(std::string_view message) const;
  // The public key as PEM (SubjectPublicKeyInfo), to give to auditors.
  std::string public_key_pem() const;
  // A short name of the key: the first 16 hex digits of the SHA-256 of its raw public key.
  std::string key_id() const;

 private:
  Signer() = default;
  struct Key;
  std::unique_ptr<Key> key_;
};

// Checks a base64 Ed25519 signature of `message` with a PEM public key. Errors say why it does not hold.
std::expected<void, std::string> verify_signature(std::string_view public_key_pem, std::string_view message,
                                                  std::string_view signature_base64);
// The key id (as Signer::key_id) of a PEM public key.
std::expected<std::string, std::string> key_id_of(std::string_view public_key_pem);

}  // namespace courtyard
