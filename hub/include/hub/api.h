#pragma once
// The hub's HTTP API as a function from request to response, independent of the HTTP library
// (docs/api.md, docs/openapi.yaml). Every /api/ request carries a bearer token; what it may read
// and change follows the token's role (hub/access.h). Reads of projections say which input
// offsets they reflect (as_of) and the consumer lag. Changes (operator actions, registry entries,
// device commands, notices) are appended to the log and answered 202 with their offset; the
// projections show them once the processors reach them. Thread-safe.
#include <expected>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/metrics.h"
#include "common/sealing.h"
#include "hub/access.h"
#include "hub/vault.h"
#include "schemas/registry.h"
#include "processors/runner.h"
#include "processors/store.h"
#include "schemas/event.h"

namespace courtyard::hub {

struct HttpRequest {
  std::string method;
  std::string target;  // path and query, as received
  std::string body;
  std::string authorization;  // the Authorization header, if any
  std::string idempotency_key;  // the Idempotency-Key header of a POST, if any (docs/api.md)
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // beyond the ones every response gets
};

struct ApiSources {
  const processors::Store* store = nullptr;
  std::function<processors::Freshness()> freshness;
  std::function<processors::RunnerStats()> runner_stats;
  std::function<bool()> healthy;  // the runner is alive
  const Histogram* latency = nullptr;  // device time -> projection commit
  // Appends an event of the hub's own (an operator action) to the log; returns its offset in the
  // requests topic, or -1 when Kafka did not confirm it in time but the hub's producer still has
  // it queued (it lands when Kafka takes it; the answer says "confirmed": false).
  std::function<std::expected<std::int64_t, std::string>(const schemas::Event&)> append;
  const Histogram* batch_seconds = nullptr;  // projector time per batch
  const TokenStore* tokens = nullptr;          // who may call; none: every /api/ request is refused
  // Registers a device and creates its broker credentials (rotate: gives an existing device of the
  // same community new ones); returns its MQTT password, or the response to send (400, 403, 409, 503).
  std::function<std::expected<std::string, HttpResponse>(const schemas::Registration&, bool rotate)> provision;
  std::string web_root;                        // the dashboard's files, read once at start (empty: none)
  // The projections as they were at a time (ms since the epoch), for ?as_of_time= (admin, auditor).
  std::function<std::expected<std::shared_ptr<const processors::Store>, std::string>(std::int64_t)> as_of;
  // A camera snapshot with its faces blurred, by snapshot id, while retained (none: no vision).
  struct SnapshotImage {
    std::string community, camera, jpeg;
  };
  std::function<std::optional<SnapshotImage>(std::uint64_t)> snapshot_image;
  // Extra metrics text (the WebSocket server's), appended to /metrics.
  std::function<std::string()> more_metrics;
  // Sharing the partitions: the store's progress through the changelog (none: one hub alone).
  std::function<std::optional<processors::ChangelogProgress>()> changelog_progress;
  // false (hub.role = processors): /healthz and /metrics only; the rest is another hub's to serve.
  bool serves_reads = true;
  // The privacy vault (docs/privacy.md); none: the people routes answer 503.
  const Vault* vault = nullptr;
  int utc_offset_min = 480;  // the compound's local time (hub.utc_offset_minutes): rosters are in it
};

// A registry change as the API and the CLI accept it (JSON), checked.
std::expected<schemas::RegistryEntry, std::string> registry_entry_from_json(const nlohmann::json& j);

class StaticFiles;

class IdempotencyCache;

class Api {
 public:
  // Throws when the web root cannot be read (bad configuration: fail at start).
  Api(ApiSources sources, Metrics& metrics);
  ~Api();
  HttpResponse handle(const HttpRequest& request);
  // The principal of an Authorization header ("Bearer <token>") or a bare token; the error is
  // the 401 to send. Refusals are counted in courtyard_http_refused_total.
  std::expected<Principal, HttpResponse> authenticate(std::string_view credentials) const;
  // Whether the token `token_id` still lets its holder in (not revoked, not expired): open
  // WebSockets ask this every second and close when it stops.
  bool token_valid(const std::string& token_id) const;

