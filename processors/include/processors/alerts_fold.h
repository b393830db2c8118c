#pragma once
// The alerts fold: rules over a community's events that open, update, escalate and close alert
// episodes. One state per community (its devices' directory and liveness, its active alerts,
// recently closed ones for flap suppression), so rules that combine devices need no joins.
// Pure and deterministic: "now" is the latest log time the community has seen (event ingest
// times and hub ticks), never a clock; replaying the same events gives the same alerts.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "processors/dispatch.h"
#include "schemas/event.h"

namespace courtyard::processors {

// Thresholds of every rule. Defaults in config/rules.toml; each community may override any.
struct AlertRules {
  double fever_c = 37.3;                        // gate temperature at or above: major
  double spo2_critical_pct = 92;                // wearable SpO2 at or below: critical
  double spo2_major_pct = 94;                   // at or below this for spo2_sustain_ms: major
  std::int64_t spo2_sustain_ms = 300'000;
  double heart_rate_limit_bpm = 120;            // above this while not moving for heart_rate_sustain_ms: major
  std::int64_t heart_rate_sustain_ms = 600'000;
  std::int64_t watch_removed_ms = 900'000;      // a watch taken off and no movement at home for this long: major
  std::int64_t hush_ms = 600'000;               // a hushed smoke alarm stays quiet this long
  int repeated_denials = 5;                     // denials at one gate within the window: major
  std::int64_t repeated_denials_window_ms = 600'000;
  double spike_multiple = 5;                    // a meter's consumption rate over this multiple of its own baseline: minor
  int spike_min_samples = 10;                   // readings before a meter's baseline counts
  double low_battery_pct = 20;                  // battery at or below: warning
  std::int64_t low_battery_repeat_ms = 86'400'000;  // a closed low-battery alert is not raised again sooner
  std::int64_t fall_escalate_ms = 60'000;       // a fall not cancelled within this becomes critical
  std::int64_t critical_ack_timeout_ms = 300'000;  // an unacknowledged critical alert escalates after this
  std::int64_t flap_window_ms = 300'000;        // a re-trigger this soon after closing reopens the episode
  std::int64_t door_open_limit_ms = 600'000;    // a home door open longer than this: minor
  int offline_missed_heartbeats = 3;            // silent for this many intervals: offline (major)
  std::int64_t inactivity_ms = 12 * 3'600'000;  // a wearer's home with no movement, door or water use this long: major
  std::int64_t tailgate_window_ms = 10'000;     // passes granted this long before a gate snapshot count for it
  std::int64_t snapshot_grace_ms = 2'000;       // ... and this long after (a camera may fire before the reader)
  std::int64_t plate_window_ms = 30'000;        // a vehicle snapshot belongs to the last pass granted this long before it
  double plate_min_confidence = 0.6;            // plates read with less confidence are not compared
  std::map<std::string, std::int64_t> heartbeat_ms = {  // expected interval per device kind; 0: not watched
      {"gate", 60'000},       {"vehicle_gate", 60'000}, {"door", 300'000},   {"camera", 60'000},
      {"meter", 900'000},     {"home_sensor", 300'000}, {"wearable", 300'000}};
  DispatchRules dispatch;  // who is told, and who next (a community with duty rosters)
};

// The rules in force: defaults, and any community's own overrides.
struct RuleBook {
  AlertRules defaults;
  std::map<std::string, AlertRules> communities;
  const AlertRules& rules_for(const std::string& community) const {
    auto it = communities.find(community);
    return it == communities.end() ? defaults : it->second;
  }
};

struct TimelineEntry {
  std::int64_t at_ms = 0;
  // opened, updated, escalated, acknowledged, resolved, reopened; dispatch: assigned, unassigned,
  // unanswered, reassigned, on_my_way, arrived, handed_over
  std::string what;
  std::string by;    // "rule", an operator, "device", "dispatch", "gate"
  std::string note;
  bool operator==(const TimelineEntry&) const = default;
};

struct Alert {
  std::string id;        // {community}:{rule}:{subject}:{episode}: deterministic, so replays dedupe
  std::string rule;      // fever, sos, fall, spo2_low, smoke, gas, water_leak, door_open, offline, low_battery, tamper
  std::string severity;  // critical, major, minor, warning
  std::string state;     // open, acknowledged, escalated, resolved
  std::string community, unit, device, location;  // where: for staff to go
  std::string subject;   // who or what: a person's token, a wearer's device, a sensor
  std::string detail;    // latest reading in words
  std::int64_t opened_at_ms = 0, updated_at_ms = 0, acknowledged_at_ms = 0, resolved_at_ms = 0;
  std::int64_t escalate_at_ms = 0;  // when a timer of this alert fires (0: none)
  std::int64_t hushed_until_ms = 0; // a hushed alarm: its sounder stays quiet until then
  std::uint64_t occurrences = 0;    // triggers folded into this episode
  std::uint64_t snapshot_id = 0;    // camera rules: the (blurred) snapshot that shows it
  std::vector<TimelineEntry> timeline;
  // Dispatch (a community with duty rosters): where in the compound, who has it, how far along.
  std::string building, grid;
  std::string assignee;        // the staff member's person token ("" nobody)
  std::string assignee_role;   // grid_worker, duty_manager, security, maintenance
  int chain_step = 0;          // the assignee's place in the rule's chain
  std::int64_t assigned_at_ms = 0;
  std::int64_t dispatch_at_ms = 0;  // not acknowledged by then: the next in the chain (0: no timer)
  std::string response;        // "", on_my_way, arrived, handed_over
  std::int64_t arrived_at_ms = 0;
  std::uint32_t notified = 0;  // notifications decided so far (their ids count up)
  bool operator==(const Alert&) const = default;
};

// Somebody to be told something about an alert, decided by the fold (so a replay decides the same)
// and carried by a sender that records what became of it (notification.status).
struct Notification {
  std::string id;        // {alert id}~{n}
  std::string alert_id, community, rule, severity, unit, device, location, detail;
  std::string to;        // staff (the assignee) or family (the household's emergency contacts)
  std::string staff;     // to staff: whose person token
  std::string what;      // staff: assigned, escalated, reassigned, relieved (it went to someone else), resolved;
                         // family: alert, staff_assigned, staff_arrived, resolved
  std::int64_t at_ms = 0;
  bool operator==(const Notification&) const = default;
};
// Rules whose household is told (the elder's emergency contacts).
bool family_rule(const std::string& rule);
nlohmann::json to_json(const Notification& n);

struct WatchedDevice {
  std::string kind, unit, location;
  std::int64_t last_seen_ms = 0;
  std::int64_t door_open_since_ms = 0;  // home door contact: when it opened (0: closed)
  double last_total = -1;               // meters: the last cumulative total (-1: none yet)
  std::int64_t last_reading_ms = 0;     // meters: device time of that total
  std::uint32_t flow_mask = 0;          // water meters: bit i set = water used in the hour i hours before flow_hour
  std::int64_t flow_hour = 0;           // hours since the epoch of bit 0
  double rate_baseline = 0;             // meters: smoothed consumption per hour
  std::int64_t rate_window_start_ms = 0;  // meters: start of the current rate window
  double rate_window_used = 0;          // meters: consumed in it
  int rate_samples = 0;
  std::uint32_t last_steps = 0;         // wearables: the last step count
  std::int64_t spo2_low_since_ms = 0;   // wearables: start of the current streak of SpO2 <= spo2_major_pct
  std::int64_t hr_high_since_ms = 0;    // wearables: start of the current streak of high heart rate while still
  std::int64_t removed_since_ms = 0;    // wearables: when the watch reported it was taken off
  bool operator==(const WatchedDevice&) const = default;
};

// Who and what the community's registry knows: people (resident, staff, visitor) and vehicles.
struct Registered {
  std::string role;  // resident, staff, visitor; "vehicle" for vehicles
  std::string unit;
  std::int64_t valid_from_ms = 0, valid_to_ms = 0;  // 0: unbounded
  std::int64_t allowance_s = 0;
  bool operator==(const Registered&) const = default;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Registered, role, unit, valid_from_ms, valid_to_ms, allowance_s)

// A pass granted at a gate, kept for a while so camera snapshots can be matched with it.
struct GrantedPass {
  std::int64_t at_ms = 0;      // log time
  std::uint64_t event_id = 0;
  std::string plate;           // vehicle gates: the plate token
  std::uint64_t seq = 0;       // the community's count of passes remembered when it came: orders them
  bool operator==(const GrantedPass&) const = default;
};

struct CommunityAlerts {
  std::string community;                         // set by its first event (ticks carry none)
  std::int64_t now_ms = 0;                       // latest log time seen
  std::map<std::string, WatchedDevice> devices;  // by device id
  std::map<std::string, Alert> active;           // by rule|subject: not resolved
  std::map<std::string, Alert> closed;           // by rule|subject: the last resolved episode, while it matters
  std::map<std::string, std::uint64_t> episodes; // by rule|subject: episodes opened so far
  std::map<std::string, std::int64_t> unit_activity;  // by household: last sign of life (movement, door, water)
  std::map<std::string, Registered> people;           // by person token
  // The community keeps a registry of people (vehicles): a subject (plate) it does not know is
  // then unknown, even once every registration has ended and been forgotten.
  bool people_registered = false, vehicles_registered = false;
  std::map<std::string, Registered> vehicles;         // by plate token
  std::map<std::string, std::int64_t> vehicles_inside;  // plate token -> entry (log time)
  std::map<std::string, std::vector<std::int64_t>> denials;  // gate -> recent denial times
  std::map<std::string, std::vector<GrantedPass>> granted;  // gate -> passes granted recently (for cameras), by seq
  std::uint64_t passes_remembered = 0;                      // the seq of the latest pass in `granted`
  std::map<std::string, std::vector<std::uint64_t>> analysed;  // camera -> snapshots analysed lately (repeats ignored)
  std::map<std::string, std::uint64_t> tailgated;  // gate -> latest pass already part of a tailgating alert
  Rosters rosters;                             // "{grid}|{role}" -> its duty roster (roster.set)
  std::map<std::string, SitePlace> site;       // building or grid id -> its members (site.entry)
  bool operator==(const CommunityAlerts&) const = default;
};

// What a camera snapshot's analysis means at its gate (apply() returns it for vision.analysis):
// tailgating when more faces than passes granted around it, plate_mismatch when a legible plate
// is not the one the vehicle gate let in.
struct SnapshotVerdict {
  std::string verdict;  // ok, tailgating, plate_mismatch, no_pass, plate_unread, unreadable, unknown_gate, repeat
  std::vector<std::uint64_t> passes;  // event ids of the granted passes it belongs to
  std::string detail;
  bool operator==(const SnapshotVerdict&) const = default;
};

struct AlertStep {
  CommunityAlerts state;
  std::vector<Alert> changed;  // alerts whose record changed: the projector stores and publishes them
  std::optional<SnapshotVerdict> verdict;  // for a vision.analysis event
  std::vector<Notification> notifications; // decided by this event, in order
};

// `utc_offset_min`: the compound's local time, in which its duty rosters are written.
AlertStep apply(CommunityAlerts state, const schemas::Event& event, const AlertRules& rules, int utc_offset_min = 0);

// What a subject token is to the community at `now_ms`: resident, staff, visitor (invitation
// valid now) or unknown (not registered, or an invitation outside its validity).
std::string subject_kind(const CommunityAlerts& state, const std::string& token, std::int64_t now_ms);

nlohmann::json to_json(const Alert& alert);
Alert alert_from_json(const nlohmann::json& j);
// The whole state; `whole = false` is the community's record as the projector stores it: without
// the device directory, the passes granted and the maps that change entry by entry (registry,
// activity, vehicles inside, denials, episode counters, analyses, tailgating), which it stores
// one record per entry, and with the active and recently closed episodes by id only, their
// records being the alerts projection (written whenever they change). Rewriting all of that with
// every batch was the fold's largest cost (decisions 0017, 0019).
nlohmann::json to_json(const CommunityAlerts& state, bool whole = true);
// Either form; from the stored one, active and closed episodes carry their id alone (the rest is
// in their alert records).
CommunityAlerts community_alerts_from_json(const nlohmann::json& j);
nlohmann::json to_json(const WatchedDevice& device);
// The stored record (processors/record.h): binary, rendered it is to_json(device).dump().
std::string to_record(const WatchedDevice& device);
WatchedDevice watched_device_from_json(const nlohmann::json& j);
nlohmann::json to_json(const GrantedPass& pass);
GrantedPass granted_pass_from_json(const nlohmann::json& j);

}  // namespace courtyard::processors
