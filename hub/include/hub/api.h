#pragma once
// The hub's HTTP API as a function from request to response, independent of the HTTP library:
// GET /healthz, /metrics, /api/v1/devices[/{id}], /api/v1/alerts[/{id}], and
// POST /api/v1/alerts/{id}/ack|resolve (appended to the log as operator actions),
// POST /api/v1/registry/{community} (households, people, vehicles: tokens only). Every projection
// read carries the input offsets it reflects (as_of) and the consumer lag. Thread-safe.
#include <expected>
#include <functional>
#include <map>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "common/metrics.h"
#include "processors/runner.h"
#include "processors/store.h"
#include "schemas/event.h"

namespace courtyard::hub {

struct HttpRequest {
  std::string method;
  std::string target;  // path and query, as received
  std::string body;
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
  // Appends an event of the hub's own (an operator action) to the log; returns its offset.
  std::function<std::expected<std::int64_t, std::string>(const schemas::Event&)> append;
  const Histogram* batch_seconds = nullptr;  // projector time per batch
};

// A registry change as the API and the CLI accept it (JSON), checked.
std::expected<schemas::RegistryEntry, std::string> registry_entry_from_json(const nlohmann::json& j);

class Api {
 public:
  Api(ApiSources sources, Metrics& metrics);
  HttpResponse handle(const HttpRequest& request);

  // A request target split into its decoded path and query parameters.
  struct Target {
    std::string path;
    std::map<std::string, std::string> query;
  };

 private:
  HttpResponse route(const HttpRequest& request, std::string& route_name);
  HttpResponse list(const Target& target, const std::string& prefix, std::initializer_list<const char*> filters);
  HttpResponse alert_action(const std::string& rest, const std::string& body);
  HttpResponse registry_change(const std::string& community, const std::string& body);
  ApiSources sources_;
  Metrics& metrics_;
};

}  // namespace courtyard::hub
