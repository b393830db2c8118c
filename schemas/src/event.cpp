#include "common/digest.h"
#include "names.h"
#include "schemas/event.h"

namespace courtyard::schemas {

std::string_view to_string(Rejection::Code code) {
  switch (code) {
    case Rejection::Code::Malformed: return "malformed";
    case Rejection::Code::FailedVerification: return "failed_verification";
    case Rejection::Code::UnknownType: return "unknown_type";
    case Rejection::Code::MissingField: return "missing_field";
    case Rejection::Code::OutOfRange: return "out_of_range";
    case Rejection::Code::TooLarge: return "too_large";
    case Rejection::Code::UnknownDevice: return "unknown_device";
    case Rejection::Code::WrongTopic: return "wrong_topic";
    case Rejection::Code::TypeNotAllowed: return "type_not_allowed";
  }
  return "unknown";
}

std::string_view type_name(const Body& body) {
  static constexpr std::array<std::string_view, std::variant_size_v<Body>> kTypes = {
      "gate.pass",       "vehicle.pass",   "meter.reading", "home.sensor",
      "wearable.vitals", "wearable.alarm", "device.status", "device.registered", "tick", "operator.action",
      "registry.entry",  "command",        "command.delivered", "command.ack", "notice", "camera.snapshot",
      "vision.analysis", "person.recorded", "person.forgotten", "person.read", "contacts.set",
      "roster.set", "site.entry", "notification.status"};
  return kTypes[body.index()];
}

std::string_view to_string(DeviceKind kind) { return name_of(kind); }
std::optional<DeviceKind> parse_device_kind(std::string_view name) { return parse_name<DeviceKind>(name); }

std::string chain_link(std::string_view key, const std::string& previous, Event event) {
  event.chain_link.clear();
  return hmac_sha256_hex(key, previous + encode(event));
}

std::string dead_letter_mac(std::string_view key, std::string_view payload,
                            const std::vector<std::pair<std::string, std::string>>& headers) {
  // Every part with its length first: no byte can move from one part to another unnoticed.
  std::string message = "deadletter";
  auto part = [&](std::string_view bytes) {
    message += std::to_string(bytes.size());
    message += ':';
    message += bytes;
  };
  part(payload);
  for (const auto& [name, value] : headers) {
    if (name == "auth") continue;
    part(name);
    part(value);
  }
  return hmac_sha256_hex(key, message);
}

bool is_system_event(const Body& body) {
  return std::holds_alternative<DeviceRegistered>(body) || std::holds_alternative<Tick>(body) ||
         std::holds_alternative<OperatorAction>(body) || std::holds_alternative<RegistryEntry>(body) ||
         std::holds_alternative<Command>(body) || std::holds_alternative<CommandDelivered>(body) ||
         std::holds_alternative<Notice>(body) || std::holds_alternative<VisionAnalysis>(body) ||
         std::holds_alternative<PersonRecorded>(body) || std::holds_alternative<PersonForgotten>(body) ||
         std::holds_alternative<PersonalDataRead>(body) || std::holds_alternative<EmergencyContacts>(body) ||
         std::holds_alternative<DutyRoster>(body) || std::holds_alternative<SiteEntry>(body) ||
         std::holds_alternative<NotificationStatus>(body);
}

std::string_view to_string(CommandResult result) { return name_of(result); }
std::string_view to_string(NoticeSeverity severity) { return name_of(severity); }
std::optional<NoticeSeverity> parse_notice_severity(std::string_view name) { return parse_name<NoticeSeverity>(name); }

std::string_view to_string(AlertAction action) { return name_of(action); }
std::string_view to_string(PersonKind kind) { return name_of(kind); }
std::string_view to_string(SiteKind kind) { return name_of(kind); }
std::optional<SiteKind> parse_site_kind(std::string_view name) { return parse_name<SiteKind>(name); }
std::optional<AlertAction> parse_alert_action(std::string_view name) { return parse_name<AlertAction>(name); }
std::optional<PersonKind> parse_person_kind(std::string_view name) { return parse_name<PersonKind>(name); }
std::string_view to_string(RegistryKind kind) { return name_of(kind); }
std::string_view to_string(PersonRole role) { return name_of(role); }
std::optional<RegistryKind> parse_registry_kind(std::string_view name) { return parse_name<RegistryKind>(name); }
std::optional<PersonRole> parse_person_role(std::string_view name) { return parse_name<PersonRole>(name); }

bool allowed_for(DeviceKind kind, const Body& body) {
  if (std::holds_alternative<DeviceStatus>(body)) return true;  // every device reports health
  if (std::holds_alternative<CommandAck>(body)) return true;    // and answers its commands
  if (is_system_event(body)) return false;                      // only Courtyard writes these
  switch (kind) {
    case DeviceKind::Gate:
    case DeviceKind::Door: return std::holds_alternative<GatePass>(body);
    case DeviceKind::VehicleGate: return std::holds_alternative<VehiclePass>(body);
    case DeviceKind::Camera: return std::holds_alternative<CameraSnapshot>(body);
    case DeviceKind::Meter: return std::holds_alternative<MeterReading>(body);
    case DeviceKind::HomeSensor: return std::holds_alternative<HomeSensor>(body);
    case DeviceKind::Wearable:
      return std::holds_alternative<WearableVitals>(body) || std::holds_alternative<WearableAlarm>(body);
    case DeviceKind::Handheld: return false;  // a pager: its health and its answers only
  }
  return false;
}

bool valid_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

std::string topic_for(const CommunityId& community, const DeviceId& device, std::string_view channel) {
  return "courtyard/v1/" + community.str() + "/" + device.str() + "/" + std::string(channel);
}

std::expected<Topic, Rejection> parse_topic(std::string_view topic) {
  constexpr std::string_view kPrefix = "courtyard/v1/";
  auto wrong = [&](std::string why) {
    return std::unexpected(Rejection{Rejection::Code::WrongTopic, "topic " + std::string(topic) + ": " + why});
  };
  if (!topic.starts_with(kPrefix)) return wrong("does not start with courtyard/v1/");
  std::string_view rest = topic.substr(kPrefix.size());
  std::array<std::string_view, 3> parts;
  for (std::size_t i = 0; i < 3; ++i) {
    auto slash = rest.find('/');
    if (i < 2 && slash == std::string_view::npos) return wrong("expected {community}/{device}/{channel}");
    if (i == 2 && slash != std::string_view::npos) return wrong("too many levels");
    parts[i] = rest.substr(0, slash);
    rest = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
  }
  if (!valid_id(parts[0])) return wrong("community id must be 1..64 of [A-Za-z0-9_.-]");
  if (!valid_id(parts[1])) return wrong("device id must be 1..64 of [A-Za-z0-9_.-]");
  return Topic{CommunityId(std::string(parts[0])), DeviceId(std::string(parts[1])), std::string(parts[2])};
}

}  // namespace courtyard::schemas
