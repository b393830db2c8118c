#pragma once
// A blocking HTTP GET for tests (Boost.Beast, compiled in one file).
#include <map>
#include <optional>
#include <string>

namespace courtyard::test {

struct HttpResult {
  int status;
  std::string body;
  std::map<std::string, std::string> headers;  // by lower-case name
};

// `token`, when given, goes in an Authorization: Bearer header.
std::optional<HttpResult> http_get(const std::string& host, int port, const std::string& target, const std::string& token = "");
std::optional<HttpResult> http_post(const std::string& host, int port, const std::string& target, const std::string& body,
                                    const std::string& token = "");

}  // namespace courtyard::test

namespace courtyard::test {
// The body of a GET on 127.0.0.1:port, or "" when nothing answered.
inline std::string http_get_text(int port, const std::string& target, const std::string& token = "") {
  auto r = http_get("127.0.0.1", port, target, token);
  return r ? r->body : std::string();
}
}  // namespace courtyard::test
