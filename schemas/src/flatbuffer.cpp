// The FlatBuffers side of the mapping: Event <-> the envelope in fbs/event.fbs.
#include <flatbuffers/flatbuffers.h>

#include "codec.h"
#include "common/text.h"
#include "event_generated.h"
#include "names.h"

namespace courtyard::schemas {
namespace {

using Code = Rejection::Code;
namespace f = courtyard::fb;

template <class To, class From>
To cast_enum(From e) {
  return static_cast<To>(static_cast<int>(e));
}

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }
std::vector<std::string> strings(const flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>* v) {
  std::vector<std::string> out;
  if (v) {
    out.reserve(v->size());
    for (const auto* s : *v) out.push_back(str(s));
  }
  return out;
}

template <class T>
std::optional<double> opt_double(flatbuffers::Optional<T> v) {
  return v.has_value() ? std::optional<double>(static_cast<double>(*v)) : std::nullopt;
}
template <class T>
std::optional<T> opt(flatbuffers::Optional<T> v) {
  return v.has_value() ? std::optional<T>(*v) : std::nullopt;
}
template <class T, class U>
flatbuffers::Optional<T> to_fb(const std::optional<U>& v) {
  return v ? flatbuffers::Optional<T>(static_cast<T>(*v)) : flatbuffers::nullopt;
}

std::pair<f::Body, flatbuffers::Offset<void>> build_body(flatbuffers::FlatBufferBuilder& b, const Body& body) {
  return std::visit(
      [&](const auto& x) -> std::pair<f::Body, flatbuffers::Offset<void>> {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, GatePass>) {
          auto subject = b.CreateString(x.subject);
          auto reason = b.CreateString(x.reason);
          return {f::Body::GatePass,
                  f::CreateGatePass(b, cast_enum<f::Credential>(x.credential), subject,
                                    cast_enum<f::Direction>(x.direction), cast_enum<f::Decision>(x.decision), reason,
                                    to_fb<double>(x.temperature_c), to_fb<bool>(x.mask), to_fb<double>(x.match_score))
                      .Union()};
        } else if constexpr (std::is_same_v<T, VehiclePass>) {
          auto plate = b.CreateString(x.plate);
          return {f::Body::VehiclePass, f::CreateVehiclePass(b, plate, cast_enum<f::Direction>(x.direction),
                                                             cast_enum<f::Decision>(x.decision))
                                            .Union()};
        } else if constexpr (std::is_same_v<T, MeterReading>) {
          auto unit = b.CreateString(x.unit);
          return {f::Body::MeterReading,
                  f::CreateMeterReading(b, cast_enum<f::MeterKind>(x.kind), x.total, unit).Union()};
        } else if constexpr (std::is_same_v<T, HomeSensor>) {
          auto state = b.CreateString(x.state);
          return {f::Body::HomeSensor,
                  f::CreateHomeSensor(b, cast_enum<f::SensorKind>(x.sensor), state, to_fb<double>(x.value)).Union()};
        } else if constexpr (std::is_same_v<T, WearableVitals>) {
          return {f::Body::WearableVitals,
                  f::CreateWearableVitals(b, to_fb<double>(x.heart_rate_bpm), to_fb<double>(x.spo2_pct),
                                          to_fb<double>(x.skin_temp_c), to_fb<std::uint32_t>(x.steps),
                                          to_fb<bool>(x.moving), to_fb<double>(x.lat), to_fb<double>(x.lon))
                      .Union()};
        } else if constexpr (std::is_same_v<T, WearableAlarm>) {
          return {f::Body::WearableAlarm,
                  f::CreateWearableAlarm(b, cast_enum<f::AlarmKind>(x.kind), x.cancelled).Union()};
        } else if constexpr (std::is_same_v<T, DeviceStatus>) {
          auto firmware = b.CreateString(x.firmware);
          return {f::Body::DeviceStatus, f::CreateDeviceStatus(b, to_fb<double>(x.battery_pct),
                                                               to_fb<std::int16_t>(x.rssi), to_fb<bool>(x.tamper),
                                                               firmware)
                                             .Union()};
        } else if constexpr (std::is_same_v<T, RegistryEntry>) {
          auto id = b.CreateString(x.id);
          auto unit = b.CreateString(x.unit);
          return {f::Body::RegistryEntry,
                  f::CreateRegistryEntry(b, cast_enum<f::RegistryKind>(x.kind), id, cast_enum<f::PersonRole>(x.role), unit,
                                         x.valid_from_ms, x.valid_to_ms, x.allowance_s, x.removed)
                      .Union()};
        } else if constexpr (std::is_same_v<T, Tick>) {
          return {f::Body::Tick, f::CreateTick(b, x.partition).Union()};
        } else if constexpr (std::is_same_v<T, Command>) {
          auto id = b.CreateString(x.command_id);
          auto target = b.CreateString(x.target.str());
          auto action = b.CreateString(x.action);
          auto args = b.CreateString(x.args);
          auto actor = b.CreateString(x.actor);
          return {f::Body::Command, f::CreateCommand(b, id, target, action, args, actor, x.expires_at_ms).Union()};
        } else if constexpr (std::is_same_v<T, CommandDelivered>) {
          auto id = b.CreateString(x.command_id);
          return {f::Body::CommandDelivered, f::CreateCommandDelivered(b, id).Union()};
        } else if constexpr (std::is_same_v<T, CommandAck>) {
          auto id = b.CreateString(x.command_id);
          auto detail = b.CreateString(x.detail);
          return {f::Body::CommandAck,
                  f::CreateCommandAck(b, id, cast_enum<f::CommandResult>(x.result), detail).Union()};
        } else if constexpr (std::is_same_v<T, Notice>) {
          auto id = b.CreateString(x.notice_id);
          auto title = b.CreateString(x.title);
          auto text = b.CreateString(x.text);
          auto unit = b.CreateString(x.unit);
          auto actor = b.CreateString(x.actor);
          return {f::Body::Notice, f::CreateNotice(b, id, title, text, cast_enum<f::NoticeSeverity>(x.severity), unit,
                                                   actor, x.expires_at_ms)
                                       .Union()};
        } else if constexpr (std::is_same_v<T, CameraSnapshot>) {
          auto gate = b.CreateString(x.gate);
          auto jpeg = x.jpeg.empty() ? flatbuffers::Offset<flatbuffers::Vector<std::uint8_t>>()
                                     : b.CreateVector(reinterpret_cast<const std::uint8_t*>(x.jpeg.data()), x.jpeg.size());
          auto digest = b.CreateString(x.image_sha256);
          return {f::Body::CameraSnapshot,
                  f::CreateCameraSnapshot(b, gate, jpeg, digest, x.image_bytes, x.width, x.height).Union()};
        } else if constexpr (std::is_same_v<T, VisionAnalysis>) {
          auto gate = b.CreateString(x.gate);
          auto token = b.CreateString(x.plate_token);
          auto error = b.CreateString(x.error);
          return {f::Body::VisionAnalysis,
                  f::CreateVisionAnalysis(b, x.snapshot_id, gate, x.snapshot_time_ms, x.faces, token, x.plate_confidence,
                                          x.plate_x, x.plate_y, x.plate_width, x.plate_height, error)
                      .Union()};
        } else if constexpr (std::is_same_v<T, PersonRecorded>) {
          auto subject = b.CreateString(x.subject);
          auto unit = b.CreateString(x.unit);
          auto sealed = b.CreateVector(reinterpret_cast<const std::uint8_t*>(x.sealed.data()), x.sealed.size());
          auto tokens = b.CreateVectorOfStrings(x.tokens);
          return {f::Body::PersonRecorded,
                  f::CreatePersonRecorded(b, subject, cast_enum<f::PersonKind>(x.kind), unit, sealed, tokens).Union()};
        } else if constexpr (std::is_same_v<T, PersonForgotten>) {
          auto subject = b.CreateString(x.subject);
          auto actor = b.CreateString(x.actor);
          auto reason = b.CreateString(x.reason);
          return {f::Body::PersonForgotten, f::CreatePersonForgotten(b, subject, actor, reason).Union()};
        } else if constexpr (std::is_same_v<T, PersonalDataRead>) {
          auto actor = b.CreateString(x.actor);
          auto subjects = b.CreateVectorOfStrings(x.subjects);
          auto fields = b.CreateVectorOfStrings(x.fields);
          auto purpose = b.CreateString(x.purpose);
          return {f::Body::PersonalDataRead, f::CreatePersonalDataRead(b, actor, subjects, fields, purpose).Union()};
        } else if constexpr (std::is_same_v<T, EmergencyContacts>) {
          auto unit = b.CreateString(x.unit);
          auto device = b.CreateString(x.device);
          auto wearer = b.CreateString(x.wearer);
          auto contacts = b.CreateVectorOfStrings(x.contacts);
          return {f::Body::EmergencyContacts, f::CreateEmergencyContacts(b, unit, device, wearer, contacts).Union()};
        } else if constexpr (std::is_same_v<T, NotificationStatus>) {
          auto id = b.CreateString(x.notification_id);
          auto channel = b.CreateString(x.channel);
          auto state = b.CreateString(x.state);
          auto detail = b.CreateString(x.detail);
          return {f::Body::NotificationStatus, f::CreateNotificationStatus(b, id, channel, state, x.attempts, detail).Union()};
        } else if constexpr (std::is_same_v<T, SiteEntry>) {
          auto id = b.CreateString(x.id);
          auto label = b.CreateString(x.label);
          auto members = b.CreateVectorOfStrings(x.members);
          return {f::Body::SiteEntry, f::CreateSiteEntry(b, cast_enum<f::SiteKind>(x.kind), id, label,
                                                         static_cast<std::int16_t>(x.floors), x.map_x, x.map_y, members,
                                                         x.removed)
                                          .Union()};
        } else if constexpr (std::is_same_v<T, DutyRoster>) {
          std::vector<flatbuffers::Offset<f::RosterShift>> week;
          for (const auto& s : x.week) {
            week.push_back(f::CreateRosterShift(b, static_cast<std::int8_t>(s.weekday), static_cast<std::int16_t>(s.start_min),
                                                static_cast<std::int16_t>(s.end_min), b.CreateString(s.staff)));
          }
          std::vector<flatbuffers::Offset<f::RosterSpan>> spans;
          for (const auto& s : x.exceptions) spans.push_back(f::CreateRosterSpan(b, s.from_ms, s.to_ms, b.CreateString(s.staff)));
          auto grid = b.CreateString(x.grid);
          auto role = b.CreateString(x.role);
          auto week_v = b.CreateVector(week);
          auto spans_v = b.CreateVector(spans);
          auto actor = b.CreateString(x.actor);
          return {f::Body::DutyRoster, f::CreateDutyRoster(b, grid, role, week_v, spans_v, actor).Union()};
        } else if constexpr (std::is_same_v<T, OperatorAction>) {
          auto id = b.CreateString(x.alert_id);
          auto actor = b.CreateString(x.actor);
          auto note = b.CreateString(x.note);
          auto to = b.CreateString(x.to);
          auto role = b.CreateString(x.role);
          return {f::Body::OperatorAction,
                  f::CreateOperatorAction(b, id, cast_enum<f::AlertAction>(x.action), actor, note, to, role).Union()};
        } else {
          auto unit = b.CreateString(x.unit);
          auto location = b.CreateString(x.location);
          return {f::Body::DeviceRegistered,
                  f::CreateDeviceRegistered(b, cast_enum<f::DeviceKind>(x.kind), unit, location).Union()};
        }
      },
      body);
}