  // A request target split into its decoded path and query parameters.
  struct Target {
    std::string path;
    std::map<std::string, std::string> query;
  };
  static Target parse_target(std::string_view target);

 private:
  HttpResponse route(const HttpRequest& request, std::string& route_name);
  std::optional<processors::ChangelogProgress> changelog_progress() const {
    return sources_.changelog_progress ? sources_.changelog_progress() : std::nullopt;
  }
  HttpResponse metrics();
  HttpResponse list(const Principal& who, const processors::Store& store, const Target& target,
                    const std::string& prefix, std::initializer_list<const char*> filters);
  HttpResponse alert_action(const Principal& who, const std::string& rest, const std::string& body);
  HttpResponse registry_change(const Principal& who, const std::string& community, const std::string& body);
  // Every POST: the write routes (405 for a path that takes none).
  // `id_seed`: the request's Idempotency-Key and fingerprint (what it creates is named by them), or empty.
  HttpResponse write(const Principal& who, const HttpRequest& request, const std::string& path, std::string& route_name,
                     const std::string& id_seed);
  // `key`: the id seed of write() (the command's id derives from it), or empty.
  HttpResponse device_command(const Principal& who, const std::string& device, const std::string& body, const std::string& key);
  HttpResponse notice(const Principal& who, const std::string& body, const std::string& key);
  HttpResponse provision(const Principal& who, const std::string& body);
  HttpResponse rotate_credentials(const Principal& who, const std::string& device);
  HttpResponse static_file(const std::string& path) const;
  // The privacy vault's routes (people_api.cpp): nullopt when `path` is none of them.
  std::optional<HttpResponse> people_read(const Principal& who, const Target& target, std::string& route_name);
  std::optional<HttpResponse> people_write(const Principal& who, const std::string& path, const std::string& body,
                                           std::string& route_name);
  HttpResponse record_person(const Principal& who, const std::string& community, const std::string& subject,
                             const std::string& body);
  HttpResponse forget_person(const Principal& who, const std::string& community, const std::string& subject,
                             const std::string& body);
  HttpResponse set_contacts(const Principal& who, const std::string& community, const std::string& body);
  HttpResponse alert_contacts(const Principal& who, const std::string& alert_id);
  HttpResponse person_fields(const Principal& who, const std::string& community, const std::string& subject,
                             const std::string& purpose);
  HttpResponse export_person(const Principal& who, const std::string& community, const std::string& subject);
  // Duty rosters (dispatch_api.cpp): nullopt when `path` is none of their routes.
  std::optional<HttpResponse> roster_read(const Principal& who, const Target& target, std::string& route_name);
  std::optional<HttpResponse> roster_write(const Principal& who, const std::string& path, const std::string& body,
                                           std::string& route_name);
  // The people's records as shown to `who`: fields opened where allowed ("erased" for the forgotten).
  // Appends the read trail event for what it opened before returning; the error is the 503 when it cannot.
  std::expected<nlohmann::json, HttpResponse> reveal(const Principal& who, const std::string& community,
                                                     const std::vector<std::string>& subjects, const std::string& purpose);
  // The same 404 whether a record does not exist or the token may not see it: a refusal must not
  // tell a resident that a neighbour's alert exists.
  HttpResponse not_found_or_hidden(const std::string& what, const std::string& id, bool exists) const;
  // Appends an event of the hub's own ("operator", "registry") to the log: its offset, or the 503.
  std::expected<std::int64_t, HttpResponse> append(const std::string& writer, const std::string& community,
                                                   schemas::Body body);
  HttpResponse forbidden(const std::string& detail) const;
  ApiSources sources_;
  std::unique_ptr<IdempotencyCache> idempotency_;
  std::unique_ptr<const StaticFiles> static_files_;
  Sealer cursors_;  // seals paging cursors that stop on a record the caller may not read
  Metrics& metrics_;
  Histogram request_seconds_;
};

}  // namespace courtyard::hub
