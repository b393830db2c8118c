#include "hub/api.h"

#include <chrono>
#include <map>

#include <nlohmann/json.hpp>

#include "processors/projector.h"

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

Api::Target parse_target(std::string_view target) {
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

HttpResponse json_response(int status, const json& body) { return {status, "application/json", body.dump() + "\n"}; }

HttpResponse error(int status, const std::string& code, const std::string& detail) {
  return json_response(status, json{{"error", code}, {"detail", detail}});
}

// as_of: the offsets the snapshot reflects; lag: how far the processors are behind the log.
void add_freshness(json& out, const processors::Store::View& view, const processors::Freshness& freshness) {
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
}


}  // namespace

Api::Api(ApiSources sources, Metrics& metrics) : sources_(std::move(sources)), metrics_(metrics) {
  metrics_.describe("courtyard_http_requests_total", "counter", "HTTP requests by route and status");
  metrics_.describe("courtyard_http_request_seconds_sum", "counter", "Total time spent answering, by route");
}

HttpResponse Api::handle(const HttpRequest& request) {
  auto start = std::chrono::steady_clock::now();
  std::string route_name = "unknown";
  HttpResponse response;
  try {
    response = route(request, route_name);
  } catch (const std::exception& e) {
    response = error(500, "internal", e.what());
  }
  metrics_.add("courtyard_http_requests_total", {{"route", route_name}, {"status", std::to_string(response.status)}});
  metrics_.add("courtyard_http_request_seconds_sum", {{"route", route_name}},
               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return response;
}

HttpResponse Api::route(const HttpRequest& request, std::string& route_name) {
  auto target = parse_target(request.target);
  const std::string& path = target.path;
  constexpr std::string_view kAlerts = "/api/v1/alerts";
  constexpr std::string_view kRegistry = "/api/v1/registry";
  if (request.method == "POST" && path.starts_with(std::string(kRegistry) + "/")) {
    route_name = "/api/v1/registry/{community}";
    return registry_change(path.substr(kRegistry.size() + 1), request.body);
  }
  if (request.method == "POST" && path.starts_with(std::string(kAlerts) + "/")) {
    route_name = "/api/v1/alerts/{id}/{action}";
    return alert_action(path.substr(kAlerts.size() + 1), request.body);
  }
  if (request.method != "GET" && request.method != "HEAD") {
    return error(405, "method_not_allowed", request.method + " is not supported here");
  }
  if (path == "/healthz") {
    route_name = "/healthz";
    bool ok = !sources_.healthy || sources_.healthy();
    std::int64_t lag = 0;
    for (const auto& [_, f] : sources_.freshness()) lag += f.lag();
    return json_response(ok ? 200 : 503, json{{"status", ok ? "ok" : "processors stopped"},
                                              {"assigned_partitions", sources_.freshness().size()},
                                              {"lag_total", lag}});
  }
  if (path == "/metrics") {
    route_name = "/metrics";
    auto view = sources_.store->view();
    Metrics snapshot;
    snapshot.describe("courtyard_events_total", "counter", "Events folded into projections, by type");
    if (auto raw = view.get(processors::Projector::kEventStatsKey)) {
      auto counts = json::parse(*raw);
      for (const auto& [type, n] : counts.items()) snapshot.set("courtyard_events_total", {{"type", type}}, n.get<double>());
    }
    snapshot.describe("courtyard_rejected_total", "counter", "Payloads ingest rejected, by reason");
    if (auto raw = view.get(processors::Projector::kRejectionStatsKey)) {
      auto counts = json::parse(*raw);
      for (const auto& [reason, n] : counts.items()) snapshot.set("courtyard_rejected_total", {{"reason", reason}}, n.get<double>());
    }
    snapshot.describe("courtyard_consumer_lag", "gauge", "Messages in the log not yet in the projections");
    for (const auto& [tp, f] : sources_.freshness()) {
      snapshot.set("courtyard_consumer_lag", {{"topic", tp.first}, {"partition", std::to_string(tp.second)}}, static_cast<double>(f.lag()));
    }
    auto stats = sources_.runner_stats();
    snapshot.describe("courtyard_duplicates_total", "counter", "Events recognised as duplicates since start");
    snapshot.set("courtyard_duplicates_total", {}, static_cast<double>(stats.duplicates));
    snapshot.describe("courtyard_corrupt_total", "counter", "Log messages that did not decode since start");
    snapshot.set("courtyard_corrupt_total", {}, static_cast<double>(stats.corrupt));
    snapshot.describe("courtyard_batches_total", "counter", "Store writes by the processors since start");
    snapshot.set("courtyard_batches_total", {}, static_cast<double>(stats.batches));
    std::string latency = sources_.latency ? sources_.latency->render("courtyard_event_to_projection_seconds",
                                                                      "Device timestamp to projection commit")
                                           : "";
    if (sources_.batch_seconds) {
      latency += sources_.batch_seconds->render("courtyard_batch_seconds", "Projector time per batch (folds and store write)");
    }
    return {200, "text/plain; version=0.0.4", snapshot.render() + latency + metrics_.render()};
  }
  // Every projection: a list with filters and paging, and one item by id.
  struct Projection {
    std::string_view path;
    const char* route;
    std::string prefix;
    std::initializer_list<const char*> filters;
  };
  static const Projection kProjections[] = {
      {"/api/v1/devices", "/api/v1/devices", "devices/", {"community", "kind"}},
      {"/api/v1/alerts", "/api/v1/alerts", "alerts/", {"state", "severity", "community", "unit", "rule", "device"}},
      {"/api/v1/meters", "/api/v1/meters", "meters/", {"community", "kind", "unit"}},
      {"/api/v1/gates", "/api/v1/gates", "gates/", {"community"}},
      {"/api/v1/elders", "/api/v1/elders", "elders/", {"community", "unit", "wellbeing"}},
      {"/api/v1/homes", "/api/v1/homes", "homes/", {"community", "unit"}},
      {"/api/v1/communities", "/api/v1/communities", "communities/", {}},
      {"/api/v1/registry", "/api/v1/registry", "registry/", {"community", "kind", "role", "unit"}},
  };
  for (const auto& p : kProjections) {
    if (path == p.path || path == std::string(p.path) + "/") {
      route_name = p.route;
      return list(target, p.prefix, p.filters);
    }
    if (!path.starts_with(std::string(p.path) + "/")) continue;
    route_name = std::string(p.route) + "/{id}";
    std::string id = path.substr(p.path.size() + 1);
    auto view = sources_.store->view();
    auto raw = view.get(p.prefix + id);
    if (!raw) return error(404, "not_found", std::string(p.path.substr(8)) + " " + id + " is not known");
    json out = json::parse(*raw);
    out["id"] = id;
    if (p.prefix == "devices/") {
      auto rejections = view.get(processors::Projector::rejection_key(id));
      out["rejections"] = rejections ? json::parse(*rejections) : json(nullptr);
    }
    add_freshness(out, view, sources_.freshness());
    return json_response(200, out);
  }
  return error(404, "not_found", "no route for " + path);
}

HttpResponse Api::list(const Target& target, const std::string& prefix, std::initializer_list<const char*> filters) {
  std::size_t limit = 100;
  if (auto it = target.query.find("limit"); it != target.query.end()) {
    try {
      limit = std::clamp<std::size_t>(std::stoul(it->second), 1, 1000);
    } catch (const std::exception&) {
      return error(400, "bad_request", "limit must be a number 1..1000");
    }
  }
  std::vector<std::pair<std::string, std::string>> wanted;
  for (const char* name : filters) {
    if (auto it = target.query.find(name); it != target.query.end() && !it->second.empty()) wanted.emplace_back(name, it->second);
  }
  auto matches = [&](const json& j) {
    for (const auto& [field, value] : wanted) {
      std::string have = j.value(field, "");
      // state=active: every state but resolved
      if (field == "state" && value == "active" ? have == "resolved" : have != value) return false;
    }
    return true;
  };
  std::string after;
  if (auto it = target.query.find("after"); it != target.query.end() && !it->second.empty()) after = prefix + it->second;
  auto view = sources_.store->view();
  json items = json::array();
  std::string cursor = after;
  bool more = false;
  while (!more) {
    auto chunk = view.scan(prefix, cursor, 256);
    if (chunk.empty()) break;
    for (const auto& [key, raw] : chunk) {
      cursor = key;
      json j = json::parse(raw);
      j["id"] = key.substr(prefix.size());
      if (!matches(j)) continue;
      if (items.size() == limit) {
        more = true;
        break;
      }
      items.push_back(std::move(j));
    }
  }
  json out{{"items", items}, {"count", items.size()}};
  out["next"] = more ? json(items.back()["id"]) : json(nullptr);
  add_freshness(out, view, sources_.freshness());
  return json_response(200, out);
}

std::expected<schemas::RegistryEntry, std::string> registry_entry_from_json(const json& j) {
  if (!j.is_object()) return std::unexpected(std::string("body must be a JSON object"));
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

HttpResponse Api::registry_change(const std::string& community, const std::string& body) {
  if (!schemas::valid_id(community)) return error(404, "not_found", "use POST /api/v1/registry/{community}");
  auto entry = registry_entry_from_json(json::parse(body, nullptr, false));
  if (!entry) return error(400, "bad_request", entry.error());
  if (!sources_.append) return error(503, "unavailable", "this hub cannot write to the log");
  schemas::Event event;
  event.device = DeviceId("registry");
  event.community = CommunityId(community);
  event.body = *entry;
  auto offset = sources_.append(event);
  if (!offset) return error(503, "unavailable", "could not append to the log: " + offset.error());
  return json_response(202, json{{"accepted", true},
                                 {"entry", std::string(schemas::to_string(entry->kind)) + "/" + entry->id},
                                 {"log_offset", *offset}});
}

HttpResponse Api::alert_action(const std::string& rest, const std::string& body) {
  auto slash = rest.rfind('/');
  if (slash == std::string::npos) return error(404, "not_found", "use POST /api/v1/alerts/{id}/ack or /resolve");
  std::string id = rest.substr(0, slash), verb = rest.substr(slash + 1);
  schemas::AlertAction action;
  if (verb == "ack") {
    action = schemas::AlertAction::Acknowledge;
  } else if (verb == "resolve") {
    action = schemas::AlertAction::Resolve;
  } else if (verb == "hush") {
    action = schemas::AlertAction::Hush;
  } else {
    return error(404, "not_found", "unknown alert action " + verb + " (ack, resolve, hush)");
  }
  json request = body.empty() ? json::object() : json::parse(body, nullptr, false);
  if (request.is_discarded() || !request.is_object()) return error(400, "bad_request", "body must be a JSON object");
  auto raw = sources_.store->view().get(processors::Projector::alert_key(id));
  if (!raw) return error(404, "not_found", "alert " + id + " is not known");
  json alert = json::parse(*raw);
  if (alert.value("state", "") == "resolved") return error(409, "conflict", "alert " + id + " is already resolved");
  if (action == schemas::AlertAction::Hush && alert.value("rule", "") != "smoke" && alert.value("rule", "") != "gas") {
    return error(409, "conflict", "only smoke and gas alarms can be hushed");
  }
  if (!sources_.append) return error(503, "unavailable", "this hub cannot write to the log");
  schemas::Event event;
  event.device = DeviceId("operator");
  event.community = CommunityId(alert.value("community", ""));
  event.body = schemas::OperatorAction{id, action, request.value("actor", "api"), request.value("note", "")};
  auto offset = sources_.append(event);
  if (!offset) return error(503, "unavailable", "could not append to the log: " + offset.error());
  // Accepted: the action is in the log; the alert's state changes when the processors reach it.
  return json_response(202, json{{"accepted", true}, {"alert", id}, {"action", verb}, {"log_offset", *offset}});
}

}  // namespace courtyard::hub
