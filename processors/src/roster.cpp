#include "processors/roster.h"

#include <array>
#include <cstdio>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "schemas/event.h"

namespace courtyard::processors {
namespace {

using json = nlohmann::json;
constexpr std::int64_t kDayMs = 86'400'000, kWeekMin = 7 * 1440;
constexpr std::array<const char*, 7> kDays = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};
constexpr std::size_t kMaxEntries = 200;

std::int64_t floor_div(std::int64_t a, std::int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// Minutes since Monday 00:00 local of the week `at_ms` falls in. 1970-01-01 was a Thursday.
std::int64_t minute_of_week(std::int64_t at_ms, int utc_offset_min) {
  const std::int64_t local = at_ms + std::int64_t{utc_offset_min} * 60'000;
  const std::int64_t day = floor_div(local, kDayMs);
  const std::int64_t weekday = ((day + 3) % 7 + 7) % 7;
  return weekday * 1440 + (local - day * kDayMs) / 60'000;
}

std::optional<int> minutes(const std::string& hhmm, bool end) {
  int h = 0, m = 0;
  char tail = 0;
  if (hhmm.size() != 5 || std::sscanf(hhmm.c_str(), "%2d:%2d%c", &h, &m, &tail) != 2 || hhmm[2] != ':') return std::nullopt;
  if (end && h == 24 && m == 0) return 1440;
  if (h < 0 || h > 23 || m < 0 || m > 59) return std::nullopt;
  return h * 60 + m;
}

std::string hhmm(int min) { return fmt::format("{:02}:{:02}", min / 60, min % 60); }

}  // namespace

bool valid(const Roster& r) {
  if (r.week.size() > kMaxEntries || r.exceptions.size() > kMaxEntries) return false;
  for (const auto& s : r.week) {
    if (s.weekday < 0 || s.weekday > 6 || s.start_min < 0 || s.start_min > 1439 || s.end_min < 0 || s.end_min > 1440 ||
        !schemas::valid_id(s.staff)) {
      return false;
    }
  }
  for (const auto& e : r.exceptions) {
    if (e.to_ms <= e.from_ms || (!e.staff.empty() && !schemas::valid_id(e.staff))) return false;
  }
  return true;
}

std::optional<std::string> on_duty(const Roster& roster, std::int64_t at_ms, int utc_offset_min) {
  const RosterException* exception = nullptr;
  for (const auto& e : roster.exceptions) {
    if (e.from_ms <= at_ms && at_ms < e.to_ms && (!exception || e.from_ms >= exception->from_ms)) exception = &e;
  }
  if (exception) return exception->staff.empty() ? std::nullopt : std::optional(exception->staff);
  const std::int64_t now = minute_of_week(at_ms, utc_offset_min);
  const Shift* best = nullptr;
  std::int64_t best_age = kWeekMin;  // minutes since the shift began; the smallest wins
  for (const auto& s : roster.week) {
    const std::int64_t start = s.weekday * 1440 + s.start_min;
    const std::int64_t length = s.end_min > s.start_min ? s.end_min - s.start_min : 1440 - s.start_min + s.end_min;
    const std::int64_t age = ((now - start) % kWeekMin + kWeekMin) % kWeekMin;  // Sunday night runs into Monday
    if (age < length && age < best_age) {
      best = &s;
      best_age = age;
    }
  }
  if (!best) return std::nullopt;
  return best->staff;
}

std::expected<Roster, std::string> roster_from_json(const json& j) {
  if (!j.is_object()) return std::unexpected(std::string("a roster is a JSON object"));
  Roster r;
  const auto week = j.find("week");
  if (week != j.end() && (!week->is_array() || week->size() > kMaxEntries)) {
    return std::unexpected(fmt::format("week is a list of at most {} shifts", kMaxEntries));
  }
  for (const auto& s : week == j.end() ? json::array() : *week) {
    if (!s.is_object() || !s.value("day", json()).is_string() || !s.value("from", json()).is_string() ||
        !s.value("to", json()).is_string() || !s.value("staff", json()).is_string()) {
      return std::unexpected(std::string("a shift is {\"day\":\"mon\",\"from\":\"22:00\",\"to\":\"06:00\",\"staff\":\"...\"}"));
    }
    Shift shift;
    const auto day = s["day"].get<std::string>();
    shift.weekday = -1;
    for (int d = 0; d < 7; ++d) {
      if (day == kDays[static_cast<std::size_t>(d)]) shift.weekday = d;
    }
    if (shift.weekday < 0) return std::unexpected("day \"" + day + "\" is not mon, tue, wed, thu, fri, sat or sun");
    auto from = minutes(s["from"].get<std::string>(), false), to = minutes(s["to"].get<std::string>(), true);
    if (!from || !to) return std::unexpected(std::string("from and to are HH:MM (to may be 24:00)"));
    shift.start_min = *from;
    shift.end_min = *to;
    shift.staff = s["staff"].get<std::string>();
    if (!schemas::valid_id(shift.staff)) return std::unexpected(std::string("staff is an id: 1..64 of [A-Za-z0-9_.-]"));
    r.week.push_back(std::move(shift));
  }
  const auto exceptions = j.find("exceptions");
  if (exceptions != j.end() && (!exceptions->is_array() || exceptions->size() > kMaxEntries)) {
    return std::unexpected(fmt::format("exceptions is a list of at most {} spans", kMaxEntries));
  }
  for (const auto& e : exceptions == j.end() ? json::array() : *exceptions) {
    if (!e.is_object() || !e.value("from", json()).is_number_integer() || !e.value("to", json()).is_number_integer()) {
      return std::unexpected(std::string("an exception is {\"from\":ms,\"to\":ms,\"staff\":\"...\"} (staff \"\": nobody)"));
    }
    RosterException x{e["from"].get<std::int64_t>(), e["to"].get<std::int64_t>(), ""};
    if (x.to_ms <= x.from_ms) return std::unexpected(std::string("an exception's to is after its from"));
    if (auto staff = e.find("staff"); staff != e.end() && !staff->is_null()) {
      if (!staff->is_string()) return std::unexpected(std::string("staff is a string"));
      x.staff = staff->get<std::string>();
      if (!x.staff.empty() && !schemas::valid_id(x.staff)) return std::unexpected(std::string("staff is an id: 1..64 of [A-Za-z0-9_.-]"));
    }
    r.exceptions.push_back(std::move(x));
  }
  return r;
}

json to_json(const Roster& r) {
  json week = json::array(), exceptions = json::array();
  for (const auto& s : r.week) {
    week.push_back({{"day", kDays[static_cast<std::size_t>(s.weekday)]}, {"from", hhmm(s.start_min)}, {"to", hhmm(s.end_min)},
                    {"staff", s.staff}});
  }
  for (const auto& e : r.exceptions) exceptions.push_back({{"from", e.from_ms}, {"to", e.to_ms}, {"staff", e.staff}});
  return {{"week", week}, {"exceptions", exceptions}};
}

void to_json(json& j, const Roster& roster) { j = to_json(roster); }
void from_json(const json& j, Roster& roster) { roster = roster_from_json(j).value_or(Roster{}); }

}  // namespace courtyard::processors
