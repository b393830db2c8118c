#include "common/random.h"

#include <random>
#include <string_view>

namespace courtyard {

std::string random_token(std::size_t bytes) {
  static constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::random_device rd;  // /dev/urandom on Linux
  std::string out;
  const std::size_t chars = (bytes * 8 + 5) / 6;
  out.reserve(chars);
  for (std::size_t i = 0; i < chars; ++i) out += kAlphabet[rd() % kAlphabet.size()];
  return out;
}

}  // namespace courtyard
