#pragma once
// A webhook gateway for tests: an HTTP server on 127.0.0.1 that keeps every POST it receives and
// answers each with the status set (200 unless told otherwise). Stops when destroyed.
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace courtyard::test {

class WebhookReceiver {
 public:
  struct Request {
    std::string target, body;
    std::map<std::string, std::string> headers;  // by lower-case name
  };
  WebhookReceiver();
  ~WebhookReceiver();
  WebhookReceiver(const WebhookReceiver&) = delete;
  WebhookReceiver& operator=(const WebhookReceiver&) = delete;
  int port() const { return port_; }
  std::string url(const std::string& path = "/hook") const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
  std::vector<Request> requests() const;
  void answer(int status);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace courtyard::test
