#pragma once
// Authenticated encryption (AES-256-GCM, OpenSSL's libcrypto) of short values a server hands to a
// client and takes back, which the client must neither read nor forge: the API's paging cursors.
// The key lives in memory only: what one process sealed, only it opens. Thread-safe (immutable).
#include <optional>
#include <string>
#include <string_view>

namespace courtyard {

class Sealer {
 public:
  Sealer();  // a fresh random key
  // `plain` encrypted and authenticated, as URL-safe text.
  std::string seal(std::string_view plain) const;
  // The plain text, or nullopt when `sealed` is not something this Sealer sealed (or was altered).
  std::optional<std::string> open(std::string_view sealed) const;

 private:
  std::string key_;  // 32 bytes
};

}  // namespace courtyard
