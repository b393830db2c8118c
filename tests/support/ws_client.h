#pragma once
// A blocking WebSocket client for tests (Boost.Beast, compiled in one file).
#include <chrono>
#include <memory>
#include <optional>
#include <string>

namespace courtyard::test {

class WsClient {
 public:
  // Connects to ws://127.0.0.1:port{target} offering the subprotocols "courtyard.v1, bearer.<token>"
  // as a browser does (no token: none offered); nullptr when the upgrade is refused.
  static std::unique_ptr<WsClient> connect(int port, const std::string& target, const std::string& token = "");
  // The subprotocol the server chose ("" when none).
  std::string subprotocol() const;
  ~WsClient();
  void send(const std::string& text);
  // The next text message; nullopt on timeout or when the server closed (see close_reason()).
  std::optional<std::string> receive(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  void close();
  const std::string& close_reason() const { return close_reason_; }
  // Whether a receive() found the connection closed (by the server, or broken).
  bool closed() const { return closed_; }

 private:
  WsClient();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string close_reason_;
  bool closed_ = false;
};

}  // namespace courtyard::test
