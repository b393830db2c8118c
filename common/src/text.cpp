#include "common/text.h"

#include <fmt/format.h>

namespace courtyard {
namespace {

// The length of the UTF-8 sequence starting at bytes[i], or 0 when it is not well formed.
std::size_t sequence_length(std::string_view bytes, std::size_t i) noexcept {
  auto at = [&](std::size_t k) { return static_cast<unsigned char>(bytes[k]); };
  const unsigned char c = at(i);
  if (c < 0x80) return 1;
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // bounds of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;  // overlong
    if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (i + n > bytes.size()) return 0;
  if (at(i + 1) < lo || at(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k) {
    if (at(i + k) < 0x80 || at(i + k) > 0xBF) return 0;
  }
  return n;
}

}  // namespace

bool valid_utf8(std::string_view bytes) noexcept {
  for (std::size_t i = 0; i < bytes.size();) {
    const std::size_t n = sequence_length(bytes, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string printable(std::string_view bytes, std::size_t max) {
  std::string out;
  out.reserve(std::min(bytes.size(), max) + 8);
  for (std::size_t i = 0; i < bytes.size();) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    const std::size_t n = sequence_length(bytes, i);
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (n == 0 || (n == 1 && (c < 0x20 || c == 0x7F || c == '\\'))) {
      out += c == '\\' ? std::string("\\\\") : fmt::format("\\x{:02X}", c);
      ++i;
    } else {
      out.append(bytes.substr(i, n));
      i += n;
    }
  }
  return out;
}

}  // namespace courtyard
