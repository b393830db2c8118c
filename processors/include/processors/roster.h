#pragma once
// Duty rosters (issue 16): who is on duty for one grid and role at a moment, on the log's clock in
// the compound's local time (a fixed UTC offset, as the hour and day buckets). A week of shifts,
// and exceptions (a swap, leave, a holiday) that override the week for a span of time.
// Pure functions: a fold asks them with the time of the event in hand, never a clock.
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "schemas/event.h"

namespace courtyard::processors {

using Shift = schemas::RosterShift;          // a weekday, start and end minutes (past midnight when end <= start), who
using RosterException = schemas::RosterSpan;  // [from, to) ms: who instead, or nobody (empty)

struct Roster {
  std::vector<Shift> week;
  std::vector<RosterException> exceptions;
  bool operator==(const Roster&) const = default;
};
// Every shift's day and minutes in range, every id an id, every span not empty: what the API
// checks, and what a fold checks again of a record from the log before it trusts it.
bool valid(const Roster& roster);

// Who is on duty at `at_ms`: the exception covering the moment that began last, if any (its
// staff, or nobody); else the shift covering it that began last (a shift begun the day before and
// running past midnight counts; at a handover the incoming shift has it). nullopt: nobody.
std::optional<std::string> on_duty(const Roster& roster, std::int64_t at_ms, int utc_offset_min);

// A roster as the API takes it: {"week":[{"day":"mon","from":"22:00","to":"06:00","staff":"..."}],
// "exceptions":[{"from":ms,"to":ms,"staff":"..."}]}. Refuses unknown days, times that are not
// HH:MM, empty spans, ids that are not ids, and more than 200 entries of either.
std::expected<Roster, std::string> roster_from_json(const nlohmann::json& j);
nlohmann::json to_json(const Roster& roster);
// For nlohmann's conversions (the fold keeps rosters in its state): the API form; a record that
// does not parse reads as an empty roster (nobody on duty).
void to_json(nlohmann::json& j, const Roster& roster);
void from_json(const nlohmann::json& j, Roster& roster);

}  // namespace courtyard::processors
