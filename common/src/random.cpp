#include "common/random.h"

#include "common/mqtt.h"  // read_secret

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
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

std::expected<std::string, std::string> read_or_create_secret(const std::string& path, std::size_t bytes) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  const std::string fresh = random_token(bytes);
  const std::string temp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return std::unexpected("cannot write secret file " + temp + ": " + std::strerror(errno));
  const std::string line = fresh + "\n";
  const bool written = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) && ::fsync(fd) == 0;
  ::close(fd);
  // link() fails if the file exists: the first writer wins, everyone reads what it wrote.
  const bool linked = written && ::link(temp.c_str(), path.c_str()) == 0;
  const int link_errno = errno;
  ::unlink(temp.c_str());
  if (!linked && (!written || link_errno != EEXIST)) {
    return std::unexpected("cannot create secret file " + path + ": " + std::strerror(link_errno));
  }
  return read_secret(path);
}

}  // namespace courtyard
