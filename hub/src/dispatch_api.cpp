// Dispatch's routes (issue 16, decision 0026), so far the compound's structure and duty rosters:
//   POST /api/v1/site/{community}                            a building or a grid, whole
//   POST /api/v1/rosters/{community}/{grid}/{role}          a grid and role's roster, whole
//   GET  /api/v1/rosters/{community}/{grid}/{role}/on-duty   who is on duty now (the log's clock) or ?at=
// The list and the records themselves are served as any projection's (/api/v1/rosters).
#include <algorithm>
#include <array>
#include <cstdlib>
#include <set>

#include <fmt/format.h>

#include "api_helpers.h"
#include "common/text.h"
#include "processors/projector.h"
#include "processors/record.h"
#include "processors/roster.h"

namespace courtyard::hub {
namespace {

constexpr std::array<std::string_view, 4> kRoles = {"grid_worker", "duty_manager", "security", "maintenance"};

struct RosterPath {
  std::string community, grid, role, rest;
};
// "{community}/{grid}/{role}[/{rest}]"
std::optional<RosterPath> roster_path(std::string_view tail) {
  std::array<std::string, 4> parts;
  for (std::size_t i = 0; i < parts.size() && !tail.empty(); ++i) {
    const auto slash = i + 1 < parts.size() ? tail.find('/') : std::string_view::npos;
    parts[i] = std::string(tail.substr(0, slash));
    tail = slash == std::string_view::npos ? std::string_view() : tail.substr(slash + 1);
  }
  RosterPath p{parts[0], parts[1], parts[2], parts[3]};
  if (!schemas::valid_id(p.community) || !schemas::valid_id(p.grid)) return std::nullopt;
  if (std::find(kRoles.begin(), kRoles.end(), p.role) == kRoles.end()) return std::nullopt;
  return p;
}

constexpr std::size_t kMaxMembers = 500;
constexpr std::int32_t kMaxMapMetres = 100'000;

// A building or grid as a request describes it: {"kind":"building","id":"b3","label":"Building 3",
// "floors":18,"map":{"x":120,"y":40},"members":["b3-0101","b3-door"]} or {"kind":"grid","id":"grid-a","members":["b1","b2","gate-east"]}.
std::expected<schemas::SiteEntry, std::string> site_entry_from_json(const json& j) {
  static const std::set<std::string, std::less<>> kKnown = {"kind", "id", "label", "floors", "map", "members", "removed"};
  for (const auto& [field, _] : j.items()) {
    if (!kKnown.contains(field)) return std::unexpected(field + " is not a field of a building or grid");
  }
  schemas::SiteEntry s;
  auto kind = j.value("kind", json()).is_string() ? schemas::parse_site_kind(j["kind"].get<std::string>()) : std::nullopt;
  if (!kind) return std::unexpected(std::string("kind is building or grid"));
  s.kind = *kind;
  if (!j.value("id", json()).is_string() || !schemas::valid_id(j["id"].get<std::string>())) {
    return std::unexpected(std::string("id is 1..64 of [A-Za-z0-9_.-]"));
  }
  s.id = j["id"].get<std::string>();
  if (auto label = j.find("label"); label != j.end()) {
    if (!label->is_string() || label->get<std::string>().size() > 64 || !valid_utf8(label->get<std::string>())) {
      return std::unexpected(std::string("label is text of up to 64 bytes"));
    }
    s.label = label->get<std::string>();
    if (std::any_of(s.label.begin(), s.label.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; })) {
      return std::unexpected(std::string("label is one line of text"));
    }
  }
  if (auto removed = j.find("removed"); removed != j.end()) {
    if (!removed->is_boolean()) return std::unexpected(std::string("removed is true or false"));
    s.removed = removed->get<bool>();
  }
  auto members = j.find("members");
  if (members != j.end()) {
    if (!members->is_array() || members->size() > kMaxMembers) {
      return std::unexpected(fmt::format("members is a list of at most {} ids (a building's units and doors, a grid's "
                                         "buildings and gates)", kMaxMembers));
    }
    for (const auto& m : *members) {
      if (!m.is_string() || !schemas::valid_id(m.get<std::string>())) return std::unexpected(std::string("each member is an id"));
      if (std::find(s.members.begin(), s.members.end(), m.get<std::string>()) != s.members.end()) {
        return std::unexpected("member " + m.get<std::string>() + " appears twice");
      }
      s.members.push_back(m.get<std::string>());
    }
  }
  if (s.kind == schemas::SiteKind::Building) {
    if (auto floors = j.find("floors"); floors != j.end()) {
      if (!floors->is_number_integer() || floors->get<std::int64_t>() < 0 || floors->get<std::int64_t>() > 200) {
        return std::unexpected(std::string("floors is an integer 0..200"));
      }
      s.floors = floors->get<int>();
    }
    if (auto map = j.find("map"); map != j.end()) {
      auto coordinate = [&](const char* axis) -> std::optional<std::int32_t> {
        auto v = map->is_object() ? map->find(axis) : map->end();
        if (!map->is_object() || v == map->end() || !v->is_number_integer() || std::abs(v->get<std::int64_t>()) > kMaxMapMetres) {
          return std::nullopt;
        }
        return v->get<std::int32_t>();
      };
      auto x = coordinate("x"), y = coordinate("y");
      if (!x || !y) return std::unexpected(fmt::format("map is {{\"x\":metres,\"y\":metres}}, each within ±{}", kMaxMapMetres));
      s.map_x = *x;
      s.map_y = *y;
    }
  } else {
    if (j.contains("floors") || j.contains("map")) return std::unexpected(std::string("a grid has members, not floors or a map position"));
  }
  return s;
}

}  // namespace

