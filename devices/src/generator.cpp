#include "generator.h"

#include <array>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace courtyard::devices {
namespace {

using namespace schemas;

// One in every 20 devices of each kind, roughly a residential compound's mix.
constexpr std::array<DeviceKind, 20> kMix = {
    DeviceKind::Meter,      DeviceKind::HomeSensor, DeviceKind::Wearable,   DeviceKind::Door,
    DeviceKind::Meter,      DeviceKind::HomeSensor, DeviceKind::Gate,       DeviceKind::Wearable,
    DeviceKind::Meter,      DeviceKind::HomeSensor, DeviceKind::VehicleGate, DeviceKind::Door,
    DeviceKind::Meter,      DeviceKind::HomeSensor, DeviceKind::Wearable,   DeviceKind::Camera,
    DeviceKind::Meter,      DeviceKind::HomeSensor, DeviceKind::Door,       DeviceKind::Wearable};

std::string json_payload(const Event& e) {
  return nlohmann::json{{"seq", e.seq}, {"boot", e.boot}, {"ts", e.device_time_ms},
                        {"type", type_name(e.body)}, {"body", body_to_json(e.body)}}
      .dump();
}

}  // namespace

std::string payload_json(const Event& e) { return json_payload(e); }

std::vector<Registration> make_fleet(const SimulatorConfig& config, std::int64_t now_ms) {
  std::vector<Registration> fleet;
  std::map<std::pair<std::string, DeviceKind>, int> numbers;
  for (std::size_t i = 0; i < config.devices; ++i) {
    const std::string& community = config.communities[i % config.communities.size()];
    DeviceKind kind = kMix[(i / config.communities.size()) % kMix.size()];
    int n = ++numbers[{community, kind}];
    Registration r;
    r.community = CommunityId(community);
    r.device = DeviceId(fmt::format("{}{}-{}-{:03}", config.id_prefix, community, to_string(kind), n));
    r.kind = kind;
    int building = 1 + (n - 1) % 8;
    switch (kind) {
      case DeviceKind::Gate: r.location = fmt::format("Pedestrian gate {}", n); break;
      case DeviceKind::VehicleGate: r.location = fmt::format("Vehicle gate {}", n); break;
      case DeviceKind::Camera:
        r.location = fmt::format("Camera over {} gate {}", n % 2 ? "pedestrian" : "vehicle", n);
        break;
      case DeviceKind::Door: r.location = fmt::format("Building {} unit door", building); break;
      default:
        r.unit = fmt::format("b{}-{:02}{:02}", building, 1 + n % 18, 1 + n % 4);
        r.location = fmt::format("Building {}, flat {}", building, r.unit);
        break;
    }
    r.registered_at_ms = now_ms;
    fleet.push_back(std::move(r));
  }
  return fleet;
}

SensorKind sensor_of(const Registration& device) {
  return static_cast<SensorKind>(std::hash<std::string>{}(device.device.str()) % 6);
}

// The next event of a device: its identity, boot and seq (consumed), and time.
static Event next_event(const Registration& device, DeviceCursor& cursor, std::int64_t now_ms) {
  Event e;
  e.device = device.device;
  e.community = device.community;
  e.boot = cursor.boot;
  e.seq = cursor.next_seq++;
  e.device_time_ms = now_ms;
  return e;
}

Payload Generator::heartbeat(const Registration& device, DeviceCursor& cursor, std::int64_t now_ms) {
  Event e = next_event(device, cursor, now_ms);
  DeviceStatus s;
  s.firmware = "1.4.2";  // no battery or tamper reading: it must not clear the incident
  e.body = s;
  return {json_payload(e), "device.status", "", e.seq};
}

