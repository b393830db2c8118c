#pragma once
// The hub's HTTP/1.1 and WebSocket server (Boost.Beast, one io_context on one thread). Requests
// go to the Api; POSTs, which wait for Kafka, run on a small worker pool so they never stall the
// I/O thread. GET /api/v1/subscribe with a WebSocket upgrade opens a live subscription
// (SubscriptionHub); the token comes in the Authorization header or as ?token= (browsers cannot
// set headers on a WebSocket). Kept behind this header so only one translation unit compiles Beast.
#include <cstdint>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>

#include "hub/api.h"
#include "processors/store.h"
#include "subscriptions.h"

namespace courtyard::hub {

class HttpServer {
 public:
  // Binds host:port (port 0: any free port). Throws when the address cannot be bound.
  HttpServer(const std::string& host, int port, Api& api, SubscriptionHub* subscriptions);
  ~HttpServer();
  int port() const;
  // Serves until the stop token fires.
  void run(std::stop_token stop);
  // Hands a commit's changes to the subscriptions, on the I/O thread. Callable from any thread.
  void publish(std::uint64_t seq, processors::KeyValues changes);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace courtyard::hub
