#pragma once
// SHA-256 (OpenSSL's libcrypto) for stored secrets and tamper evidence.
#include <string>
#include <string_view>

namespace courtyard {

// The SHA-256 of `data`, as 64 lowercase hex digits.
std::string sha256_hex(std::string_view data);

}  // namespace courtyard