Body Generator::body_for(const Registration& device, DeviceCursor& cursor) {
  auto pick = [&](int n) { return static_cast<int>(rng_() % static_cast<std::uint64_t>(n)); };
  auto normal = [&](double mean, double sd) { return std::normal_distribution<double>(mean, sd)(rng_); };
  if (pick(10) == 0) {  // one event in ten is a heartbeat
    DeviceStatus s;
    s.battery_pct = 30 + pick(70);  // healthy: low batteries are an injected anomaly
    s.rssi = -40 - pick(60);
    s.firmware = "1.4.2";
    return s;
  }
  switch (device.kind) {
    case DeviceKind::Gate:
    case DeviceKind::Door: {
      GatePass g;
      g.credential = static_cast<Credential>(pick(6));
      g.subject = fmt::format("subj-{:05}", pick(2000));
      g.direction = pick(2) ? Direction::In : Direction::Out;
      g.decision = pick(20) ? Decision::Granted : Decision::Denied;
      if (g.decision == Decision::Denied) g.reason = "not_on_access_list";
      // Healthy people: fevers are an injected anomaly.
      if (device.kind == DeviceKind::Gate) g.temperature_c = std::min(37.1, std::round(normal(36.5, 0.25) * 10) / 10);
      if (g.credential == Credential::Face) g.match_score = 0.8 + 0.19 * uniform();
      return g;
    }
    case DeviceKind::VehicleGate:
      return VehiclePass{fmt::format("plate-{:04}", pick(600)), pick(2) ? Direction::In : Direction::Out,
                         pick(15) ? Decision::Granted : Decision::Denied};
    case DeviceKind::Meter: {
      cursor.meter_total += 0.01 + 0.2 * uniform();
      MeterKind kind = static_cast<MeterKind>(std::hash<std::string>{}(device.device.str()) % 3);
      const char* unit = kind == MeterKind::Electricity ? "kWh" : "m3";
      return MeterReading{kind, std::round(cursor.meter_total * 1000) / 1000, unit};
    }
    case DeviceKind::HomeSensor: {
      auto sensor = sensor_of(device);
      HomeSensor h{sensor, {}, {}};
      if (sensor == SensorKind::Temperature) h.value = std::round(normal(22, 2) * 10) / 10;
      else if (sensor == SensorKind::Humidity) h.value = std::round(normal(50, 8) * 10) / 10;
      else if (sensor == SensorKind::Door) h.state = pick(2) ? "closed" : "open";
      else h.state = "ok";
      return h;
    }
    case DeviceKind::Wearable: {
      // Now and then a false alarm the wearer cancels at once; real incidents are injected.
      if (pick(500) == 0) return WearableAlarm{pick(3) ? AlarmKind::Fall : AlarmKind::Sos, true};
      WearableVitals v;
      v.heart_rate_bpm = std::round(normal(72, 8));
      v.spo2_pct = std::clamp(std::round(normal(97, 1)), 94.0, 100.0);
      v.skin_temp_c = std::round(normal(33.5, 0.5) * 10) / 10;
      v.steps = static_cast<std::uint32_t>(pick(8000));
      v.moving = pick(3) == 0;
      return v;
    }
    case DeviceKind::Camera:
    case DeviceKind::Handheld: break;  // health only (a camera's pictures go to the snapshots topic)
  }
  DeviceStatus s;
  s.battery_pct = 100;
  s.firmware = device.kind == DeviceKind::Camera ? "cam-2.0" : "pager-1.0";
  return s;
}

Payload Generator::valid(const Registration& device, DeviceCursor& cursor, std::int64_t now_ms, bool flatbuffer) {
  Event e = next_event(device, cursor, now_ms);
  e.body = body_for(device, cursor);
  Payload p;
  p.type = std::string(type_name(e.body));
  p.seq = e.seq;
  p.bytes = flatbuffer ? encode(e) : json_payload(e);
  return p;
}

Payload Generator::bad(const Registration& device, const DeviceCursor& cursor, std::int64_t now_ms, BadKind kind) {
  Payload p;
  p.seq = cursor.next_seq;
  auto status = [&](const std::string& body) {
    return fmt::format(R"({{"seq":{},"boot":{},"ts":{},"type":"device.status","body":{}}})", cursor.next_seq,
                       cursor.boot, now_ms, body);
  };
  switch (kind) {
    case BadKind::Malformed:
      p.bytes = fmt::format(R"({{"seq":{},"ts":{},"type":"device.status","body":{{"battery_pct":)", cursor.next_seq, now_ms);
      p.reason = "malformed";
      break;
    case BadKind::OutOfRange:
      p.bytes = status(R"({"battery_pct":180})");
      p.reason = "out_of_range";
      break;
    case BadKind::UnknownType:
      p.bytes = fmt::format(R"({{"seq":{},"ts":{},"type":"gate.teleport","body":{{}}}})", cursor.next_seq, now_ms);
      p.reason = "unknown_type";
      break;
    case BadKind::MissingField:
      p.bytes = fmt::format(R"({{"seq":{},"type":"device.status","body":{{"battery_pct":50}}}})", cursor.next_seq);
      p.reason = "missing_field";
      break;
    case BadKind::TooLarge:
      p.bytes = status(fmt::format(R"({{"firmware":"{}"}})", std::string(20000, 'x')));
      p.reason = "too_large";
      break;
    case BadKind::FailedVerification: {
      Event e;
      e.device = device.device;
      e.community = device.community;
      e.seq = cursor.next_seq;
      e.device_time_ms = now_ms;
      e.body = DeviceStatus{};
      p.bytes = encode(e);
      p.bytes.resize(p.bytes.size() / 2);  // truncated in transit
      p.bytes.replace(4, 4, "CYE1");
      p.reason = "failed_verification";
      break;
    }
    case BadKind::TypeNotAllowed: {
      bool gate_like = device.kind == DeviceKind::Gate || device.kind == DeviceKind::Door;
      p.bytes = gate_like
                    ? fmt::format(R"({{"seq":{},"ts":{},"type":"meter.reading","body":{{"kind":"water","total":1,"unit":"m3"}}}})",
                                  cursor.next_seq, now_ms)
                    : fmt::format(R"({{"seq":{},"ts":{},"type":"gate.pass","body":{{"credential":"card","subject":"s","direction":"in","decision":"granted"}}}})",
                                  cursor.next_seq, now_ms);
      p.reason = "type_not_allowed";
      break;
    }
  }
  return p;
}

}  // namespace courtyard::devices
