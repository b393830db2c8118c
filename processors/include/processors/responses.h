#pragma once
// Response figures (issue 16): how fast the compound answers its dispatched alerts. One record per
// community and local day (the day the alert opened): each incident resolved that day once, and
// the figures over them: time to acknowledge, to arrive and to resolve, p50/p90 and counts,
// overall and per grid, rule and responder; incidents that breached their target listed.
// Pure: built from alert records, which the alerts fold made on the log's clock.
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "processors/alerts_fold.h"

namespace courtyard::processors {

struct Response {
  std::string grid, rule, responder, severity;
  std::int64_t opened_at_ms = 0;
  std::int64_t ack_ms = -1, arrive_ms = -1, resolve_ms = -1;  // since it opened; -1: never
  bool breached = false;  // escalated past the first one told, or never acknowledged
  bool operator==(const Response&) const = default;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Response, grid, rule, responder, severity, opened_at_ms, ack_ms, arrive_ms,
                                                resolve_ms, breached)

struct ResponseDay {
  std::string community, day;             // day: YYYY-MM-DD, local
  std::map<std::string, Response> incidents;  // by alert id
  std::uint64_t dropped = 0;              // incidents past kMaxIncidentsPerDay: counted, not kept
  bool operator==(const ResponseDay&) const = default;
};
inline constexpr std::size_t kMaxIncidentsPerDay = 5000;

// What a resolved, dispatched alert says of the response; nullopt for any other alert.
std::optional<Response> response_of(const Alert& alert);
// Adds (or replaces: a reopened alert resolved again) an incident.
void record(ResponseDay& day, const std::string& alert_id, Response response);

// The record as served: the incidents and their figures.
nlohmann::json to_json(const ResponseDay& day);
ResponseDay response_day_from_json(const nlohmann::json& j);

}  // namespace courtyard::processors
