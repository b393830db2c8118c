#pragma once
// The hub's HTTP/1.1 and WebSocket server (Boost.Beast, one io_context on one thread). The I/O
// thread only moves bytes, serves the dashboard's files and /healthz: every /api/ request and
// every subscription snapshot runs on a bounded worker pool, so no request can hold the loop.
//
// Every byte a client sends is hostile, and so is a client that never reads. Bounds (ServerLimits):
// connections, in all and per client address (more are answered 503 and closed), WebSockets per
// token (429), jobs waiting for a worker (503), jobs of one token in progress (429: requests are
// authenticated on the I/O thread first, so a request without a valid token never takes a
// worker), replies queued for a WebSocket (its messages are not read until they drain), a write
// that makes no progress (the connection is dropped). Accept errors (descriptors exhausted) back
// off instead of spinning. A session is always destroyed on the I/O thread.
//
// GET /api/v1/subscribe with a WebSocket upgrade opens a live subscription (SubscriptionHub). The
// token comes in the Sec-WebSocket-Protocol header ("courtyard.v1, bearer.<token>", what browsers
// can send) or the Authorization header, never in the URL (proxies log URLs). An open WebSocket is
// closed when its token is revoked or expires. Kept behind this header so only one translation
// unit compiles Beast.
//
// A handler that throws closes its connection; an exception that escapes the loop anyway stops
// run() by rethrowing it, and the hub exits non-zero (a supervisor restarts it): never a process
// whose API is silently gone.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>

#include "hub/api.h"
#include "processors/store.h"
#include "subscriptions.h"

namespace courtyard::hub {

struct ServerLimits {
  std::size_t max_connections = 1024;            // HTTP and WebSocket together; more: 503 and closed
  std::size_t max_connections_per_address = 256; // of those, from one client address; more: 503 and closed
  std::size_t max_websockets_per_token = 32;     // open WebSockets of one token; more: 429
  std::size_t workers = 8;                       // threads answering /api/ requests and building snapshots
  std::size_t max_queued = 256;                  // requests and snapshots waiting for or on a worker; more: 503
  std::size_t max_per_credential = 4;            // of those, of one token; more: 429 (below `workers`: one token never takes them all)
  std::size_t max_queued_frames = 4;             // WebSocket replies waiting to be written; more: stop reading
  std::chrono::milliseconds write_timeout{30000};  // a write that makes no progress this long drops the client
  std::chrono::milliseconds idle_timeout{60000};   // an HTTP connection between requests
  std::chrono::milliseconds token_check{1000};     // how often an open WebSocket's token is checked
  std::chrono::milliseconds accept_backoff{100};   // pause after an accept error
};

class HttpServer {
 public:
  // Binds host:port (port 0: any free port). Throws when the address cannot be bound.
  HttpServer(const std::string& host, int port, Api& api, SubscriptionHub* subscriptions, ServerLimits limits = {});
  ~HttpServer();
  int port() const;
  // Serves until the stop token fires. Rethrows an exception that escaped a handler.
  void run(std::stop_token stop);
  // Hands a commit's changes to the subscriptions, on the I/O thread. Callable from any thread.
  void publish(std::uint64_t seq, processors::KeyValues changes);
  // courtyard_http_* gauges and counters of the server itself (connections, refusals).
  std::string render_metrics() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace courtyard::hub
