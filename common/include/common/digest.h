#pragma once
// SHA-256, HMAC and base64 (OpenSSL's libcrypto) for stored secrets, tokens and tamper evidence.
#include <optional>
#include <string>
#include <string_view>

namespace courtyard {

// The SHA-256 of `data`, as 64 lowercase hex digits.
std::string sha256_hex(std::string_view data);

// Standard base64 (with padding) of arbitrary bytes, for binary data in JSON and CSV.
std::string base64(std::string_view data);
// The bytes of standard base64 text (padding required); nullopt when it is not base64.
std::optional<std::string> base64_decode(std::string_view text);

// HMAC-SHA256 of `data` under `key`, as 64 lowercase hex digits: pseudonymous tokens that only
// the key's holder can recompute.
std::string hmac_sha256_hex(std::string_view key, std::string_view data);

// SHA-256 over data given in pieces. Not thread-safe; one per digest.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(std::string_view data);
  // The digest of everything so far, as 64 lowercase hex digits; the object is spent after.
  std::string hex();

 private:
  void* ctx_;  // EVP_MD_CTX, kept out of this header
};

}  // namespace courtyard
