#include "hub/api.h"

#include <charconv>

#include <chrono>
#include <map>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "common/digest.h"
#include "common/random.h"
#include "api_helpers.h"
#include "idempotency.h"
#include "processors/projector.h"
#include "processors/record.h"
#include "static_files.h"

namespace courtyard::hub {
namespace {

using json = nlohmann::json;

std::string url_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
               std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

Api::Target Api::parse_target(std::string_view target) {
  Api::Target t;
  auto q = target.find('?');
  t.path = url_decode(target.substr(0, q));
  if (q == std::string_view::npos) return t;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    auto pair = rest.substr(0, amp);
    auto eq = pair.find('=');
    t.query[url_decode(pair.substr(0, eq))] = eq == std::string_view::npos ? "" : url_decode(pair.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    rest = rest.substr(amp + 1);
  }
  return t;
}

namespace {




// as_of: the offsets the snapshot reflects; lag: how far the processors are behind the log;
// changelog_lag (hubs sharing the partitions): how far the store is behind the other hubs' folds.
void add_freshness(json& out, const processors::Store::View& view, const processors::Freshness& freshness,
                   const std::optional<processors::ChangelogProgress>& changelog = std::nullopt) {
  json as_of = json::object();
  for (const auto& [tp, next] : view.offsets()) as_of[tp.first][std::to_string(tp.second)] = next;
  json lag = json::object();
  std::int64_t total = 0;
  for (const auto& [tp, f] : freshness) {
    lag[tp.first][std::to_string(tp.second)] = f.lag();
    total += f.lag();
  }
  out["as_of"] = std::move(as_of);
  out["lag"] = std::move(lag);
  out["lag_total"] = total;
  if (changelog) out["changelog_lag"] = changelog->lag;
}


}  // namespace

Api::Api(ApiSources sources, Metrics& metrics)
    : sources_(std::move(sources)),
      idempotency_(std::make_unique<IdempotencyCache>()),
      static_files_([&] {
        auto files = StaticFiles::load(sources_.web_root);
        if (!files) throw std::runtime_error(files.error());
        return std::make_unique<const StaticFiles>(std::move(*files));
      }()),
      metrics_(metrics),
      request_seconds_({0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10}) {
  metrics_.describe("courtyard_http_requests_total", "counter", "HTTP requests by route and status");
  metrics_.describe("courtyard_http_request_seconds_sum", "counter", "Total time spent answering, by route");
  metrics_.describe("courtyard_http_refused_total", "counter", "Requests refused for want of a valid token or role, by reason");
}

Api::~Api() = default;

namespace {

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

HttpResponse Api::handle(const HttpRequest& request) {
  auto start = std::chrono::steady_clock::now();
  std::string route_name = "unknown";
  HttpResponse response;
  try {
    response = route(request, route_name);
  } catch (const std::exception& e) {
    response = error(500, "internal", e.what());
  } catch (...) {
    response = error(500, "internal", "unexpected error");
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  metrics_.add("courtyard_http_requests_total", {{"route", route_name}, {"status", std::to_string(response.status)}});
  metrics_.add("courtyard_http_request_seconds_sum", {{"route", route_name}}, seconds);
  request_seconds_.observe(seconds);
  return response;
}

std::expected<Principal, HttpResponse> Api::authenticate(std::string_view credentials) const {
  constexpr std::string_view kBearer = "Bearer ";
  if (credentials.starts_with(kBearer)) credentials.remove_prefix(kBearer.size());
  if (credentials.empty()) {
    metrics_.add("courtyard_http_refused_total", {{"reason", "no_token"}});
    return std::unexpected(error(401, "unauthorized", "send a token: Authorization: Bearer <token> (courtyard token add)"));
  }
  auto who = sources_.tokens ? sources_.tokens->authenticate(credentials) : std::nullopt;
  if (!who) {
    metrics_.add("courtyard_http_refused_total", {{"reason", "bad_token"}});
    return std::unexpected(error(401, "unauthorized", "the token is unknown or revoked"));
  }
  return *who;
}

bool Api::token_valid(const std::string& token_id) const {
  return sources_.tokens && sources_.tokens->valid(token_id);
}

HttpResponse Api::not_found_or_hidden(const std::string& what, const std::string& id, bool exists) const {
  if (exists) metrics_.add("courtyard_http_refused_total", {{"reason", "hidden"}});
  return error(404, "not_found", what + " " + id + " is not known");
}

HttpResponse Api::forbidden(const std::string& detail) const {
  metrics_.add("courtyard_http_refused_total", {{"reason", "forbidden"}});
  return error(403, "forbidden", detail);
}

namespace {

// Records a list request examines at most, matching or not (docs/api.md: paging).
constexpr std::size_t kMaxScanned = 20000;
// A paging cursor that names no record: "~" and what Sealer made of the key.
constexpr std::string_view kSealedCursor = "~";

// Every projection: a list with filters and paging, and one item by id.
struct Projection {
  std::string_view path;
  std::string prefix;
  std::initializer_list<const char*> filters;
};
const Projection kProjections[] = {
    {"/api/v1/devices", "devices/", {"community", "kind", "unit", "online"}},
    {"/api/v1/alerts", "alerts/", {"state", "severity", "community", "unit", "rule", "device", "building"}},
    {"/api/v1/meters", "meters/", {"community", "kind", "unit"}},
    {"/api/v1/gates", "gates/", {"community"}},
    {"/api/v1/elders", "elders/", {"community", "unit", "wellbeing"}},
    {"/api/v1/homes", "homes/", {"community", "unit"}},
    {"/api/v1/communities", "communities/", {}},
    {"/api/v1/registry", "registry/", {"community", "kind", "role", "unit"}},
    {"/api/v1/commands", "commands/", {"community", "device", "state", "unit"}},
    {"/api/v1/notices", "notices/", {"community", "severity", "unit"}},
    {"/api/v1/cameras", "cameras/", {"community", "gate"}},
    {"/api/v1/quarantine", "quarantine/", {"topic", "reason"}},
    {"/api/v1/people", "people/", {"community", "kind", "unit"}},
    {"/api/v1/contacts", "contacts/", {"community", "unit", "device"}},
    {"/api/v1/reads", "reads/", {"community", "unit", "subject", "actor"}},
    {"/api/v1/rosters", "rosters/", {"community", "grid", "role"}},
    {"/api/v1/site", "site/", {"community", "kind"}},
    {"/api/v1/responses", "responses/", {"community", "day"}},
    {"/api/v1/notifications", "notifications/", {"community", "alert", "to", "what"}},
};

}  // namespace

HttpResponse Api::route(const HttpRequest& request, std::string& route_name) {
  auto target = parse_target(request.target);
  const std::string& path = target.path;
  if (path == "/healthz") {
    route_name = "/healthz";
    bool ok = !sources_.healthy || sources_.healthy();
    std::string status = ok ? "ok" : "processors stopped";
    if (const auto stats = sources_.runner_stats ? sources_.runner_stats() : processors::RunnerStats{};
        ok && !stats.store_error.empty()) {
      ok = false;
      // The reason by class only: /healthz is unauthenticated and RocksDB's text names files
      // under the hub's data directory. The whole text is in the log.
      status = "folding stopped: store write failed";
      if (stats.store_error.find("No space left") != std::string::npos) status += " (no space left on device)";
    }
    std::int64_t lag = 0;
    json folding = json::object();  // which partitions this hub folds (several hubs share them)
    const auto freshness = sources_.freshness();
    for (const auto& [tp, f] : freshness) {
      lag += f.lag();
      folding[tp.first].push_back(tp.second);
    }
    json out{{"status", status}, {"assigned_partitions", freshness.size()}, {"folding", std::move(folding)}, {"lag_total", lag}};
    if (auto progress = changelog_progress()) {
      if (ok && !progress->store_error.empty()) {  // the class only, as above
        ok = false;
        out["status"] = std::string("applying the changelog stopped: store write failed") +
                        (progress->store_error.find("No space left") != std::string::npos ? " (no space left on device)" : "");
      }
      // Until the store holds every partition, a hub serving reads would answer with a part.
      if (ok && !progress->restored && sources_.serves_reads) {
        ok = false;
        out["status"] = "restoring from the changelog";
      }
      out["changelog_lag"] = progress->lag;
    }
    return json_response(ok ? 200 : 503, out);
  }
  if (!sources_.serves_reads && path != "/metrics") {
    route_name = "not_served";
    return error(404, "not_found", "this hub folds and serves no API (hub.role = processors): ask a hub of role api or all");
  }
  if (!path.starts_with("/api/") && path != "/metrics") {
    route_name = "static";
    if (request.method != "GET" && request.method != "HEAD") return error(405, "method_not_allowed", "static files are read-only");
    return static_file(path);
  }
  auto who = authenticate(request.authorization);
  if (!who) {
    route_name = "refused";
    return who.error();
  }
  if (path == "/metrics") {
    route_name = "/metrics";
    if (who->role != Role::Admin && who->role != Role::Auditor) return forbidden("metrics are for admin and auditor tokens");
    return metrics();
  }
  const bool writes = request.method == "POST";
  if (writes && who->role == Role::Auditor) return forbidden("an auditor token reads, it never changes anything");
  if (writes && !request.idempotency_key.empty()) {
    // A retry of a POST that carried this key gets the first answer, never a second write.
    if (!IdempotencyCache::valid_key(request.idempotency_key)) {
      return error(400, "bad_request", "Idempotency-Key must be 1..128 printable ASCII characters");
    }
    const std::string fingerprint = request.method + " " + path + "\n" + sha256_hex(request.body);
    auto claim = idempotency_->claim(who->token_id, request.idempotency_key, fingerprint, wall_ms());
    switch (claim.outcome) {
      case IdempotencyCache::Outcome::Replay: {
        route_name = "replayed";
        HttpResponse first = std::move(*claim.response);
        first.headers.emplace_back("Idempotent-Replayed", "true");
        return first;
      }
      case IdempotencyCache::Outcome::InProgress:
        return error(409, "conflict", "the request with this Idempotency-Key is still being answered; retry shortly");
      case IdempotencyCache::Outcome::OtherRequest:
        return error(422, "unprocessable", "this Idempotency-Key was used for a different request");
      case IdempotencyCache::Outcome::Fresh: break;
    }
    HttpResponse response;
    try {
      // What the request creates is named by the key and the request together: the same key
      // reused later (a restart, past the day) for another request names another command.
      response = write(*who, request, path, route_name, request.idempotency_key + "\n" + fingerprint);
    } catch (...) {
      idempotency_->forget(who->token_id, request.idempotency_key);
      throw;
    }
    // Kept only when settled: a 5xx wrote nothing, and an append Kafka had not confirmed may yet
    // be dropped; either way a retry runs again (under the same derived id).
    const bool unconfirmed = response.body.find("\"confirmed\":false") != std::string::npos;
    if (response.status >= 500 || unconfirmed) {
      idempotency_->forget(who->token_id, request.idempotency_key);
    } else {
      idempotency_->complete(who->token_id, request.idempotency_key, response);
    }
    return response;
  }
  if (writes) return write(*who, request, path, route_name, "");
  if (request.method != "GET" && request.method != "HEAD") {
    return error(405, "method_not_allowed", request.method + " " + path + " is not supported");
  }
  // Images are not projections: no as-of (and no store built for one).
  if (constexpr std::string_view kSnapshots = "/api/v1/snapshots/"; path.starts_with(kSnapshots)) {
    route_name = "/api/v1/snapshots/{id}";
    std::string id = path.substr(kSnapshots.size());
    if (id.ends_with(".jpg")) id.resize(id.size() - 4);
    std::uint64_t snapshot_id = 0;
    auto [end, ec] = std::from_chars(id.data(), id.data() + id.size(), snapshot_id);
    if (ec != std::errc() || end != id.data() + id.size()) return error(400, "bad_request", "a snapshot id is a number");
    if (!sources_.snapshot_image) return error(404, "not_found", "this hub keeps no snapshots (vision is off)");
    auto image = sources_.snapshot_image(snapshot_id);
    if (!image || !may_read(*who, "snapshots/" + id, {image->community, ""})) {
      return not_found_or_hidden("snapshot", id + " (never analysed, past its retention, or not yours)", image.has_value());
    }
    return HttpResponse{200, "image/jpeg", std::move(image->jpeg)};
  }
  // ?as_of_time=T: the projections as they were then, rebuilt from a checkpoint and the log.
  const processors::Store* store = sources_.store;
  std::shared_ptr<const processors::Store> past;
  if (auto t = target.query.find("as_of_time"); t != target.query.end()) {
    if (who->role != Role::Admin && who->role != Role::Auditor) return forbidden("as_of_time is for admin and auditor tokens");
    auto at = strict_integer(t->second);
    if (!at || *at < 0) return error(400, "bad_request", "as_of_time is ms since the epoch");
    if (!sources_.as_of) return error(503, "unavailable", "this hub cannot answer as-of queries");
    auto built = sources_.as_of(*at);
    if (!built) {
      if (built.error().starts_with("busy:")) {
        auto busy = error(429, "too_many_requests", built.error().substr(6));
        busy.headers.emplace_back("Retry-After", "5");
        return busy;
      }
      return error(503, "unavailable", "as-of " + t->second + ": " + built.error());
    }
    past = *built;
    store = past.get();
  }
  if (auto answered = people_read(*who, target, route_name)) return *answered;
  if (auto answered = roster_read(*who, target, route_name)) return *answered;
  if (path == "/api/v1/whoami") {
    route_name = "/api/v1/whoami";
    // The compound's clock too: a page shows times as the compound lives them, wherever it is opened.
    return json_response(200, json{{"token_id", who->token_id}, {"role", to_string(who->role)},
                                   {"community", who->community}, {"unit", who->unit}, {"label", who->label},
                                   {"utc_offset_minutes", sources_.utc_offset_min}});
  }
  for (const auto& p : kProjections) {
    if (path == p.path || path == std::string(p.path) + "/") {
      route_name = std::string(p.path);
      return list(*who, *store, target, p.prefix, p.filters);
    }
    if (!path.starts_with(std::string(p.path) + "/")) continue;
    route_name = std::string(p.path) + "/{id}";
    std::string id = path.substr(p.path.size() + 1);
    auto view = store->view();
    auto raw = view.get(p.prefix + id);
    json out = raw ? json::parse(processors::Projector::served_record(view, p.prefix + id, *raw), nullptr, false) : json();
    if (!raw || !may_read(*who, p.prefix + id, scope_of(p.prefix + id, out))) {
      return not_found_or_hidden(std::string(p.path.substr(8)), id, raw.has_value());
    }
    redact_for(*who, p.prefix + id, out);
    out["id"] = id;
    out.erase("sealed");
    if (p.prefix == "devices/") {
      auto rejections = view.get(processors::Projector::rejection_key(id));
      out["rejections"] = rejections ? json::parse(*rejections) : json(nullptr);
    }
    if (past) {
      add_freshness(out, view, {});  // the past has no lag
    } else {
      add_freshness(out, view, sources_.freshness(), changelog_progress());
    }
    return json_response(200, out);
  }
  return error(404, "not_found", "no route for " + path);
}

HttpResponse Api::metrics() {
  auto view = sources_.store->view();
  Metrics snapshot;
  snapshot.describe("courtyard_events_total", "counter", "Events folded into projections, by type");
  for (const auto& [type, n] : processors::Projector::counts(view, processors::Projector::kEventStatsKey)) {
    snapshot.set("courtyard_events_total", {{"type", type}}, static_cast<double>(n));
  }
  snapshot.describe("courtyard_rejected_total", "counter", "Payloads ingest rejected, by reason");
  for (const auto& [reason, n] : processors::Projector::counts(view, processors::Projector::kRejectionStatsKey)) {
    snapshot.set("courtyard_rejected_total", {{"reason", reason}}, static_cast<double>(n));
  }
  snapshot.describe("courtyard_consumer_lag", "gauge", "Messages in the log not yet in the projections");
  for (const auto& [tp, f] : sources_.freshness()) {
    snapshot.set("courtyard_consumer_lag", {{"topic", tp.first}, {"partition", std::to_string(tp.second)}}, static_cast<double>(f.lag()));
  }
  auto stats = sources_.runner_stats();
  snapshot.describe("courtyard_folded_total", "counter",
                    "Events this hub folded since start (with several hubs: its own partitions')");
  snapshot.set("courtyard_folded_total", {}, static_cast<double>(stats.applied));
  snapshot.describe("courtyard_duplicates_total", "counter", "Events recognised as duplicates since start");
  snapshot.set("courtyard_duplicates_total", {}, static_cast<double>(stats.duplicates));
  snapshot.describe("courtyard_corrupt_total", "counter", "Log messages that did not decode since start");
  snapshot.set("courtyard_corrupt_total", {}, static_cast<double>(stats.corrupt));
  snapshot.describe("courtyard_quarantined_total", "counter",
                    "Log messages set aside since start (did not decode, or could not be folded); see /api/v1/quarantine");
  snapshot.set("courtyard_quarantined_total", {}, static_cast<double>(stats.quarantined));
  snapshot.describe("courtyard_batches_total", "counter", "Store writes by the processors since start");
  snapshot.set("courtyard_batches_total", {}, static_cast<double>(stats.batches));
  snapshot.describe("courtyard_store_failures_total", "counter",
                    "Store writes that failed since start (a full disk): folding waits and tries again");
  snapshot.set("courtyard_store_failures_total", {}, static_cast<double>(stats.store_failures));
  std::string text = snapshot.render();
  if (sources_.latency) text += sources_.latency->render("courtyard_event_to_projection_seconds", "Device timestamp to projection commit");
  if (sources_.batch_seconds) {
    text += sources_.batch_seconds->render("courtyard_batch_seconds", "Projector time per batch (folds and store write)");
  }
  text += request_seconds_.render("courtyard_http_request_seconds", "Time to answer an HTTP request");
  text += metrics_.render();
  if (sources_.more_metrics) text += sources_.more_metrics();
  return {200, "text/plain; version=0.0.4", text};
}

HttpResponse Api::list(const Principal& who, const processors::Store& store, const Target& target,
                       const std::string& prefix, std::initializer_list<const char*> filters) {
  std::size_t limit = 100;
  if (auto it = target.query.find("limit"); it != target.query.end()) {
    auto n = strict_integer(it->second);
    if (!n || *n < 1 || *n > 1000) return error(400, "bad_request", "limit must be a number 1..1000");
    limit = static_cast<std::size_t>(*n);
  }
  std::vector<std::pair<std::string, std::string>> wanted;
  for (const char* name : filters) {
    if (auto it = target.query.find(name); it != target.query.end() && !it->second.empty()) wanted.emplace_back(name, it->second);
  }
  auto matches = [&](const json& j) {
    for (const auto& [field, value] : wanted) {
      if (field == "building") {  // the unit's building: "b3-0402" is in "b3"
        if (!j.value("unit", "").starts_with(value + "-")) return false;
        continue;
      }
      if (field == "online") {
        if (j.value("online", false) != (value == "true")) return false;
        continue;
      }
      std::string have = j.value(field, "");
      // state=active: every state but resolved
      if (field == "state" && value == "active" ? have == "resolved" : have != value) return false;
    }
    return true;
  };
  // A narrower prefix where the key itself carries the community (scans less for staff and residents).
  std::string scan_prefix = prefix;
  const bool keyed_by_community = prefix == "homes/" || prefix == "communities/" || prefix == "registry/" ||
                                  prefix == "notices/" || prefix == "people/" || prefix == "contacts/" || prefix == "reads/" ||
                                  prefix == "rosters/" || prefix == "site/" || prefix == "responses/" ||
                                  prefix == "notifications/";
  const bool scoped = who.role != Role::Admin && who.role != Role::Auditor;
  if (keyed_by_community && scoped) scan_prefix += who.community + "/";
  if (prefix == "alerts/" && scoped) scan_prefix += who.community + ":";  // alerts/{community}:{rule}:...
  // `after` is a record's id (one the caller has seen), or a sealed cursor this hub handed out: a
  // page that stopped among records the caller may not read says where to go on without naming them.
  std::string after;
  if (auto it = target.query.find("after"); it != target.query.end() && !it->second.empty()) {
    if (it->second.starts_with(kSealedCursor)) {
      auto key = cursors_.open(std::string_view(it->second).substr(kSealedCursor.size()));
      if (!key || !key->starts_with(prefix)) return error(400, "bad_request", "after: a cursor this hub did not hand out (or from before its restart)");
      after = *key;
    } else {
      after = prefix + it->second;
    }
  }
  auto view = store.view();
  json items = json::array();
  std::string cursor = after;
  bool more = false;
  // A page examines at most kMaxScanned records, whatever it finds: a filter that matches
  // nothing never walks the whole projection. A short page with `next` set means "go on".
  std::size_t scanned = 0;
  std::string last_item;
  while (!more) {
    auto chunk = view.scan(scan_prefix, cursor, 256);
    if (chunk.empty()) break;
    for (const auto& [key, raw] : chunk) {
      if (scanned == kMaxScanned) {
        more = true;
        break;
      }
      ++scanned;
      cursor = key;
      json j = json::parse(processors::Projector::served_record(view, key, raw), nullptr, false);
      if (j.is_discarded() || !may_read(who, key, scope_of(key, j)) || !matches(j)) continue;
      if (items.size() == limit) {  // one match beyond the page: there is a next one
        more = true;
        break;
      }
      redact_for(who, key, j);
      j["id"] = key.substr(prefix.size());
      j.erase("sealed");  // a person's ciphertext: of no use to a caller
      items.push_back(std::move(j));
      last_item = key;
    }
  }
  json out{{"items", items}, {"count", items.size()}};
  if (!more) {
    out["next"] = nullptr;
  } else if (items.size() == limit) {
    out["next"] = last_item.substr(prefix.size());  // the last record served: the caller has it
  } else {
    out["next"] = std::string(kSealedCursor) + cursors_.seal(cursor);  // a record the caller may not see
  }
  if (&store == sources_.store) {
    add_freshness(out, view, sources_.freshness(), changelog_progress());
  } else {
    add_freshness(out, view, {});
  }
  return json_response(200, out);
}

std::expected<schemas::RegistryEntry, std::string> registry_entry_from_json(const json& j) {
  if (!j.is_object()) return std::unexpected(std::string("body must be a JSON object"));
  for (const char* field : {"kind", "id", "role", "unit"}) {
    if (auto it = j.find(field); it != j.end() && !it->is_string()) return std::unexpected(std::string(field) + " must be a string");
  }
  schemas::RegistryEntry e;
  auto kind = schemas::parse_registry_kind(j.value("kind", ""));
  if (!kind) return std::unexpected(std::string("kind must be household, person or vehicle"));
  e.kind = *kind;
  e.id = j.value("id", "");
  if (!schemas::valid_id(e.id)) return std::unexpected(std::string("id must be 1..64 of [A-Za-z0-9_.-] (a token, never a name)"));
  if (e.kind == schemas::RegistryKind::Person) {
    auto role = schemas::parse_person_role(j.value("role", "resident"));
    if (!role) return std::unexpected(std::string("role must be resident, staff or visitor"));
    e.role = *role;
  }
  e.unit = j.value("unit", "");
  if (!e.unit.empty() && !schemas::valid_id(e.unit)) return std::unexpected(std::string("unit must be 1..64 of [A-Za-z0-9_.-]"));
  try {
    e.valid_from_ms = j.value("valid_from", std::int64_t{0});
    e.valid_to_ms = j.value("valid_to", std::int64_t{0});
    e.allowance_s = j.value("allowance_s", std::int64_t{0});
    e.removed = j.value("removed", false);
  } catch (const json::exception&) {
    return std::unexpected(std::string("valid_from, valid_to and allowance_s are integers; removed is true or false"));
  }
  if (e.valid_to_ms && e.valid_to_ms < e.valid_from_ms) return std::unexpected(std::string("valid_to is before valid_from"));
  if (e.kind == schemas::RegistryKind::Person && e.role == schemas::PersonRole::Visitor && !e.removed &&
      (e.unit.empty() || e.valid_to_ms == 0)) {
    return std::unexpected(std::string("a visitor's invitation needs the host's unit and a valid_to"));
  }
  return e;
}

namespace {


// What each kind of device can be told to do (besides reboot and ping, which every device takes).
const std::map<std::string, std::vector<std::string>, std::less<>> kActions = {
    {"gate", {"open_gate", "close_gate"}},   {"vehicle_gate", {"open_gate", "close_gate"}},
    {"door", {"unlock"}},                    {"camera", {"snapshot"}},
    {"meter", {"read_now"}},                 {"home_sensor", {"close_valve", "silence_alarm"}},
    {"wearable", {"locate"}},
};

std::vector<std::string> actions_for(const std::string& kind) {
  std::vector<std::string> out = {"reboot", "ping"};
  if (auto it = kActions.find(kind); it != kActions.end()) out.insert(out.begin(), it->second.begin(), it->second.end());
  return out;
}


// An integer field within bounds, or the 400 to send.
std::expected<std::int64_t, HttpResponse> bounded(const json& j, const char* field, std::int64_t fallback, std::int64_t lo,
                                                  std::int64_t hi) {
  auto it = j.find(field);
  if (it == j.end()) return fallback;
  if (!it->is_number_integer() || it->get<std::int64_t>() < lo || it->get<std::int64_t>() > hi) {
    return std::unexpected(error(400, "bad_request", fmt::format("{} must be an integer {}..{}", field, lo, hi)));
  }
  return it->get<std::int64_t>();
}

}  // namespace

namespace {

// The id of a command or notice: derived from the token, its Idempotency-Key and the request
// when it has a key (`seed`; a retry after a hub restart appends the same id, which the folds
// count once), random otherwise.
std::string request_id(const std::string& prefix, const Principal& who, const std::string& seed) {
  if (seed.empty()) return prefix + random_token(12);
  return prefix + sha256_hex(who.token_id + "\n" + seed).substr(0, 24);
}


}  // namespace

HttpResponse Api::write(const Principal& who, const HttpRequest& request, const std::string& path, std::string& route_name,
                        const std::string& id_seed) {
  constexpr std::string_view kAlerts = "/api/v1/alerts", kRegistry = "/api/v1/registry", kDevices = "/api/v1/devices";
  if (path.starts_with(std::string(kRegistry) + "/")) {
    route_name = "/api/v1/registry/{community}";
    return registry_change(who, path.substr(kRegistry.size() + 1), request.body);
  }
  if (path.starts_with(std::string(kAlerts) + "/")) {
    route_name = "/api/v1/alerts/{id}/{action}";
    return alert_action(who, path.substr(kAlerts.size() + 1), request.body);
  }
  if (path.starts_with(std::string(kDevices) + "/") && path.ends_with("/commands")) {
    route_name = "/api/v1/devices/{id}/commands";
    return device_command(who, path.substr(kDevices.size() + 1, path.size() - kDevices.size() - 1 - 9), request.body,
                          id_seed);
  }
  if (path == kDevices) {
    route_name = "/api/v1/devices";
    return provision(who, request.body);
  }
  if (path.starts_with(std::string(kDevices) + "/") && path.ends_with("/credentials")) {
    route_name = "/api/v1/devices/{id}/credentials";
    return rotate_credentials(who, path.substr(kDevices.size() + 1, path.size() - kDevices.size() - 1 - 12));
  }
  if (path == "/api/v1/notices") {
    route_name = "/api/v1/notices";
    return notice(who, request.body, id_seed);
  }
  if (auto answered = people_write(who, path, request.body, route_name)) return *answered;
  if (auto answered = roster_write(who, path, request.body, route_name)) return *answered;
  return error(405, "method_not_allowed", request.method + " " + path + " is not supported");
}

std::expected<std::int64_t, HttpResponse> Api::append(const std::string& writer, const std::string& community,
                                                      schemas::Body body) {
  if (!sources_.append) return std::unexpected(error(503, "unavailable", "this hub cannot write to the log"));
  schemas::Event event;
  event.device = DeviceId(writer);
  event.community = CommunityId(community);
  event.body = std::move(body);
  // Ingest skips an event that does not decode: text that is not UTF-8 would be lost on its way.
  if (auto field = schemas::first_invalid_text(event)) return std::unexpected(error(400, "bad_request", *field + " must be UTF-8 text"));
  auto offset = sources_.append(event);
  if (!offset) return std::unexpected(error(503, "unavailable", "could not append to the log: " + offset.error()));
  return *offset;
}

HttpResponse Api::registry_change(const Principal& who, const std::string& community, const std::string& body) {
  if (!schemas::valid_id(community)) return error(404, "not_found", "use POST /api/v1/registry/{community}");
  if (who.role == Role::Resident || !may_act(who, community, "")) return forbidden("only admin and the community's staff change its registry");
  auto entry = registry_entry_from_json(json::parse(body, nullptr, false));
  if (!entry) return error(400, "bad_request", entry.error());
  if (!sources_.append) return error(503, "unavailable", "this hub cannot write to the log");
  auto offset = append("registry", community, *entry);
  if (!offset) return offset.error();
  return json_response(202, request_fields(json{{"accepted", true},
                                                 {"entry", std::string(schemas::to_string(entry->kind)) + "/" + entry->id}},
                                            *offset));
}

HttpResponse Api::alert_action(const Principal& who, const std::string& rest, const std::string& body) {
  auto slash = rest.rfind('/');
  constexpr const char* kVerbs = "ack, resolve, hush, on_my_way, arrived, handed_over, reassign";
  if (slash == std::string::npos) return error(404, "not_found", fmt::format("use POST /api/v1/alerts/{{id}}/{{action}} ({})", kVerbs));
  std::string id = rest.substr(0, slash), verb = rest.substr(slash + 1);
  auto action = schemas::parse_alert_action(verb);
  if (!action) return error(404, "not_found", fmt::format("unknown alert action {} ({})", verb, kVerbs));
  const bool responder = *action != schemas::AlertAction::Acknowledge && *action != schemas::AlertAction::Hush &&
                         *action != schemas::AlertAction::Resolve;
  auto request = object_body(body, {"note", "to"});
  if (!request) return request.error();
  const std::string to = request->value("to", "");
  if (*action == schemas::AlertAction::Reassign) {
    if (!schemas::valid_id(to)) return error(400, "bad_request", "to is the staff member's person token (an id)");
  } else if (request->contains("to")) {
    return error(400, "bad_request", "to is for reassign only");
  }
  auto raw = sources_.store->view().get(processors::Projector::alert_key(id));
  json alert = raw ? processors::parse_record(*raw) : json();
  if (!raw || !alert.is_object() || !may_read(who, processors::Projector::alert_key(id), scope_of("alerts/", alert))) {
    return not_found_or_hidden("alert", id, raw.has_value());
  }
  if (!may_act(who, alert.value("community", ""), alert.value("unit", ""))) {
    return forbidden(who.role == Role::Resident ? "a resident acts only on their own household's alerts"
                                                : "a staff token acts only on its community's alerts");
  }
  if (who.role == Role::Resident && (*action == schemas::AlertAction::Resolve || responder)) {
    return forbidden("staff resolve and respond to alerts; a resident may acknowledge or hush them");
  }
  if (alert.value("state", "") == "resolved") return error(409, "conflict", "alert " + id + " is already resolved");
  if (*action == schemas::AlertAction::Hush && alert.value("rule", "") != "smoke" && alert.value("rule", "") != "gas") {
    return error(409, "conflict", "only smoke and gas alarms can be hushed");
  }
  if (*action == schemas::AlertAction::Reassign) {
    // Only to a member of the community's staff, as its registry knows them.
    auto person = sources_.store->view().get(processors::Projector::registry_key(alert.value("community", ""), "person", to));
    json p = person ? processors::parse_record(*person) : json();
    if (!p.is_object() || p.value("role", "") != "staff" || p.value("removed", false)) {
      return error(409, "conflict", to + " is not a staff member in the community's registry");
    }
  }
  if (!sources_.append) return error(503, "unavailable", "this hub cannot write to the log");
  auto offset = append("operator", alert.value("community", ""),
                       schemas::OperatorAction{id, *action, actor_of(who), request->value("note", ""), to,
                                               std::string(to_string(who.role))});
  if (!offset) return offset.error();
  // Accepted: the action is in the log; the alert's state changes when the processors reach it.
  return json_response(202, request_fields(json{{"accepted", true}, {"alert", id}, {"action", verb}}, *offset));
}

HttpResponse Api::device_command(const Principal& who, const std::string& device, const std::string& body,
                                 const std::string& key) {
  auto request = object_body(body, {"action"});
  if (!request) return request.error();
  auto raw = sources_.store->view().get(processors::Projector::device_key(device));
  json d = raw ? processors::parse_record(*raw) : json();
  if (!raw || !d.is_object() || !may_read(who, processors::Projector::device_key(device), scope_of("devices/", d))) {
    return not_found_or_hidden("device", device, raw.has_value());
  }
  const std::string community = d.value("community", ""), unit = d.value("unit", ""), kind = d.value("kind", "");
  if (!may_act(who, community, unit)) {
    return forbidden(who.role == Role::Resident ? "a resident commands only their own household's devices"
                                                : "a staff token commands only its community's devices");
  }
  const std::string action = request->value("action", "");
  auto allowed = actions_for(kind);
  if (std::find(allowed.begin(), allowed.end(), action) == allowed.end()) {
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
    return error(400, "bad_request", "a " + kind + " takes: " + list);
  }
  json args = request->value("args", json::object());
  if (!args.is_object() || args.dump().size() > 1024) return error(400, "bad_request", "args must be a JSON object under 1 KiB");
  auto ttl = bounded(*request, "ttl_s", 60, 1, 86400);
  if (!ttl) return ttl.error();
  if (!sources_.append) return error(503, "unavailable", "this hub cannot write to the log");
  schemas::Command command;
  command.command_id = request_id("cmd-", who, key);
  command.target = DeviceId(device);
  command.action = action;
  command.args = args.empty() ? "" : args.dump();
  command.actor = actor_of(who);
  command.expires_at_ms = wall_ms() + *ttl * 1000;
  auto offset = append("operator", community, command);
  if (!offset) return offset.error();
  return json_response(202, request_fields(json{{"accepted", true},
                                                 {"command_id", command.command_id},
                                                 {"state", "sent"},
                                                 {"expires_at", command.expires_at_ms},
                                                 {"href", "/api/v1/commands/" + command.command_id}},
                                            *offset));
}

HttpResponse Api::notice(const Principal& who, const std::string& body, const std::string& key) {
  auto request = object_body(body, {"community", "title", "text", "severity", "unit"});
  if (!request) return request.error();
  const std::string community = request->value("community", who.community);
  if (!schemas::valid_id(community)) return error(400, "bad_request", "community is required");
  if (who.role == Role::Resident || !may_act(who, community, "")) return forbidden("only admin and the community's staff post notices");
  schemas::Notice n;
  n.title = request->value("title", "");
  n.text = request->value("text", "");
  if (n.title.empty() || n.title.size() > 120) return error(400, "bad_request", "title must be 1..120 bytes");
  if (n.text.size() > 2000) return error(400, "bad_request", "text must be at most 2000 bytes");
  auto severity = schemas::parse_notice_severity(request->value("severity", "info"));
  if (!severity) return error(400, "bad_request", "severity must be info, warning or urgent");
  n.severity = *severity;
  n.unit = request->value("unit", "");
  if (!n.unit.empty() && !schemas::valid_id(n.unit)) return error(400, "bad_request", "unit must be 1..64 of [A-Za-z0-9_.-]");
  auto ttl = bounded(*request, "ttl_s", 0, 0, 366 * 86400);
  if (!ttl) return ttl.error();
  n.expires_at_ms = *ttl ? wall_ms() + *ttl * 1000 : 0;
  n.actor = actor_of(who);
  n.notice_id = request_id("ntc-", who, key);
  if (!sources_.append) return error(503, "unavailable", "this hub cannot write to the log");
  auto offset = append("operator", community, n);
  if (!offset) return offset.error();
  return json_response(202, request_fields(json{{"accepted", true},
                                                 {"notice_id", n.notice_id},
                                                 {"href", "/api/v1/notices/" + community + "/" + n.notice_id}},
                                            *offset));
}

HttpResponse Api::provision(const Principal& who, const std::string& body) {
  auto request = object_body(body, {"id", "community", "kind", "unit", "location"});
  if (!request) return request.error();
  schemas::Registration r;
  r.device = DeviceId(request->value("id", ""));
  r.community = CommunityId(request->value("community", ""));
  auto kind = schemas::parse_device_kind(request->value("kind", ""));
  r.unit = request->value("unit", "");
  r.location = request->value("location", "");
  if (!schemas::valid_id(r.device.str()) || !schemas::valid_id(r.community.str())) {
    return error(400, "bad_request", "id and community must be 1..64 of [A-Za-z0-9_.-]");
  }
  if (!kind) return error(400, "bad_request", "kind must be gate, vehicle_gate, door, camera, meter, home_sensor or wearable");
  if (!r.unit.empty() && !schemas::valid_id(r.unit)) return error(400, "bad_request", "unit must be 1..64 of [A-Za-z0-9_.-]");
  if (r.location.size() > 200) return error(400, "bad_request", "location must be at most 200 bytes");
  r.kind = *kind;
  if (who.role == Role::Resident || !may_act(who, r.community.str(), "")) {
    return forbidden("only admin and the community's staff provision devices");
  }
  if (!sources_.provision) return error(503, "unavailable", "this hub cannot provision devices");
  r.registered_at_ms = wall_ms();
  auto password = sources_.provision(r, /*rotate=*/false);
  if (!password) return password.error();
  return json_response(201, json{{"id", r.device.str()},
                                 {"community", r.community.str()},
                                 {"kind", schemas::to_string(r.kind)},
                                 {"mqtt_username", r.device.str()},
                                 {"mqtt_client_id", r.device.str()},  // the broker accepts it under this id only
                                 {"mqtt_password", *password},
                                 {"telemetry_topic", schemas::topic_for(r.community, r.device, "telemetry")}});
}

HttpResponse Api::rotate_credentials(const Principal& who, const std::string& device) {
  auto raw = sources_.store->view().get(processors::Projector::device_key(device));
  json d = raw ? processors::parse_record(*raw) : json();
  if (!raw || !d.is_object() || !may_read(who, processors::Projector::device_key(device), scope_of("devices/", d))) {
    return not_found_or_hidden("device", device, raw.has_value());
  }
  schemas::Registration r;
  r.device = DeviceId(device);
  r.community = CommunityId(d.value("community", ""));
  r.unit = d.value("unit", "");
  r.location = d.value("location", "");
  auto kind = schemas::parse_device_kind(d.value("kind", ""));
  if (!kind) return error(409, "conflict", "device " + device + " has no kind on record");
  r.kind = *kind;
  // A device's credentials are its community's staff's (or an admin's) to change, in that community only.
  if (who.role == Role::Resident || !may_act(who, r.community.str(), "")) {
    return forbidden("only admin and the device's community's staff rotate its credentials");
  }
  if (!sources_.provision) return error(503, "unavailable", "this hub cannot provision devices");
  r.registered_at_ms = wall_ms();
  auto password = sources_.provision(r, /*rotate=*/true);
  if (!password) return password.error();
  return json_response(200, json{{"id", device},
                                 {"community", r.community.str()},
                                 {"mqtt_username", device},
                                 {"mqtt_client_id", device},
                                 {"mqtt_password", *password},
                                 {"rotated", true}});
}

HttpResponse Api::static_file(const std::string& path) const {
  // An allow-list lookup: the path is a key, never a file name.
  const auto* file = static_files_->find(path);
  if (!file) return error(404, "not_found", "no such file");
  return {200, file->content_type, file->body};
}

}  // namespace courtyard::hub
