#pragma once
// The hub's loops (processors, HTTP server, auditor, vision) and the first failure among them.
// Any loop that ends, by returning or by throwing, asks every loop to stop: the hub runs whole or
// not at all, and the caller rethrows the first failure so the process exits non-zero for its
// supervisor to restart it, never running on with part of it gone. Thread-safe.
#include <exception>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>

#include <spdlog/spdlog.h>

namespace courtyard::hub {

class Loops {
 public:
  explicit Loops(std::stop_source& stopping) : stopping_(stopping) {}
  // Runs `body` on a thread of its own; whatever way it ends, every loop is asked to stop.
  template <class Body>
  std::jthread start(std::string name, Body body) {
    return std::jthread([this, name = std::move(name), body = std::move(body)](std::stop_token) mutable { guard(name, body); });
  }
  template <class Body>
  void guard(const std::string& name, Body& body) {
    try {
      body();
    } catch (const std::exception& e) {
      fail(name, std::current_exception(), e.what());
    } catch (...) {
      fail(name, std::current_exception(), "unknown error");
    }
    stopping_.request_stop();
  }
  void rethrow_first() {
    std::lock_guard lock(mu_);
    if (first_) std::rethrow_exception(first_);
  }

 private:
  void fail(const std::string& name, std::exception_ptr e, const char* what) {
    spdlog::critical("hub: {} stopped: {}; stopping the hub", name, what);
    std::lock_guard lock(mu_);
    if (!first_) first_ = e;
  }
  std::stop_source& stopping_;
  std::mutex mu_;
  std::exception_ptr first_;
};

}  // namespace courtyard::hub
