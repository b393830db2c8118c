#pragma once
// The community projections staff and families read: meters, gates, occupancy, homes, elders.
// Each is a pure fold of one state and one event (time from the event, never a clock), with its
// JSON form for the store and the API. Which events reach which state is the projector's job.
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "processors/alerts_fold.h"
#include "schemas/event.h"

namespace courtyard::processors {

struct FoldContext {
  int utc_offset_min = 480;  // the community's local time for hour and day buckets (China: UTC+8)
};

// --- meters: per meter, from cumulative totals ---------------------------------------------
struct MeterState {
  std::string community, unit, kind, measure_unit;
  double last_total = 0;
  std::int64_t last_reading_ms = 0;  // device time of the reading last applied
  std::uint64_t readings = 0, resets = 0, out_of_order = 0;
  std::map<std::string, double> hourly;  // consumption per local hour (last 48)
  std::map<std::string, double> daily;   // consumption per local day (last 62)
};
// Consumption is the difference of cumulative totals; a total lower than the last is a reset
// (the new total is consumption since the reset); a reading older than the last applied one is
// counted and ignored.
struct MeterStep {
  MeterState state;
  double consumed = 0;  // attributed to the reading's hour and day
};
MeterStep apply(MeterState state, const schemas::Event& event, const schemas::MeterReading& reading,
                const FoldContext& context);

// Per community: consumption per day by meter kind and by building (the unit's prefix: "b3-0402" -> "b3").
struct CommunityMeters {
  std::map<std::string, std::map<std::string, double>> daily_by_kind;  // kind -> day -> amount
  std::map<std::string, std::map<std::string, std::map<std::string, double>>> daily_by_building;  // building -> kind -> day
};
CommunityMeters add_consumption(CommunityMeters totals, const MeterState& meter, const std::string& day, double amount);

// --- gates: per gate ---------------------------------------------------------------------------
struct GateState {
  std::string community, location;
  std::uint64_t passes = 0, in = 0, out = 0, granted = 0, denied = 0, fevers = 0;
  std::map<std::string, std::uint64_t> by_credential;     // face, card, ...
  std::map<std::string, std::uint64_t> by_subject_kind;   // resident, staff, visitor, unknown
  std::map<std::string, std::uint64_t> denials_by_reason;
  std::map<std::string, std::uint64_t> hourly;            // passes per local hour (last 48)
  double last_temperature_c = 0;
  std::int64_t last_pass_ms = 0;
};
GateState apply(GateState state, const schemas::Event& event, const schemas::GatePass& pass, double fever_c,
                const std::string& subject_kind, const FoldContext& context);

// --- occupancy: per community, people (pedestrian gates) and vehicles -------------------------
struct Occupancy {
  std::set<std::string> people_inside;                 // pseudonymous subject tokens
  std::map<std::string, std::int64_t> vehicles_inside; // plate token -> entry time (log time)
  std::uint64_t people_entries = 0, people_exits = 0, vehicle_entries = 0, vehicle_exits = 0;
  std::uint64_t unknown_exits = 0;                     // exits by someone not seen entering
  std::map<std::string, std::uint64_t> entries_per_hour;  // people (last 48 local hours)
  std::map<std::string, std::uint64_t> vehicle_entries_per_hour;
  std::map<std::string, std::uint64_t> exits_per_hour;          // people
  std::map<std::string, std::uint64_t> vehicle_exits_per_hour;
};
Occupancy apply(Occupancy state, const schemas::Event& event, const FoldContext& context);

// --- homes: per household --------------------------------------------------------------------
struct SensorReading {
  std::string sensor, state;
  double value = 0;
  bool has_value = false;
  std::int64_t at_ms = 0;
};
struct HomeState {
  std::string community, unit;
  std::map<std::string, SensorReading> sensors;  // by device
  std::map<std::string, std::string> open_alerts;  // alert id -> severity, not resolved, for this household
  std::set<std::string> people_inside;             // its residents and visitors inside the community now
};
// A granted pass by one of the household's people (or its visitors).
HomeState apply(HomeState state, const schemas::GatePass& pass);
HomeState apply(HomeState state, const schemas::Event& event, const schemas::HomeSensor& reading);

// --- elders: per wearer ------------------------------------------------------------------------
struct ElderState {
  std::string community, unit;
  nlohmann::json latest;               // the latest vitals body, with "at"
  std::vector<double> heart_rates;     // the last 60 readings, for rolling statistics
  std::vector<double> spo2;
  std::int64_t last_movement_ms = 0;   // log time of the last vitals with moving=true or steps rising
  std::uint32_t last_steps = 0;
  std::vector<nlohmann::json> alarms;  // the last 20 falls / SOS / removals: {kind, cancelled, at}
  std::map<std::string, std::string> open_alerts;  // alert id -> severity
  std::string wellbeing = "unknown";   // alert (a critical alert is open), attention (another alert), ok, unknown (no vitals yet)
};
ElderState apply(ElderState state, const schemas::Event& event, const FoldContext& context);
// Wellbeing from the wearer's open alerts (fall, SOS, SpO2, inactivity, offline...) and vitals.
// Time-based signs (12 h without movement) arrive as alerts, so this needs no clock.
std::string wellbeing(const ElderState& state);

// --- cameras: per gate camera -------------------------------------------------------------------
struct SnapshotRecord {
  std::uint64_t snapshot_id = 0;  // the blurred image: GET /api/v1/snapshots/{id} (while retained)
  std::int64_t at_ms = 0;         // log time of the snapshot
  std::uint32_t faces = 0;
  std::string plate_token;        // pseudonymous; empty: none read
  double plate_confidence = 0;
  std::string verdict, detail;    // SnapshotVerdict
  std::vector<std::uint64_t> passes;  // event ids of the passes it belongs to
};
struct CameraState {
  std::string community, gate, location;
  std::uint64_t snapshots = 0, analysed = 0;
  std::map<std::string, std::uint64_t> verdicts;  // ok, tailgating, ... -> count
  std::int64_t last_snapshot_ms = 0;
  std::vector<SnapshotRecord> recent;             // the last 20 analysed, newest last
};
CameraState apply(CameraState state, const schemas::Event& event, const schemas::CameraSnapshot& snapshot);
CameraState apply(CameraState state, const schemas::VisionAnalysis& analysis, const SnapshotVerdict& verdict);

nlohmann::json to_json(const CameraState& s);
CameraState camera_state_from_json(const nlohmann::json& j);

nlohmann::json to_json(const MeterState& s);
nlohmann::json to_json(const CommunityMeters& s);
nlohmann::json to_json(const GateState& s);
nlohmann::json to_json(const Occupancy& s);
// The occupancy record without who is inside (counts, entries and exits per hour).
nlohmann::json occupancy_summary(const Occupancy& s);
nlohmann::json to_json(const HomeState& s);
nlohmann::json to_json(const ElderState& s);
// The stored records (processors/record.h): binary, rendered each is to_json(state).dump().
std::string to_record(const ElderState& s);
std::string to_record(const MeterState& s);
std::string to_record(const CommunityMeters& s);
std::string to_record(const GateState& s);
std::string to_record(const CameraState& s);
std::string to_record(const HomeState& s);
MeterState meter_state_from_json(const nlohmann::json& j);
CommunityMeters community_meters_from_json(const nlohmann::json& j);
GateState gate_state_from_json(const nlohmann::json& j);
Occupancy occupancy_from_json(const nlohmann::json& j);
HomeState home_state_from_json(const nlohmann::json& j);
ElderState elder_state_from_json(const nlohmann::json& j);

}  // namespace courtyard::processors