// Reads a verified buffer's body. Enum bytes outside our tables are refused, never cast blindly.
std::expected<Body, std::string> read_body(const f::Event& e) {
  auto bad_enum = [](const char* field) { return std::unexpected(std::string(field) + " has an unknown value"); };
  // A verified buffer may name a body type and hold no body (found by fuzz_admission: every
  // body_as_*() below would then be null).
  if (e.body() == nullptr) return std::unexpected(std::string("body is missing"));
  switch (e.body_type()) {
    case f::Body::GatePass: {
      auto* x = e.body_as_GatePass();
      if (!in_range<Credential>(static_cast<int>(x->credential()))) return bad_enum("body.credential");
      if (!in_range<Direction>(static_cast<int>(x->direction()))) return bad_enum("body.direction");
      if (!in_range<Decision>(static_cast<int>(x->decision()))) return bad_enum("body.decision");
      return GatePass{cast_enum<Credential>(x->credential()), str(x->subject()), cast_enum<Direction>(x->direction()),
                      cast_enum<Decision>(x->decision()), str(x->reason()), opt_double(x->temperature_c()),
                      opt(x->mask()), opt_double(x->match_score())};
    }
    case f::Body::VehiclePass: {
      auto* x = e.body_as_VehiclePass();
      if (!in_range<Direction>(static_cast<int>(x->direction()))) return bad_enum("body.direction");
      if (!in_range<Decision>(static_cast<int>(x->decision()))) return bad_enum("body.decision");
      return VehiclePass{str(x->plate()), cast_enum<Direction>(x->direction()), cast_enum<Decision>(x->decision())};
    }
    case f::Body::MeterReading: {
      auto* x = e.body_as_MeterReading();
      if (!in_range<MeterKind>(static_cast<int>(x->kind()))) return bad_enum("body.kind");
      return MeterReading{cast_enum<MeterKind>(x->kind()), x->total(), str(x->unit())};
    }
    case f::Body::HomeSensor: {
      auto* x = e.body_as_HomeSensor();
      if (!in_range<SensorKind>(static_cast<int>(x->sensor()))) return bad_enum("body.sensor");
      return HomeSensor{cast_enum<SensorKind>(x->sensor()), str(x->state()), opt_double(x->value())};
    }
    case f::Body::WearableVitals: {
      auto* x = e.body_as_WearableVitals();
      WearableVitals v;
      v.heart_rate_bpm = opt_double(x->heart_rate_bpm());
      v.spo2_pct = opt_double(x->spo2_pct());
      v.skin_temp_c = opt_double(x->skin_temp_c());
      v.steps = opt(x->steps());
      v.moving = opt(x->moving());
      v.lat = opt(x->lat());
      v.lon = opt(x->lon());
      return v;
    }
    case f::Body::WearableAlarm: {
      auto* x = e.body_as_WearableAlarm();
      if (!in_range<AlarmKind>(static_cast<int>(x->kind()))) return bad_enum("body.kind");
      return WearableAlarm{cast_enum<AlarmKind>(x->kind()), x->cancelled()};
    }
    case f::Body::DeviceStatus: {
      auto* x = e.body_as_DeviceStatus();
      DeviceStatus s;
      s.battery_pct = opt_double(x->battery_pct());
      if (x->rssi().has_value()) s.rssi = *x->rssi();
      s.tamper = opt(x->tamper());
      s.firmware = str(x->firmware());
      return s;
    }
    case f::Body::DeviceRegistered: {
      auto* x = e.body_as_DeviceRegistered();
      if (!in_range<DeviceKind>(static_cast<int>(x->kind()))) return bad_enum("body.kind");
      return DeviceRegistered{cast_enum<DeviceKind>(x->kind()), str(x->unit()), str(x->location())};
    }
    case f::Body::Tick: return Tick{e.body_as_Tick()->partition()};
    case f::Body::RegistryEntry: {
      auto* x = e.body_as_RegistryEntry();
      if (!in_range<RegistryKind>(static_cast<int>(x->kind()))) return bad_enum("body.kind");
      if (!in_range<PersonRole>(static_cast<int>(x->role()))) return bad_enum("body.role");
      return RegistryEntry{cast_enum<RegistryKind>(x->kind()), str(x->id()), cast_enum<PersonRole>(x->role()),
                           str(x->unit()), x->valid_from_ms(), x->valid_to_ms(), x->allowance_s(), x->removed()};
    }
    case f::Body::OperatorAction: {
      auto* x = e.body_as_OperatorAction();
      if (!in_range<AlertAction>(static_cast<int>(x->action()))) return bad_enum("body.action");
      return OperatorAction{str(x->alert_id()), cast_enum<AlertAction>(x->action()), str(x->actor()), str(x->note()),
                            str(x->to()), str(x->role())};
    }
    case f::Body::Command: {
      auto* x = e.body_as_Command();
      return Command{str(x->command_id()), DeviceId(str(x->target())), str(x->action()), str(x->args()),
                     str(x->actor()), x->expires_at_ms()};
    }
    case f::Body::CommandDelivered: return CommandDelivered{str(e.body_as_CommandDelivered()->command_id())};
    case f::Body::CommandAck: {
      auto* x = e.body_as_CommandAck();
      if (!in_range<CommandResult>(static_cast<int>(x->result()))) return bad_enum("body.result");
      return CommandAck{str(x->command_id()), cast_enum<CommandResult>(x->result()), str(x->detail())};
    }
    case f::Body::Notice: {
      auto* x = e.body_as_Notice();
      if (!in_range<NoticeSeverity>(static_cast<int>(x->severity()))) return bad_enum("body.severity");
      return Notice{str(x->notice_id()), str(x->title()), str(x->text()), cast_enum<NoticeSeverity>(x->severity()),
                    str(x->unit()), str(x->actor()), x->expires_at_ms()};
    }
    case f::Body::CameraSnapshot: {
      auto* x = e.body_as_CameraSnapshot();
      CameraSnapshot c{str(x->gate()), {}, str(x->image_sha256()), x->image_bytes(), x->width(), x->height()};
      if (x->jpeg()) c.jpeg.assign(reinterpret_cast<const char*>(x->jpeg()->data()), x->jpeg()->size());
      return c;
    }
    case f::Body::VisionAnalysis: {
      auto* x = e.body_as_VisionAnalysis();
      return VisionAnalysis{x->snapshot_id(),  str(x->gate()),  x->snapshot_time_ms(), x->faces(),
                            str(x->plate_token()), x->plate_confidence(), x->plate_x(), x->plate_y(),
                            x->plate_width(),  x->plate_height(), str(x->error())};
    }
    case f::Body::PersonRecorded: {
      auto* x = e.body_as_PersonRecorded();
      if (!in_range<PersonKind>(static_cast<int>(x->kind()))) return bad_enum("body.kind");
      PersonRecorded p{str(x->subject()), cast_enum<PersonKind>(x->kind()), str(x->unit()), {}, strings(x->tokens())};
      if (x->sealed()) p.sealed.assign(reinterpret_cast<const char*>(x->sealed()->data()), x->sealed()->size());
      return p;
    }
    case f::Body::PersonForgotten: {
      auto* x = e.body_as_PersonForgotten();
      return PersonForgotten{str(x->subject()), str(x->actor()), str(x->reason())};
    }
    case f::Body::PersonalDataRead: {
      auto* x = e.body_as_PersonalDataRead();
      return PersonalDataRead{str(x->actor()), strings(x->subjects()), strings(x->fields()), str(x->purpose())};
    }
    case f::Body::EmergencyContacts: {
      auto* x = e.body_as_EmergencyContacts();
      return EmergencyContacts{str(x->unit()), str(x->device()), str(x->wearer()), strings(x->contacts())};
    }
    case f::Body::NotificationStatus: {
      auto* x = e.body_as_NotificationStatus();
      return NotificationStatus{str(x->notification_id()), str(x->channel()), str(x->state()), x->attempts(), str(x->detail())};
    }
    case f::Body::SiteEntry: {
      auto* x = e.body_as_SiteEntry();
      if (!in_range<SiteKind>(static_cast<int>(x->kind()))) return bad_enum("body.kind");
      return SiteEntry{cast_enum<SiteKind>(x->kind()), str(x->id()), str(x->label()), x->floors(), x->map_x(), x->map_y(),
                       strings(x->members()), x->removed()};
    }
    case f::Body::DutyRoster: {
      auto* x = e.body_as_DutyRoster();
      DutyRoster r{str(x->grid()), str(x->role()), {}, {}, str(x->actor())};
      if (x->week()) {
        for (const auto* s : *x->week()) {
          if (!s) return std::unexpected(std::string("body.week holds an empty shift"));
          r.week.push_back({s->weekday(), s->start_min(), s->end_min(), str(s->staff())});
        }
      }
      if (x->exceptions()) {
        for (const auto* s : *x->exceptions()) {
          if (!s) return std::unexpected(std::string("body.exceptions holds an empty span"));
          r.exceptions.push_back({s->from_ms(), s->to_ms(), str(s->staff())});
        }
      }
      return r;
    }
    case f::Body::NONE: break;
  }
  return std::unexpected(std::string("body is missing or of an unknown type"));
}

