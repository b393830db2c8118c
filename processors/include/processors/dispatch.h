#pragma once
// Dispatch (issue 16): which staff member an alert goes to, and who next when nobody answers.
// The alerts fold calls these with the log's time; they read the community's structure (buildings
// and grids, from site.entry) and its duty rosters (roster.set), never a clock.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "processors/roster.h"

namespace courtyard::processors {

// Defaults in config/rules.toml ([defaults.dispatch]); a community may override them.
struct DispatchRules {
  // The role told first, by rule; a rule not listed goes to the grid worker.
  std::map<std::string, std::string> responder = {
      {"fever", "security"},          {"unknown_subject", "security"}, {"repeated_denials", "security"},
      {"tailgating", "security"},     {"plate_mismatch", "security"},  {"unknown_vehicle", "security"},
      {"vehicle_overstay", "security"}, {"offline", "maintenance"},    {"low_battery", "maintenance"},
      {"tamper", "maintenance"},      {"water_leak", "maintenance"},   {"consumption_spike", "maintenance"},
      {"continuous_flow", "maintenance"}};
  // Who is told next, in order, when the one told does not acknowledge in time (a role already
  // told is skipped).
  std::vector<std::string> chain = {"duty_manager", "security"};
  // How long the one told has to acknowledge, by severity (0: no escalation).
  std::map<std::string, std::int64_t> ack_target_ms = {
      {"critical", 120'000}, {"major", 300'000}, {"minor", 1'800'000}, {"warning", 0}};
  bool operator==(const DispatchRules&) const = default;
};

// A building or a grid, as the fold keeps it: a building's members are its units and the gates
// and doors at it; a grid's are its buildings and gates.
struct SitePlace {
  std::string kind;  // building, grid
  std::vector<std::string> members;
  bool operator==(const SitePlace&) const = default;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(SitePlace, kind, members)
// The fold keeps places by "{kind}/{id}" (a grid and a building may share an id), each with at
// most this many members (the API's limit; a record from the log beyond it is ignored).
inline std::string site_key(const std::string& kind, const std::string& id) { return kind + "/" + id; }
inline constexpr std::size_t kMaxSiteMembers = 500;

// Where in the compound a unit or a device is: its building (a building listing the unit or the
// device) and its grid (a grid listing that building or the device). Empty when nobody said.
struct Place {
  std::string building, grid;
};
Place place_of(const std::map<std::string, SitePlace>& site, const std::string& unit, const std::string& device);

// Whether a pass at `gate` reaches an alert's place: the alert's own device, a door of its unit
// (`gate_unit`) or a gate its building lists.
bool reaches(const std::map<std::string, SitePlace>& site, const std::string& gate, const std::string& gate_unit,
             const std::string& building, const std::string& unit, const std::string& device);

// The roles told about a rule, in order: its responder, then the chain without repeats.
std::vector<std::string> chain_for(const DispatchRules& rules, const std::string& rule);

// Rosters by "{grid}|{role}"; the grid `all` is the whole compound's, asked when a grid has none.
using Rosters = std::map<std::string, Roster>;
std::string roster_key(const std::string& grid, const std::string& role);

struct Assignment {
  std::size_t step = 0;  // index into the chain
  std::string role, staff;
};
// The first step from `from` on whose role has someone on duty at `at_ms` for `grid`.
std::optional<Assignment> assign(const Rosters& rosters, const std::vector<std::string>& chain, std::size_t from,
                                 const std::string& grid, std::int64_t at_ms, int utc_offset_min);

}  // namespace courtyard::processors
