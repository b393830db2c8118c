#pragma once
// The hub's HTTP API as a function from request to response, independent of the HTTP library:
// GET /healthz, /metrics, /api/v1/devices, /api/v1/devices/{id}. Every projection read carries the
// input offsets it reflects (as_of) and the consumer lag. Thread-safe (reads a store snapshot).
#include <functional>
#include <string>

#include "common/metrics.h"
#include "processors/runner.h"
#include "processors/store.h"

namespace courtyard::hub {

struct HttpRequest {
  std::string method;
  std::string target;  // path and query, as received
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

struct ApiSources {
  const processors::Store* store = nullptr;
  std::function<processors::Freshness()> freshness;
  std::function<processors::RunnerStats()> runner_stats;
  std::function<bool()> healthy;  // the runner is alive
  const Histogram* latency = nullptr;  // device time -> projection commit
};

class Api {
 public:
  Api(ApiSources sources, Metrics& metrics);
  HttpResponse handle(const HttpRequest& request);

 private:
  HttpResponse route(const HttpRequest& request, std::string& route_name);
  ApiSources sources_;
  Metrics& metrics_;
};

}  // namespace courtyard::hub
