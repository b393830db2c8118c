// The JSON side of the mapping: device JSON -> Event, and Event -> JSON for the API.
#include <cmath>
#include <limits>

#include <nlohmann/json.hpp>

#include "codec.h"
#include "common/digest.h"
#include "names.h"

namespace courtyard::schemas {
namespace {

using json = nlohmann::json;
using Code = Rejection::Code;

std::unexpected<Rejection> reject(Code code, std::string detail) {
  return std::unexpected(Rejection{code, std::move(detail)});
}

// Typed access to one JSON object's fields, with the field's path in every error.
class Fields {
 public:
  Fields(const json& object, std::string prefix) : object_(object), prefix_(std::move(prefix)) {}

  // Refuses fields this object does not define: a typo must not silently drop a value.
  std::expected<void, Rejection> only(std::initializer_list<std::string_view> known) const {
    for (const auto& [key, _] : object_.items()) {
      if (std::find(known.begin(), known.end(), key) == known.end()) {
        return reject(Code::Malformed, prefix_ + key + " is not a known field");
      }
    }
    return {};
  }

  const json* find(std::string_view name) const {
    auto it = object_.find(name);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }

  std::expected<std::optional<double>, Rejection> number(std::string_view name) const {
    const json* v = find(name);
    if (!v) return std::nullopt;
    if (!v->is_number()) return reject(Code::Malformed, path(name) + " must be a number");
    return v->get<double>();
  }

  std::expected<double, Rejection> required_number(std::string_view name) const {
    auto v = number(name);
    if (!v) return std::unexpected(v.error());
    if (!*v) return reject(Code::MissingField, path(name) + " is required");
    return **v;
  }

  std::expected<std::optional<std::uint64_t>, Rejection> unsigned_integer(std::string_view name) const {
    const json* v = find(name);
    if (!v) return std::nullopt;
    if (v->is_number_unsigned()) return v->get<std::uint64_t>();
    if (v->is_number_integer()) return reject(Code::OutOfRange, path(name) + "=" + v->dump() + " must not be negative");
    return reject(Code::Malformed, path(name) + " must be an unsigned integer");
  }

  std::expected<std::optional<std::int64_t>, Rejection> integer(std::string_view name) const {
    const json* v = find(name);
    if (!v) return std::nullopt;
    if (v->is_number_integer() && !(v->is_number_unsigned() &&
                                    v->get<std::uint64_t>() > std::uint64_t(std::numeric_limits<std::int64_t>::max()))) {
      return v->get<std::int64_t>();
    }
    if (v->is_number_unsigned()) return reject(Code::OutOfRange, path(name) + " is too large");
    return reject(Code::Malformed, path(name) + " must be an integer");
  }

  std::expected<std::optional<bool>, Rejection> boolean(std::string_view name) const {
    const json* v = find(name);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) return reject(Code::Malformed, path(name) + " must be true or false");
    return v->get<bool>();
  }

  std::expected<std::string, Rejection> string(std::string_view name, bool required) const {
    const json* v = find(name);
    if (!v) {
      if (required) return reject(Code::MissingField, path(name) + " is required");
      return std::string();
    }
    if (!v->is_string()) return reject(Code::Malformed, path(name) + " must be a string");
    return v->get<std::string>();
  }

  template <class E>
  std::expected<E, Rejection> enumeration(std::string_view name) const {
    auto s = string(name, true);
    if (!s) return std::unexpected(s.error());
    auto e = parse_name<E>(*s);
    if (!e) {
      std::string allowed;
      for (auto n : Names<E>::kValues) allowed += (allowed.empty() ? "" : "|") + std::string(n);
      return reject(Code::OutOfRange, path(name) + "=\"" + *s + "\" is not one of " + allowed);
    }
    return *e;
  }