std::optional<HttpResponse> Api::roster_write(const Principal& who, const std::string& path, const std::string& body,
                                              std::string& route_name) {
  constexpr std::string_view kRosters = "/api/v1/rosters/", kSite = "/api/v1/site/";
  if (path.starts_with(kSite)) {
    route_name = "/api/v1/site/{community}";
    const std::string community = path.substr(kSite.size());
    if (!schemas::valid_id(community)) return error(404, "not_found", "use POST /api/v1/site/{community}");
    if (who.role == Role::Resident || !may_act(who, community, "")) {
      return forbidden("the compound's structure is set by admin and the community's staff");
    }
    auto request = object_body(body, {});
    if (!request) return request.error();
    auto entry = site_entry_from_json(*request);
    if (!entry) return error(400, "bad_request", entry.error());
    const std::string href = "/api/v1/site/" + community + "/" + std::string(schemas::to_string(entry->kind)) + "/" + entry->id;
    auto offset = append("operator", community, std::move(*entry));
    if (!offset) return offset.error();
    return json_response(202, request_fields(json{{"accepted", true}, {"href", href}}, *offset));
  }
  if (!path.starts_with(kRosters)) return std::nullopt;
  route_name = "/api/v1/rosters/{community}/{grid}/{role}";
  auto p = roster_path(std::string_view(path).substr(kRosters.size()));
  if (!p || !p->rest.empty()) {
    return error(404, "not_found", "use POST /api/v1/rosters/{community}/{grid}/{role} (role: grid_worker, duty_manager, security, maintenance)");
  }
  if (who.role == Role::Resident || !may_act(who, p->community, "")) {
    return forbidden("rosters are set by admin and the community's staff");
  }
  auto request = object_body(body, {});
  if (!request) return request.error();
  auto roster = processors::roster_from_json(*request);
  if (!roster) return error(400, "bad_request", roster.error());
  auto offset = append("operator", p->community,
                       schemas::DutyRoster{p->grid, p->role, roster->week, roster->exceptions, actor_of(who)});
  if (!offset) return offset.error();
  return json_response(202, request_fields(json{{"accepted", true},
                                                 {"href", "/api/v1/rosters/" + p->community + "/" + p->grid + "/" + p->role}},
                                            *offset));
}

std::optional<HttpResponse> Api::roster_read(const Principal& who, const Target& target, std::string& route_name) {
  constexpr std::string_view kRosters = "/api/v1/rosters/";
  if (!target.path.starts_with(kRosters) || !target.path.ends_with("/on-duty")) return std::nullopt;
  route_name = "/api/v1/rosters/{community}/{grid}/{role}/on-duty";
  auto p = roster_path(std::string_view(target.path).substr(kRosters.size()));
  if (!p || p->rest != "on-duty") return error(404, "not_found", "no route for " + target.path);
  auto view = sources_.store->view();
  const std::string key = "rosters/" + p->community + "/" + p->grid + "/" + p->role;
  auto raw = view.get(key);
  json record = raw ? json::parse(*raw, nullptr, false) : json();
  if (!raw || !record.is_object() || !may_read(who, key, scope_of(key, record))) {
    return not_found_or_hidden("roster", p->community + "/" + p->grid + "/" + p->role, raw.has_value());
  }
  // The moment: the one asked for, else the community's log time (its latest event or tick).
  std::int64_t at = 0;
  std::string clock = "given";
  if (auto it = target.query.find("at"); it != target.query.end()) {
    auto given = strict_integer(it->second);
    if (!given || *given < 0) return error(400, "bad_request", "at is ms since the epoch");
    at = *given;
  } else {
    auto now = view.get("alertclock/" + p->community);
    json parsed = now ? processors::parse_record(*now) : json();
    if (!parsed.is_number_integer()) return error(409, "conflict", "the community has no log time yet: give ?at=");
    at = parsed.get<std::int64_t>();
    clock = "log";
  }
  auto roster = processors::roster_from_json(record);
  if (!roster) return error(409, "conflict", "the stored roster does not read: " + roster.error());
  const auto staff = processors::on_duty(*roster, at, sources_.utc_offset_min);
  return json_response(200, json{{"community", p->community}, {"grid", p->grid}, {"role", p->role}, {"at", at},
                                 {"clock", clock}, {"staff", staff ? json(*staff) : json(nullptr)}});
}

}  // namespace courtyard::hub
