// Range checks: the physical and protocol limits of every field, with the field named in the reason.
#include <cmath>
#include <fmt/format.h>

#include "codec.h"
#include "common/text.h"
#include "schemas/event.h"

namespace courtyard::schemas {
namespace {

using Code = Rejection::Code;

struct Check {
  std::optional<Rejection> failure;

  void range(const char* field, std::optional<double> v, double lo, double hi) {
    if (failure || !v) return;
    if (!std::isfinite(*v) || *v < lo || *v > hi) {
      failure = Rejection{Code::OutOfRange, fmt::format("body.{}={} is outside {}..{}", field, *v, lo, hi)};
    }
  }
  void text(const char* field, const std::string& s, std::size_t max, bool required) {
    if (failure) return;
    if (required && s.empty()) {
      failure = Rejection{Code::MissingField, fmt::format("body.{} must not be empty", field)};
    } else if (s.size() > max) {
      failure = Rejection{Code::OutOfRange, fmt::format("body.{} is {} bytes, at most {} allowed", field, s.size(), max)};
    } else if (!valid_utf8(s)) {
      // JSON payloads cannot carry it, a FlatBuffers string can: every later JSON view would fail.
      failure = Rejection{Code::Malformed, fmt::format("body.{} is not valid UTF-8", field)};
    }
  }
};

}  // namespace

std::optional<std::string> first_invalid_text(const Event& e) {
  if (!valid_utf8(e.device.str())) return std::string("device_id");
  if (!valid_utf8(e.community.str())) return std::string("community");
  if (!valid_utf8(e.chain_link)) return std::string("chain_link");
  std::optional<std::string> bad;
  auto check = [&](const char* field, const std::string& text) {
    if (!bad && !valid_utf8(text)) bad = std::string("body.") + field;
  };
  std::visit(
      [&](const auto& b) {
        using T = std::decay_t<decltype(b)>;
        if constexpr (std::is_same_v<T, GatePass>) {
          check("subject", b.subject), check("reason", b.reason);
        } else if constexpr (std::is_same_v<T, VehiclePass>) {
          check("plate", b.plate);
        } else if constexpr (std::is_same_v<T, MeterReading>) {
          check("unit", b.unit);
        } else if constexpr (std::is_same_v<T, HomeSensor>) {
          check("state", b.state);
        } else if constexpr (std::is_same_v<T, DeviceStatus>) {
          check("firmware", b.firmware);
        } else if constexpr (std::is_same_v<T, DeviceRegistered>) {
          check("unit", b.unit), check("location", b.location);
        } else if constexpr (std::is_same_v<T, OperatorAction>) {
          check("alert_id", b.alert_id), check("actor", b.actor), check("note", b.note), check("to", b.to), check("role", b.role);
        } else if constexpr (std::is_same_v<T, RegistryEntry>) {
          check("id", b.id), check("unit", b.unit);
        } else if constexpr (std::is_same_v<T, Command>) {
          check("command_id", b.command_id), check("target", b.target.str()), check("action", b.action);
          check("args", b.args), check("actor", b.actor);
        } else if constexpr (std::is_same_v<T, CommandDelivered>) {
          check("command_id", b.command_id);
        } else if constexpr (std::is_same_v<T, CommandAck>) {
          check("command_id", b.command_id), check("detail", b.detail);
        } else if constexpr (std::is_same_v<T, Notice>) {
          check("notice_id", b.notice_id), check("title", b.title), check("text", b.text);
          check("unit", b.unit), check("actor", b.actor);
        } else if constexpr (std::is_same_v<T, CameraSnapshot>) {
          check("gate", b.gate), check("image_sha256", b.image_sha256);  // jpeg is bytes, not text
        } else if constexpr (std::is_same_v<T, VisionAnalysis>) {
          check("gate", b.gate), check("plate_token", b.plate_token), check("error", b.error);
        } else if constexpr (std::is_same_v<T, PersonRecorded>) {
          check("subject", b.subject), check("unit", b.unit);  // sealed is bytes, not text
          for (const auto& t : b.tokens) check("tokens", t);
        } else if constexpr (std::is_same_v<T, PersonForgotten>) {
          check("subject", b.subject), check("actor", b.actor), check("reason", b.reason);
        } else if constexpr (std::is_same_v<T, PersonalDataRead>) {
          check("actor", b.actor), check("purpose", b.purpose);
          for (const auto& s : b.subjects) check("subjects", s);
          for (const auto& s : b.fields) check("fields", s);
        } else if constexpr (std::is_same_v<T, NotificationStatus>) {
          check("notification_id", b.notification_id), check("channel", b.channel), check("state", b.state);
          check("detail", b.detail);
        } else if constexpr (std::is_same_v<T, SiteEntry>) {
          check("id", b.id), check("label", b.label);
          for (const auto& m : b.members) check("members", m);
        } else if constexpr (std::is_same_v<T, DutyRoster>) {
          check("grid", b.grid), check("role", b.role), check("actor", b.actor);
          for (const auto& s : b.week) check("week.staff", s.staff);
          for (const auto& s : b.exceptions) check("exceptions.staff", s.staff);
        } else if constexpr (std::is_same_v<T, EmergencyContacts>) {
          check("unit", b.unit), check("device", b.device), check("wearer", b.wearer);
          for (const auto& s : b.contacts) check("contacts", s);
        }
      },
      e.body);
  return bad;
}

std::expected<void, Rejection> validate(const Event& e, const Limits& limits) {
  if (e.device_time_ms < limits.min_device_time_ms || e.device_time_ms > limits.max_device_time_ms) {
    return std::unexpected(Rejection{
        Code::OutOfRange, fmt::format("ts={} is outside {}..{} (ms since epoch)", e.device_time_ms,
                                      limits.min_device_time_ms, limits.max_device_time_ms)});
  }
  Check c;
  std::visit(
      [&](const auto& b) {
        using T = std::decay_t<decltype(b)>;
        if constexpr (std::is_same_v<T, GatePass>) {
          c.text("subject", b.subject, 128, true);
          // People enter the log as pseudonymous tokens, never as names: token syntax only.
          if (!c.failure && !valid_id(b.subject)) {
            c.failure = Rejection{Code::OutOfRange, "body.subject must be a token: 1..64 of [A-Za-z0-9_.-], never a name"};
          }
          c.text("reason", b.reason, 128, false);
          c.range("temperature_c", b.temperature_c, 30, 45);
          c.range("match_score", b.match_score, 0, 1);
        } else if constexpr (std::is_same_v<T, VehiclePass>) {
          c.text("plate", b.plate, 32, true);
          // Plates enter the log as tokens (plate- and the HMAC the site's gates compute), never as text.
          if (!c.failure && (!b.plate.starts_with("plate-") || !valid_id(b.plate))) {
            c.failure = Rejection{Code::OutOfRange, "body.plate must be a plate token (plate-...), never the plate's text"};
          }
        } else if constexpr (std::is_same_v<T, MeterReading>) {
          c.range("total", b.total, 0, 1e12);
          c.text("unit", b.unit, 16, true);
        } else if constexpr (std::is_same_v<T, HomeSensor>) {
          c.text("state", b.state, 32, false);
          switch (b.sensor) {
            case SensorKind::Temperature: c.range("value", b.value, -40, 120); break;
            case SensorKind::Humidity: c.range("value", b.value, 0, 100); break;
            default: c.range("value", b.value, -1e6, 1e6); break;
          }
        } else if constexpr (std::is_same_v<T, WearableVitals>) {
          c.range("heart_rate_bpm", b.heart_rate_bpm, 20, 250);
          c.range("spo2_pct", b.spo2_pct, 50, 100);
          c.range("skin_temp_c", b.skin_temp_c, 25, 45);
          c.range("steps", b.steps ? std::optional<double>(*b.steps) : std::nullopt, 0, 1e6);
          c.range("lat", b.lat, -90, 90);
          c.range("lon", b.lon, -180, 180);
        } else if constexpr (std::is_same_v<T, DeviceStatus>) {
          c.range("battery_pct", b.battery_pct, 0, 100);
          c.range("rssi", b.rssi ? std::optional<double>(*b.rssi) : std::nullopt, -150, 0);
          c.text("firmware", b.firmware, 64, false);
        } else if constexpr (std::is_same_v<T, CommandAck>) {
          c.text("command_id", b.command_id, 64, true);
          c.text("detail", b.detail, 256, false);
        } else if constexpr (std::is_same_v<T, CameraSnapshot>) {
          c.text("gate", b.gate, 64, true);
          if (!c.failure && !valid_id(b.gate)) {
            c.failure = Rejection{Code::OutOfRange, "body.gate must be a device id: 1..64 of [A-Za-z0-9_.-]"};
          }
          if (!c.failure && b.jpeg.empty()) c.failure = Rejection{Code::MissingField, "body.jpeg must not be empty"};
          if (!c.failure) {
            auto info = jpeg_info(b.jpeg);
            if (!info) {
              c.failure = Rejection{Code::Malformed, "body.jpeg " + info.error()};
            } else if (info->width > limits.max_image_side_px || info->height > limits.max_image_side_px) {
              c.failure = Rejection{Code::OutOfRange, fmt::format("body.jpeg is {}x{} pixels, at most {} a side",
                                                                  info->width, info->height, limits.max_image_side_px)};
            }
          }
        } else if constexpr (std::is_same_v<T, DeviceRegistered>) {
          c.text("unit", b.unit, 64, false);
          c.text("location", b.location, 256, false);
        }
      },
      e.body);
  if (c.failure) return std::unexpected(*c.failure);
  return {};
}

std::expected<JpegInfo, std::string> jpeg_info(std::string_view bytes) {
  auto byte = [&](std::size_t i) { return static_cast<unsigned char>(bytes[i]); };
  if (bytes.size() < 4 || byte(0) != 0xFF || byte(1) != 0xD8) return std::unexpected(std::string("is not a JPEG image"));
  if (byte(bytes.size() - 2) != 0xFF || byte(bytes.size() - 1) != 0xD9) {
    return std::unexpected(std::string("is truncated (no end-of-image marker)"));
  }
  // Marker segments up to the first scan: a frame header (SOF0..SOF15 but DHT, JPG and DAC) must come first.
  std::size_t i = 2;
  while (i + 4 <= bytes.size()) {
    if (byte(i) != 0xFF) return std::unexpected(std::string("has a corrupt header"));
    const unsigned marker = byte(i + 1);
    if (marker == 0xFF) {  // fill byte
      ++i;
      continue;
    }
    const std::size_t length = (std::size_t{byte(i + 2)} << 8) | byte(i + 3);
    if (length < 2 || i + 2 + length > bytes.size()) return std::unexpected(std::string("has a corrupt header"));
    const bool frame = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (frame) {
      if (length < 7) return std::unexpected(std::string("has a corrupt frame header"));
      JpegInfo info{(byte(i + 7) << 8) | byte(i + 8), (byte(i + 5) << 8) | byte(i + 6)};
      if (info.width == 0 || info.height == 0) return std::unexpected(std::string("declares no pixels"));
      return info;
    }
    if (marker == 0xDA) break;  // a scan before any frame header
    i += 2 + length;
  }
  return std::unexpected(std::string("has no frame header"));
}

std::expected<Event, Rejection> decode_device_payload(const Topic& topic, std::string_view payload,
                                                      const Limits& limits) {
  const bool snapshot_channel = topic.channel == "snapshot";
  const std::size_t max_bytes = snapshot_channel ? limits.max_snapshot_bytes : limits.max_payload_bytes;
  if (payload.size() > max_bytes) {
    return std::unexpected(
        Rejection{Code::TooLarge, fmt::format("payload is {} bytes, at most {} allowed", payload.size(), max_bytes)});
  }
  if (payload.empty()) return std::unexpected(Rejection{Code::Malformed, "payload is empty"});
  auto event = has_flatbuffer_identifier(payload) ? parse_device_flatbuffer(topic, payload)
                                                  : parse_device_json(topic, payload);
  if (!event) return event;
  if (snapshot_channel != std::holds_alternative<CameraSnapshot>(event->body)) {
    return std::unexpected(Rejection{Code::WrongTopic, snapshot_channel
                                                           ? "only camera.snapshot is published on .../snapshot"
                                                           : "camera.snapshot is published on .../snapshot"});
  }
  if (auto ok = validate(*event, limits); !ok) return std::unexpected(ok.error());
  return event;
}

}  // namespace courtyard::schemas
