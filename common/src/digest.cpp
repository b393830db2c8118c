#include "common/digest.h"

#include <array>
#include <stdexcept>

#include <openssl/evp.h>

namespace courtyard {

std::string sha256_hex(std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int size = 0;
  if (!EVP_Digest(data.data(), data.size(), md.data(), &size, EVP_sha256(), nullptr)) {
    throw std::runtime_error("EVP_Digest(sha256) failed");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (unsigned int i = 0; i < size; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 0xf];
  }
  return out;
}

}  // namespace courtyard
