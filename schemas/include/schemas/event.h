#pragma once
// Courtyard's event model: the envelope, every body, how device payloads decode (with the reason
// when they do not), and the one mapping between JSON, FlatBuffers and these structs.
// Everything here is a pure function of its input; nothing blocks or reads a clock.
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/ids.h"

namespace courtyard::schemas {

inline constexpr std::uint16_t kSchemaVersion = 1;

// handheld: a staff member's pager, its device id their person token (paged with their notifications)
enum class DeviceKind { Gate, VehicleGate, Door, Camera, Meter, HomeSensor, Wearable, Handheld };
enum class Credential { Face, Card, Qr, Pin, Remote, Key };
enum class Direction { In, Out };
enum class Decision { Granted, Denied };
enum class MeterKind { Electricity, Water, Gas };
enum class SensorKind { Smoke, Gas, WaterLeak, Door, Temperature, Humidity };
enum class AlarmKind { Fall, Sos, Removed };

struct GatePass {
  Credential credential = Credential::Face;
  std::string subject;  // pseudonymous token, never a name
  Direction direction = Direction::In;
  Decision decision = Decision::Granted;
  std::string reason;
  std::optional<double> temperature_c;
  std::optional<bool> mask;
  std::optional<double> match_score;
  bool operator==(const GatePass&) const = default;
};
struct VehiclePass {
  std::string plate;
  Direction direction = Direction::In;
  Decision decision = Decision::Granted;
  bool operator==(const VehiclePass&) const = default;
};
struct MeterReading {
  MeterKind kind = MeterKind::Electricity;
  double total = 0;  // cumulative, in `unit`
  std::string unit;
  bool operator==(const MeterReading&) const = default;
};
struct HomeSensor {
  SensorKind sensor = SensorKind::Smoke;
  std::string state;
  std::optional<double> value;
  bool operator==(const HomeSensor&) const = default;
};
struct WearableVitals {
  std::optional<double> heart_rate_bpm, spo2_pct, skin_temp_c;
  std::optional<std::uint32_t> steps;
  std::optional<bool> moving;
  std::optional<double> lat, lon;
  bool operator==(const WearableVitals&) const = default;
};
struct WearableAlarm {
  AlarmKind kind = AlarmKind::Fall;
  bool cancelled = false;
  bool operator==(const WearableAlarm&) const = default;
};
struct DeviceStatus {
  std::optional<double> battery_pct;
  std::optional<std::int32_t> rssi;
  std::optional<bool> tamper;
  std::string firmware;
  bool operator==(const DeviceStatus&) const = default;
};
struct DeviceRegistered {
  DeviceKind kind = DeviceKind::Gate;
  std::string unit;
  std::string location;
  bool operator==(const DeviceRegistered&) const = default;
};

// The log's clock: appended by the hub to every partition at a fixed interval.
struct Tick {
  std::int32_t partition = 0;
  bool operator==(const Tick&) const = default;
};
// hush: silence a smoke alarm for a while; the last four are a responder's (dispatch, issue 16)
enum class AlertAction { Acknowledge, Resolve, Hush, OnMyWay, Arrived, HandedOver, Reassign };
// An operator's decision about an alert, appended by the hub.
struct OperatorAction {
  std::string alert_id;
  AlertAction action = AlertAction::Acknowledge;
  std::string actor;
  std::string note;
  std::string to;    // reassign: the staff member's person token
  std::string role;  // the actor's: admin, staff, resident (a household's ack stops no dispatch)
  bool operator==(const OperatorAction&) const = default;
};

enum class RegistryKind { Household, Person, Vehicle };
enum class PersonRole { Resident, Staff, Visitor };
// A change to the community's registry, appended by the hub. Tokens only, never names.
struct RegistryEntry {
  RegistryKind kind = RegistryKind::Person;
  std::string id;        // unit code, person token or plate token
  PersonRole role = PersonRole::Resident;
  std::string unit;      // household of a person or vehicle (the host, for visitors)
  std::int64_t valid_from_ms = 0, valid_to_ms = 0;  // 0: unbounded
  std::int64_t allowance_s = 0;  // vehicles: longest stay (0: no limit)
  bool removed = false;
  bool operator==(const RegistryEntry&) const = default;
};
std::string_view to_string(RegistryKind kind);
std::string_view to_string(PersonRole role);
std::optional<RegistryKind> parse_registry_kind(std::string_view name);
std::optional<PersonRole> parse_person_role(std::string_view name);

// A command to one device, appended by the hub; its record's state follows delivery and the answer.
struct Command {
  std::string command_id;
  DeviceId target;
  std::string action;       // open_gate, close_gate, close_valve, reboot, ...
  std::string args;         // a JSON object's text, or empty
  std::string actor;        // the API token's id
  std::int64_t expires_at_ms = 0;
  bool operator==(const Command&) const = default;
};
// Appended by ingest when the broker accepted a command for the device's session.
struct CommandDelivered {
  std::string command_id;
  bool operator==(const CommandDelivered&) const = default;
};
enum class CommandResult { Ok, Failed };
// The device's answer ("command.ack").
struct CommandAck {
  std::string command_id;
  CommandResult result = CommandResult::Ok;
  std::string detail;
  bool operator==(const CommandAck&) const = default;
};
enum class NoticeSeverity { Info, Warning, Urgent };
// A notice to the community (or one household), appended by the hub.
struct Notice {
  std::string notice_id;
  std::string title;
  std::string text;
  NoticeSeverity severity = NoticeSeverity::Info;
  std::string unit;  // empty: the whole community
  std::string actor;
  std::int64_t expires_at_ms = 0;
  bool operator==(const Notice&) const = default;
};
std::string_view to_string(CommandResult result);
std::string_view to_string(NoticeSeverity severity);
std::optional<NoticeSeverity> parse_notice_severity(std::string_view name);

// A gate camera's snapshot ("camera.snapshot", on .../snapshot). The device sends gate and jpeg;
// ingest fills the image's digest, size and dimensions, keeps `jpeg` only on the snapshots topic
// (limited retention) and appends the event without it to the log.
struct CameraSnapshot {
  std::string gate;          // the gate device the camera watches
  std::string jpeg;          // the image (bytes); empty in the events log
  std::string image_sha256;  // hex
  std::uint32_t image_bytes = 0;
  std::uint16_t width = 0, height = 0;
  bool operator==(const CameraSnapshot&) const = default;
};
// What the vision processor saw in one snapshot ("vision.analysis"), appended by the hub. A face
// count, never a face; a plate as a pseudonymous token, never its text.
struct VisionAnalysis {
  std::uint64_t snapshot_id = 0;      // event id of the snapshot
  std::string gate;
  std::int64_t snapshot_time_ms = 0;  // the snapshot's log time (ingest time)
  std::uint16_t faces = 0;
  std::string plate_token;            // empty: no plate read
  double plate_confidence = 0;        // 0..1
  std::int32_t plate_x = 0, plate_y = 0, plate_width = 0, plate_height = 0;
  std::string error;                  // why the image could not be analysed (empty: it was)
  bool operator==(const VisionAnalysis&) const = default;
};

// The privacy vault's events (docs/privacy.md), appended by the hub. Personal fields travel only
// sealed under the person's own key; ids and tokens are pseudonymous.
enum class PersonKind { Resident, Family, Visitor, Staff };
struct PersonRecorded {
  std::string subject;               // "p-..."
  PersonKind kind = PersonKind::Resident;
  std::string unit;                  // the household they live in, or are family or host of
  std::string sealed;                // bytes: the vault's ciphertext of their fields
  std::vector<std::string> tokens;   // their gate and vehicle tokens
  bool operator==(const PersonRecorded&) const = default;
};
struct PersonForgotten {
  std::string subject;
  std::string actor;
  std::string reason;
  bool operator==(const PersonForgotten&) const = default;
};
// The read trail: who was shown which fields of whom, and why.
struct PersonalDataRead {
  std::string actor;
  std::vector<std::string> subjects;
  std::vector<std::string> fields;
  std::string purpose;
  bool operator==(const PersonalDataRead&) const = default;
};
struct EmergencyContacts {
  std::string unit;
  std::string device;                 // a wearable; empty: the household's contacts
  std::string wearer;                 // subject id of the wearable's wearer, or empty
  std::vector<std::string> contacts;  // subject ids, first to call first
  bool operator==(const EmergencyContacts&) const = default;
};
std::string_view to_string(PersonKind kind);

// Who is on duty for a grid and role ("roster.set"; processors/roster.h reads it).
struct RosterShift {
  int weekday = 0;    // 0 Monday .. 6 Sunday: the local day the shift starts on
  int start_min = 0;  // 0..1439
  int end_min = 0;    // 0..1440; not after start_min: the shift runs past midnight
  std::string staff;
  bool operator==(const RosterShift&) const = default;
};
struct RosterSpan {
  std::int64_t from_ms = 0, to_ms = 0;  // [from, to)
  std::string staff;                    // empty: nobody
  bool operator==(const RosterSpan&) const = default;
};
enum class SiteKind { Building, Grid };
// A building or a grid of the compound ("site.entry"), appended by the hub.
struct SiteEntry {
  SiteKind kind = SiteKind::Building;
  std::string id;
  std::string label;
  int floors = 0;
  std::int32_t map_x = 0, map_y = 0;
  std::vector<std::string> members;  // grids: building ids and gate device ids
  bool removed = false;
  bool operator==(const SiteEntry&) const = default;
};
std::string_view to_string(SiteKind kind);
std::optional<SiteKind> parse_site_kind(std::string_view name);
std::optional<AlertAction> parse_alert_action(std::string_view name);  // ack, resolve, hush, on_my_way, ...

// What became of a notification the alerts fold decided ("notification.status"), appended by its sender.
struct NotificationStatus {
  std::string notification_id;  // {alert id}~{n}
  std::string channel;          // webhook
  std::string state;            // delivered, failed
  std::int32_t attempts = 0;
  std::string detail;
  bool operator==(const NotificationStatus&) const = default;
};

struct DutyRoster {
  std::string grid;
  std::string role;
  std::vector<RosterShift> week;
  std::vector<RosterSpan> exceptions;
  std::string actor;
  bool operator==(const DutyRoster&) const = default;
};
std::optional<PersonKind> parse_person_kind(std::string_view name);

using Body = std::variant<GatePass, VehiclePass, MeterReading, HomeSensor, WearableVitals, WearableAlarm,
                          DeviceStatus, DeviceRegistered, Tick, OperatorAction, RegistryEntry, Command,
                          CommandDelivered, CommandAck, Notice, CameraSnapshot, VisionAnalysis, PersonRecorded,
                          PersonForgotten, PersonalDataRead, EmergencyContacts, DutyRoster, SiteEntry,
                          NotificationStatus>;

// Events Courtyard itself appends (registrations, ticks, operator actions) carry no device seq.
bool is_system_event(const Body& body);
std::string_view to_string(AlertAction action);

struct Event {
  std::uint16_t schema_version = kSchemaVersion;
  std::uint64_t event_id = 0;  // unique and time-ordered; set by ingest
  DeviceId device;
  CommunityId community;
  std::uint32_t boot = 0;
  std::uint64_t seq = 0;
  std::int64_t device_time_ms = 0;
  std::int64_t ingest_time_ms = 0;
  Body body;
  std::uint64_t chain_seq = 0;  // position in its community's stream; set by ingest (0: not chained)
  std::string chain_link;       // HMAC-SHA256(chain key, previous link || this event without its link), hex
  bool operator==(const Event&) const = default;
};

// The chain link of `event` (with its chain_seq set) after the community's previous link
// ("" before the first event), keyed with the deployment's chain key: only ingest, the one
// writer of the log, and the auditors who check it hold the key, so write access to Kafka alone
// cannot extend a chain. A tick's link is its own MAC: chain_link(key, kTickLink, tick).
std::string chain_link(std::string_view key, const std::string& previous, Event event);
inline constexpr std::string_view kTickLink = "tick";
// The MAC ingest puts on a dead letter (header "auth"): its payload and every other header.
std::string dead_letter_mac(std::string_view key, std::string_view payload,
                            const std::vector<std::pair<std::string, std::string>>& headers);

// Why a payload was refused. `detail` names the field and the rule it broke.
struct Rejection {
  enum class Code {
    Malformed,           // not JSON / not an object / wrong field type / unknown field
    FailedVerification,  // FlatBuffers buffer that does not verify
    UnknownType,         // "type" names no event type
    MissingField,        // a required field is absent
    OutOfRange,          // a value outside its physical or protocol range
    TooLarge,            // payload above the size limit
    UnknownDevice,       // the device is not registered
    WrongTopic,          // topic malformed, or not the device's own
    TypeNotAllowed,      // e.g. a meter sending gate.pass
  };
  Code code;
  std::string detail;
};
std::string_view to_string(Rejection::Code code);

// Where a device payload arrived: courtyard/v1/{community}/{device}/{channel}.
struct Topic {
  CommunityId community;
  DeviceId device;
  std::string channel;  // "telemetry", "cmd", "errors", ...
};
std::expected<Topic, Rejection> parse_topic(std::string_view topic);
std::string topic_for(const CommunityId& community, const DeviceId& device, std::string_view channel);
// Ids: 1..64 characters of [A-Za-z0-9_.-].
bool valid_id(std::string_view id);

struct Limits {
  std::size_t max_payload_bytes = 16 * 1024;       // larger device payloads are TooLarge
  std::size_t max_snapshot_bytes = 512 * 1024;     // the same for payloads on .../snapshot
  int max_image_side_px = 4096;                    // wider or taller snapshots are OutOfRange
  std::int64_t min_device_time_ms = 946684800000;  // 2000-01-01: older device clocks are OutOfRange
  std::int64_t max_device_time_ms = 4102444800000; // 2100-01-01
};

// Decodes what a device published on `topic` (JSON, or the FlatBuffers Event detected by its file
// identifier) and checks every field's range. Fills device and community from the topic.
// Does not know the registry: UnknownDevice and TypeNotAllowed are the caller's to check.
std::expected<Event, Rejection> decode_device_payload(const Topic& topic, std::string_view payload,
                                                      const Limits& limits = {});
// The dimensions a JPEG declares, after checking it is one: starts with SOI, has a frame header
// before its scan, and ends with EOI (a truncated upload does not). Reads headers only.
struct JpegInfo {
  int width = 0, height = 0;
};
std::expected<JpegInfo, std::string> jpeg_info(std::string_view bytes);

// Range checks on a decoded event (used by decode_device_payload; exposed for tests and tools).
std::expected<void, Rejection> validate(const Event& event, const Limits& limits = {});
// The first field of the envelope or the body that is not valid UTF-8 ("device_id", "body.note"),
// nullopt when every string is text. decode() refuses such events: every JSON view would fail.
std::optional<std::string> first_invalid_text(const Event& event);

// The FlatBuffers envelope as stored in the log. decode() refuses, with the reason, a buffer that
// does not verify, an unknown body or enum value, and a string that is not UTF-8.
std::string encode(const Event& event);
bool has_flatbuffer_identifier(std::string_view bytes);
std::expected<Event, std::string> decode(std::string_view bytes);

// The JSON view used by the API, the CLI and the device protocol.
nlohmann::json to_json(const Event& event);
nlohmann::json body_to_json(const Body& body);
std::string_view type_name(const Body& body);  // "gate.pass", "meter.reading", ...

std::string_view to_string(DeviceKind kind);
std::optional<DeviceKind> parse_device_kind(std::string_view name);
// Which event types a kind of device may send (ingest refuses the rest as TypeNotAllowed).
bool allowed_for(DeviceKind kind, const Body& body);

}  // namespace courtyard::schemas