 private:
  std::string path(std::string_view name) const { return prefix_ + std::string(name); }
  const json& object_;
  std::string prefix_;
};

#define CY_TRY(var, expr)                                   \
  auto var##_result = (expr);                               \
  if (!var##_result) return std::unexpected(var##_result.error()); \
  auto var = std::move(*var##_result)

#define CY_CHECK(expr)                                      \
  do {                                                      \
    auto check_result_ = (expr);                            \
    if (!check_result_) return std::unexpected(check_result_.error()); \
  } while (0)

std::expected<Body, Rejection> parse_body(std::string_view type, const json& object) {
  if (!object.is_object()) return reject(Code::Malformed, "body must be an object");
  Fields f(object, "body.");
  if (type == "gate.pass") {
    CY_CHECK(f.only({"credential", "subject", "direction", "decision", "reason", "temperature_c", "mask",
                     "match_score"}));
    GatePass b;
    CY_TRY(credential, f.enumeration<Credential>("credential"));
    CY_TRY(subject, f.string("subject", true));
    CY_TRY(direction, f.enumeration<Direction>("direction"));
    CY_TRY(decision, f.enumeration<Decision>("decision"));
    CY_TRY(reason, f.string("reason", false));
    CY_TRY(temperature, f.number("temperature_c"));
    CY_TRY(mask, f.boolean("mask"));
    CY_TRY(score, f.number("match_score"));
    b.credential = credential;
    b.subject = std::move(subject);
    b.direction = direction;
    b.decision = decision;
    b.reason = std::move(reason);
    b.temperature_c = temperature;
    b.mask = mask;
    b.match_score = score;
    return b;
  }
  if (type == "vehicle.pass") {
    CY_CHECK(f.only({"plate", "direction", "decision"}));
    CY_TRY(plate, f.string("plate", true));
    CY_TRY(direction, f.enumeration<Direction>("direction"));
    CY_TRY(decision, f.enumeration<Decision>("decision"));
    return VehiclePass{std::move(plate), direction, decision};
  }
  if (type == "meter.reading") {
    CY_CHECK(f.only({"kind", "total", "unit"}));
    CY_TRY(kind, f.enumeration<MeterKind>("kind"));
    CY_TRY(total, f.required_number("total"));
    CY_TRY(unit, f.string("unit", true));
    return MeterReading{kind, total, std::move(unit)};
  }
  if (type == "home.sensor") {
    CY_CHECK(f.only({"sensor", "state", "value"}));
    CY_TRY(sensor, f.enumeration<SensorKind>("sensor"));
    CY_TRY(state, f.string("state", false));
    CY_TRY(value, f.number("value"));
    if (state.empty() && !value) return reject(Code::MissingField, "body.state or body.value is required");
    return HomeSensor{sensor, std::move(state), value};
  }
  if (type == "wearable.vitals") {
    CY_CHECK(f.only({"heart_rate_bpm", "spo2_pct", "skin_temp_c", "steps", "moving", "lat", "lon"}));
    WearableVitals b;
    CY_TRY(hr, f.number("heart_rate_bpm"));
    CY_TRY(spo2, f.number("spo2_pct"));
    CY_TRY(skin, f.number("skin_temp_c"));
    CY_TRY(steps, f.unsigned_integer("steps"));
    CY_TRY(moving, f.boolean("moving"));
    CY_TRY(lat, f.number("lat"));
    CY_TRY(lon, f.number("lon"));
    if (steps && *steps > std::numeric_limits<std::uint32_t>::max()) {
      return reject(Code::OutOfRange, "body.steps=" + std::to_string(*steps) + " is too large");
    }
    b.heart_rate_bpm = hr;
    b.spo2_pct = spo2;
    b.skin_temp_c = skin;
    if (steps) b.steps = static_cast<std::uint32_t>(*steps);
    b.moving = moving;
    b.lat = lat;
    b.lon = lon;
    return b;
  }
  if (type == "wearable.alarm") {
    CY_CHECK(f.only({"kind", "cancelled"}));
    CY_TRY(kind, f.enumeration<AlarmKind>("kind"));
    CY_TRY(cancelled, f.boolean("cancelled"));
    return WearableAlarm{kind, cancelled.value_or(false)};
  }
  if (type == "device.status") {
    CY_CHECK(f.only({"battery_pct", "rssi", "tamper", "firmware"}));
    DeviceStatus b;
    CY_TRY(battery, f.number("battery_pct"));
    CY_TRY(rssi, f.integer("rssi"));
    CY_TRY(tamper, f.boolean("tamper"));
    CY_TRY(firmware, f.string("firmware", false));
    if (rssi && (*rssi < std::numeric_limits<std::int32_t>::min() || *rssi > std::numeric_limits<std::int32_t>::max())) {
      return reject(Code::OutOfRange, "body.rssi=" + std::to_string(*rssi) + " is outside -150..0");
    }
    b.battery_pct = battery;
    if (rssi) b.rssi = static_cast<std::int32_t>(*rssi);
    b.tamper = tamper;
    b.firmware = std::move(firmware);
    return b;
  }
  if (type == "command.ack") {
    CY_CHECK(f.only({"command_id", "result", "detail"}));
    CommandAck b;
    CY_TRY(id, f.string("command_id", true));
    CY_TRY(result, f.enumeration<CommandResult>("result"));
    CY_TRY(detail, f.string("detail", false));
    if (id.empty() || id.size() > 64) return reject(Code::OutOfRange, "body.command_id must be 1..64 bytes");
    if (detail.size() > 256) return reject(Code::OutOfRange, "body.detail is longer than 256 bytes");
    b.command_id = std::move(id);
    b.result = result;
    b.detail = std::move(detail);
    return b;
  }
  if (type == "camera.snapshot") {
    CY_CHECK(f.only({"gate", "jpeg"}));
    CY_TRY(gate, f.string("gate", true));
    CY_TRY(jpeg, f.string("jpeg", true));
    auto bytes = base64_decode(jpeg);
    if (!bytes) return reject(Code::Malformed, "body.jpeg must be the image in standard base64");
    CameraSnapshot b;
    b.gate = std::move(gate);
    b.jpeg = std::move(*bytes);
    return b;
  }
  if (type == "device.registered" || type == "tick" || type == "operator.action" || type == "registry.entry" ||
      type == "command" || type == "command.delivered" || type == "notice" || type == "vision.analysis" ||
      type.starts_with("person.") || type == "contacts.set" || type == "roster.set" || type == "site.entry" ||
      type == "notification.status") {
    return reject(Code::TypeNotAllowed, std::string(type) + " is written by Courtyard, not by devices");
  }
  return reject(Code::UnknownType, "type \"" + std::string(type) + "\" is not an event type");
}

template <class T>
void put(json& j, const char* name, const std::optional<T>& v) {
  if (v) j[name] = *v;
}

}  // namespace

std::expected<Event, Rejection> parse_device_json(const Topic& topic, std::string_view payload) {
  json doc = json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return reject(Code::Malformed, "payload is not valid JSON");
  if (!doc.is_object()) return reject(Code::Malformed, "payload must be a JSON object");
  Fields f(doc, "");
  CY_CHECK(f.only({"seq", "boot", "ts", "type", "body"}));
  CY_TRY(seq, f.unsigned_integer("seq"));
  if (!seq) return reject(Code::MissingField, "seq is required");
  CY_TRY(boot, f.unsigned_integer("boot"));
  if (boot && *boot > std::numeric_limits<std::uint32_t>::max()) {
    return reject(Code::OutOfRange, "boot=" + std::to_string(*boot) + " is too large");
  }
  CY_TRY(ts, f.integer("ts"));
  if (!ts) return reject(Code::MissingField, "ts is required");
  CY_TRY(type, f.string("type", true));
  const json* body = f.find("body");
  if (!body) return reject(Code::MissingField, "body is required");
  CY_TRY(parsed, parse_body(type, *body));
  Event e;
  e.device = topic.device;
  e.community = topic.community;
  e.seq = *seq;
  e.boot = static_cast<std::uint32_t>(boot.value_or(0));
  e.device_time_ms = *ts;
  e.body = std::move(parsed);
  return e;
}

nlohmann::json body_to_json(const Body& body) {
  json j = json::object();
  std::visit(
      [&](const auto& b) {
        using T = std::decay_t<decltype(b)>;
        if constexpr (std::is_same_v<T, GatePass>) {
          j["credential"] = name_of(b.credential);
          j["subject"] = b.subject;
          j["direction"] = name_of(b.direction);
          j["decision"] = name_of(b.decision);
          if (!b.reason.empty()) j["reason"] = b.reason;
          put(j, "temperature_c", b.temperature_c);
          put(j, "mask", b.mask);
          put(j, "match_score", b.match_score);
        } else if constexpr (std::is_same_v<T, VehiclePass>) {
          j["plate"] = b.plate;
          j["direction"] = name_of(b.direction);
          j["decision"] = name_of(b.decision);
        } else if constexpr (std::is_same_v<T, MeterReading>) {
          j["kind"] = name_of(b.kind);
          j["total"] = b.total;
          j["unit"] = b.unit;
        } else if constexpr (std::is_same_v<T, HomeSensor>) {
          j["sensor"] = name_of(b.sensor);
          if (!b.state.empty()) j["state"] = b.state;
          put(j, "value", b.value);
        } else if constexpr (std::is_same_v<T, WearableVitals>) {
          put(j, "heart_rate_bpm", b.heart_rate_bpm);
          put(j, "spo2_pct", b.spo2_pct);
          put(j, "skin_temp_c", b.skin_temp_c);
          put(j, "steps", b.steps);
          put(j, "moving", b.moving);
          put(j, "lat", b.lat);
          put(j, "lon", b.lon);
        } else if constexpr (std::is_same_v<T, WearableAlarm>) {
          j["kind"] = name_of(b.kind);
          j["cancelled"] = b.cancelled;
        } else if constexpr (std::is_same_v<T, DeviceStatus>) {
          put(j, "battery_pct", b.battery_pct);
          put(j, "rssi", b.rssi);
          put(j, "tamper", b.tamper);
          if (!b.firmware.empty()) j["firmware"] = b.firmware;
        } else if constexpr (std::is_same_v<T, DeviceRegistered>) {
          j["kind"] = name_of(b.kind);
          j["unit"] = b.unit;
          j["location"] = b.location;
        } else if constexpr (std::is_same_v<T, Tick>) {
          j["partition"] = b.partition;
        } else if constexpr (std::is_same_v<T, RegistryEntry>) {
          j["kind"] = name_of(b.kind);
          j["id"] = b.id;
          if (b.kind == RegistryKind::Person) j["role"] = name_of(b.role);
          j["unit"] = b.unit;
          j["valid_from"] = b.valid_from_ms;
          j["valid_to"] = b.valid_to_ms;
          if (b.kind == RegistryKind::Vehicle) j["allowance_s"] = b.allowance_s;
          j["removed"] = b.removed;
        } else if constexpr (std::is_same_v<T, Command>) {
          j["command_id"] = b.command_id;
          j["target"] = b.target.str();
          j["action"] = b.action;
          j["args"] = b.args.empty() ? json::object() : json::parse(b.args, nullptr, false);
          j["actor"] = b.actor;
          j["expires_at"] = b.expires_at_ms;
        } else if constexpr (std::is_same_v<T, CommandDelivered>) {
          j["command_id"] = b.command_id;
        } else if constexpr (std::is_same_v<T, CommandAck>) {
          j["command_id"] = b.command_id;
          j["result"] = name_of(b.result);
          if (!b.detail.empty()) j["detail"] = b.detail;
        } else if constexpr (std::is_same_v<T, Notice>) {
          j["notice_id"] = b.notice_id;
          j["title"] = b.title;
          j["text"] = b.text;
          j["severity"] = name_of(b.severity);
          j["unit"] = b.unit;
          j["actor"] = b.actor;
          j["expires_at"] = b.expires_at_ms;
        } else if constexpr (std::is_same_v<T, CameraSnapshot>) {
          j["gate"] = b.gate;
          if (!b.jpeg.empty()) j["jpeg"] = base64(b.jpeg);
          if (!b.image_sha256.empty()) j["image_sha256"] = b.image_sha256;
          if (b.image_bytes) j["image_bytes"] = b.image_bytes;
          if (b.width) j["width"] = b.width;
          if (b.height) j["height"] = b.height;
        } else if constexpr (std::is_same_v<T, VisionAnalysis>) {
          j["snapshot_id"] = b.snapshot_id;
          j["gate"] = b.gate;
          j["snapshot_time"] = b.snapshot_time_ms;
          j["faces"] = b.faces;
          if (!b.plate_token.empty()) {
            j["plate_token"] = b.plate_token;
            j["plate_confidence"] = b.plate_confidence;
            j["plate_region"] = {b.plate_x, b.plate_y, b.plate_width, b.plate_height};
          }
          if (!b.error.empty()) j["error"] = b.error;
        } else if constexpr (std::is_same_v<T, PersonRecorded>) {
          j["subject"] = b.subject;
          j["kind"] = name_of(b.kind);
          j["unit"] = b.unit;
          j["sealed"] = base64(b.sealed);  // ciphertext: what the log holds, readable only with the key
          j["tokens"] = b.tokens;
        } else if constexpr (std::is_same_v<T, PersonForgotten>) {
          j["subject"] = b.subject;
          j["actor"] = b.actor;
          j["reason"] = b.reason;
        } else if constexpr (std::is_same_v<T, PersonalDataRead>) {
          j["actor"] = b.actor;
          j["subjects"] = b.subjects;
          j["fields"] = b.fields;
          j["purpose"] = b.purpose;
        } else if constexpr (std::is_same_v<T, NotificationStatus>) {
          j["notification_id"] = b.notification_id;
          j["channel"] = b.channel;
          j["state"] = b.state;
          j["attempts"] = b.attempts;
          if (!b.detail.empty()) j["detail"] = b.detail;
        } else if constexpr (std::is_same_v<T, EmergencyContacts>) {
          j["unit"] = b.unit;
          if (!b.device.empty()) j["device"] = b.device;
          if (!b.wearer.empty()) j["wearer"] = b.wearer;
          j["contacts"] = b.contacts;
        } else if constexpr (std::is_same_v<T, SiteEntry>) {
          j["kind"] = name_of(b.kind);
          j["id"] = b.id;
          j["label"] = b.label;
          if (b.kind == SiteKind::Building) {
            j["floors"] = b.floors;
            j["map"] = {{"x", b.map_x}, {"y", b.map_y}};
          }
          j["members"] = b.members;
          j["removed"] = b.removed;
        } else if constexpr (std::is_same_v<T, DutyRoster>) {
          j["grid"] = b.grid;
          j["role"] = b.role;
          json week = json::array(), spans = json::array();
          for (const auto& s : b.week) {
            week.push_back({{"weekday", s.weekday}, {"start_min", s.start_min}, {"end_min", s.end_min}, {"staff", s.staff}});
          }
          for (const auto& s : b.exceptions) spans.push_back({{"from", s.from_ms}, {"to", s.to_ms}, {"staff", s.staff}});
          j["week"] = std::move(week);
          j["exceptions"] = std::move(spans);
          j["actor"] = b.actor;
        } else if constexpr (std::is_same_v<T, OperatorAction>) {
          j["alert_id"] = b.alert_id;
          j["action"] = name_of(b.action);
          j["actor"] = b.actor;
          if (!b.note.empty()) j["note"] = b.note;
          if (!b.to.empty()) j["to"] = b.to;
          if (!b.role.empty()) j["role"] = b.role;
        }
      },
      body);
  return j;
}

nlohmann::json to_json(const Event& e) {
  return json{{"schema_version", e.schema_version},
              {"event_id", e.event_id},
              {"device", e.device.str()},
              {"community", e.community.str()},
              {"boot", e.boot},
              {"seq", e.seq},
              {"ts", e.device_time_ms},
              {"ingest_ts", e.ingest_time_ms},
              {"type", type_name(e.body)},
              {"body", body_to_json(e.body)},
              {"chain_seq", e.chain_seq},
              {"chain_link", e.chain_link}};
}

}  // namespace courtyard::schemas
