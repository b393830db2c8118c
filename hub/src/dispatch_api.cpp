// Dispatch's routes (issue 16, decision 0026), so far the duty rosters:
//   POST /api/v1/rosters/{community}/{grid}/{role}          a grid and role's roster, whole
//   GET  /api/v1/rosters/{community}/{grid}/{role}/on-duty   who is on duty now (the log's clock) or ?at=
// The list and the records themselves are served as any projection's (/api/v1/rosters).
#include <array>

#include "api_helpers.h"
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

}  // namespace

std::optional<HttpResponse> Api::roster_write(const Principal& who, const std::string& path, const std::string& body,
                                              std::string& route_name) {
  constexpr std::string_view kRosters = "/api/v1/rosters/";
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
