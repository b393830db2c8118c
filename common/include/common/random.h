#pragma once
// Secrets from the operating system's random source.
#include <string>

namespace courtyard {

// A URL-safe random token of `bytes` bytes of entropy (base64url, no padding).
std::string random_token(std::size_t bytes = 18);

}  // namespace courtyard