std::expected<const f::Event*, std::string> verified(std::string_view bytes) {
  auto* data = reinterpret_cast<const std::uint8_t*>(bytes.data());
  flatbuffers::Verifier verifier(data, bytes.size(), /*max_depth=*/16, /*max_tables=*/256);
  if (!f::VerifyEventBuffer(verifier)) return std::unexpected(std::string("FlatBuffers verification failed"));
  return f::GetEvent(data);
}

}  // namespace

bool has_flatbuffer_identifier(std::string_view bytes) {
  return bytes.size() >= 8 && flatbuffers::BufferHasIdentifier(bytes.data(), f::EventIdentifier());
}

std::string encode(const Event& e) {
  flatbuffers::FlatBufferBuilder b(256);
  auto device = b.CreateString(e.device.str());
  auto community = b.CreateString(e.community.str());
  auto [type, body] = build_body(b, e.body);
  auto link = e.chain_link.empty() ? flatbuffers::Offset<flatbuffers::String>() : b.CreateString(e.chain_link);
  auto root = f::CreateEvent(b, e.schema_version, e.event_id, device, community, e.boot, e.seq, e.device_time_ms,
                             e.ingest_time_ms, type, body, e.chain_seq, link);
  f::FinishEventBuffer(b, root);
  return std::string(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize());
}

