#pragma once
// Secrets from the operating system's random source.
#include <expected>
#include <string>

namespace courtyard {

// A URL-safe random token of `bytes` bytes of entropy (base64url, no padding).
std::string random_token(std::size_t bytes = 18);

// The secret in the file at `path` (its first line); when there is no such file, a new random
// one of `bytes` bytes of entropy, written there first with mode 0600. Concurrent callers agree:
// the file is created exclusively, and a loser reads the winner's.
std::expected<std::string, std::string> read_or_create_secret(const std::string& path, std::size_t bytes = 32);

}  // namespace courtyard
