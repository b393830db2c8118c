#pragma once
// A blocking HTTP GET for tests (Boost.Beast, compiled in one file).
#include <optional>
#include <string>

namespace courtyard::test {

struct HttpResult {
  int status;
  std::string body;
};

std::optional<HttpResult> http_get(const std::string& host, int port, const std::string& target);
std::optional<HttpResult> http_post(const std::string& host, int port, const std::string& target, const std::string& body);

}  // namespace courtyard::test

namespace courtyard::test {
// The body of a GET on 127.0.0.1:port, or "" when nothing answered.
inline std::string http_get_text(int port, const std::string& target) {
  auto r = http_get("127.0.0.1", port, target);
  return r ? r->body : std::string();
}
}  // namespace courtyard::test