std::expected<Event, std::string> decode(std::string_view bytes) {
  if (!has_flatbuffer_identifier(bytes)) return std::unexpected(std::string("not a Courtyard event (file identifier)"));
  auto root = verified(bytes);
  if (!root) return std::unexpected(root.error());
  const f::Event& x = **root;
  auto body = read_body(x);
  if (!body) return std::unexpected(body.error());
  Event e;
  e.schema_version = x.schema_version();
  e.event_id = x.event_id();
  e.device = DeviceId(str(x.device_id()));
  e.community = CommunityId(str(x.community()));
  e.boot = x.boot();
  e.seq = x.seq();
  e.device_time_ms = x.device_time_ms();
  e.ingest_time_ms = x.ingest_time_ms();
  e.body = std::move(*body);
  e.chain_seq = x.chain_seq();
  e.chain_link = str(x.chain_link());
  if (auto field = first_invalid_text(e)) return std::unexpected(*field + " is not valid UTF-8");
  return e;
}

std::expected<Event, Rejection> parse_device_flatbuffer(const Topic& topic, std::string_view payload) {
  auto root = verified(payload);
  if (!root) return std::unexpected(Rejection{Code::FailedVerification, root.error()});
  auto event = decode(payload);
  if (!event) {
    // A string that is not text is malformed input, not a buffer that failed to verify.
    const auto code = event.error().ends_with("not valid UTF-8") ? Code::Malformed : Code::FailedVerification;
    return std::unexpected(Rejection{code, event.error()});
  }
  // The device's own strings are quoted back to it and kept for ever in the dead-letter topic:
  // only as printable text, never as the raw bytes.
  if (!event->device.empty() && event->device != topic.device) {
    return std::unexpected(Rejection{Code::WrongTopic, "device_id \"" + printable(event->device.str(), 64) +
                                                           "\" in the buffer is not the topic's device \"" +
                                                           topic.device.str() + "\""});
  }
  if (!event->community.empty() && event->community != topic.community) {
    return std::unexpected(Rejection{Code::WrongTopic, "community \"" + printable(event->community.str(), 64) +
                                                           "\" in the buffer is not the topic's community \"" +
                                                           topic.community.str() + "\""});
  }
  if (is_system_event(event->body)) {
    return std::unexpected(Rejection{Code::TypeNotAllowed, std::string(type_name(event->body)) +
                                                               " is written by Courtyard, not by devices"});
  }
  // What ingest sets is never taken from a device.
  event->device = topic.device;
  event->community = topic.community;
  event->event_id = 0;
  event->ingest_time_ms = 0;
  event->chain_seq = 0;
  event->chain_link.clear();
  event->schema_version = kSchemaVersion;
  return std::move(*event);
}

}  // namespace courtyard::schemas
