#include "devices/simulator.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "devices/provisioner.h"
#include "generator.h"
#include "processors/vision.h"

namespace courtyard::devices {
namespace {

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Gate scenes: a camera and the gate it watches, and the pictures it takes.
struct Scenes {
  struct Pair {
    std::size_t camera, gate;
    bool vehicles;
  };
  std::vector<Pair> pairs;
  std::string one_person, two_people;
  std::uint64_t next = 0;

  static std::expected<Scenes, std::string> make(const SimulatorConfig& config, const std::vector<SimDevice>& fleet) {
    Scenes scenes;
    if (config.scenes_per_minute <= 0) return scenes;
    scenes.one_person = read_file(std::filesystem::path(config.photos_dir) / "messi5.jpg");
    if (scenes.one_person.empty()) {
      return std::unexpected("no messi5.jpg in " + config.photos_dir + ": install opencv-doc (scripts/setup does)");
    }
    // opencv-doc has no photograph of two people whose faces the detector finds: the same one twice.
    auto two = processors::side_by_side_jpeg({scenes.one_person, scenes.one_person});
    if (!two) return std::unexpected(two.error());
    scenes.two_people = std::move(*two);
    std::map<std::string, std::size_t> index;
    for (std::size_t i = 0; i < fleet.size(); ++i) index[fleet[i].registration.device.str()] = i;
    for (std::size_t i = 0; i < fleet.size(); ++i) {
      const auto& id = fleet[i].registration.device.str();
      auto at = id.rfind("-camera-");
      if (fleet[i].registration.kind != schemas::DeviceKind::Camera || at == std::string::npos) continue;
      const int n = std::stoi(id.substr(at + 8));
      const bool vehicles = n % 2 == 0;
      auto gate = index.find(id.substr(0, at) + (vehicles ? "-vehicle_gate-" : "-gate-") + id.substr(at + 8));
      if (gate != index.end()) scenes.pairs.push_back({i, gate->second, vehicles});
    }
    if (scenes.pairs.empty()) return std::unexpected(std::string("the fleet has no camera with a gate under it"));
    return scenes;
  }
};

const std::string& plate_text(std::uint64_t n) {
  const auto& plates = processors::legible_plates();
  return plates[n % plates.size()];
}

}  // namespace

const std::vector<std::string>& known_anomalies() {
  static const std::vector<std::string> kNames = {"fever", "fall",    "sos",    "leak", "smoke",  "gas",
                                                  "spo2",  "battery", "tamper", "door", "offline"};
  return kNames;
}

Simulator::Simulator(SimulatorConfig config) : config_(std::move(config)) {
  if (config_.communities.empty()) config_.communities = {"sunny-garden"};
  for (auto& r : make_fleet(config_, wall_ms())) fleet_.push_back({std::move(r), {}});
}

Simulator::~Simulator() = default;

std::expected<void, std::string> Simulator::provision() {
  auto provisioner = Provisioner::connect({config_.kafka, config_.mqtt, config_.mqtt_password});
  if (!provisioner) return std::unexpected(provisioner.error());
  std::vector<NewDevice> requests;
  for (const auto& d : fleet_) requests.push_back({d.registration, {}});
  // The simulator owns its fleet: a fleet provisioned by an earlier run gets new passwords.
  auto passwords = (*provisioner)->add(requests, IfExists::Rotate);
  if (!passwords) return std::unexpected(passwords.error().detail);
  for (std::size_t i = 0; i < fleet_.size(); ++i) fleet_[i].password = (*passwords)[i];
  return {};
}

// How long a device waits for a broker that went away (it reconnects by itself) before giving up.
constexpr std::chrono::seconds kBrokerPatience{60};

std::expected<SimReport, std::string> Simulator::run(std::stop_token stop, bool track_latency) {
  std::vector<std::unique_ptr<MqttClient>> clients;
  for (const auto& d : fleet_) {
    MqttClient::Options options;
    options.client_id = d.registration.device.str();
    options.username = d.registration.device.str();
    options.password = d.password;
    auto c = MqttClient::connect(config_.mqtt.host, config_.mqtt.port, options, std::chrono::seconds(10));
    if (!c) return std::unexpected("device " + d.registration.device.str() + ": " + c.error());
    clients.push_back(std::move(*c));
  }
  spdlog::info("simulator: {} devices connected", clients.size());

  Generator gen(config_.seed);
  std::vector<DeviceCursor> cursors(fleet_.size());
  const auto boot = config_.boot ? config_.boot : static_cast<std::uint32_t>((wall_ms() - 1577836800000) / 1000);
  for (auto& c : cursors) c.boot = boot;
  SimReport report;
  // Incidents first, each from the first device of a kind that can report it.
  std::optional<std::size_t> silenced;
  std::set<std::size_t> in_incident;  // they only send heartbeats afterwards, so nothing clears the incident
  auto first_of = [&](schemas::DeviceKind kind, std::size_t skip = 0,
                      std::optional<schemas::SensorKind> sensor = std::nullopt) -> std::optional<std::size_t> {
    for (std::size_t i = 0; i < fleet_.size(); ++i) {
      const auto& r = fleet_[i].registration;
      if (r.kind != kind || in_incident.contains(i) || (sensor && sensor_of(r) != *sensor)) continue;
      if (skip-- == 0) return i;
    }
    return std::nullopt;
  };
  for (const auto& anomaly : config_.anomalies) {
    using K = schemas::DeviceKind;
    std::optional<std::size_t> d;
    schemas::Body body;
    if (anomaly == "fever") {
      d = first_of(K::Gate);
      schemas::GatePass g;
      g.credential = schemas::Credential::Face;
      g.subject = "subj-fever";
      g.temperature_c = 38.6;
      body = g;
    } else if (anomaly == "fall" || anomaly == "sos") {
      d = first_of(K::Wearable);
      body = schemas::WearableAlarm{anomaly == "fall" ? schemas::AlarmKind::Fall : schemas::AlarmKind::Sos, false};
    } else if (anomaly == "spo2") {
      d = first_of(K::Wearable);
      schemas::WearableVitals v;
      v.spo2_pct = 89;
      v.heart_rate_bpm = 104;
      body = v;
    } else if (anomaly == "leak" || anomaly == "smoke" || anomaly == "gas" || anomaly == "door") {
      auto sensor = anomaly == "leak"    ? schemas::SensorKind::WaterLeak
                    : anomaly == "smoke" ? schemas::SensorKind::Smoke
                    : anomaly == "gas"   ? schemas::SensorKind::Gas
                                         : schemas::SensorKind::Door;
      d = first_of(K::HomeSensor, 0, sensor);
      body = schemas::HomeSensor{sensor, anomaly == "leak" ? "leak" : anomaly == "door" ? "open" : "alarm", {}};
    } else if (anomaly == "battery" || anomaly == "tamper") {
      d = first_of(anomaly == "battery" ? K::Meter : K::Camera);
      schemas::DeviceStatus st;
      if (anomaly == "battery") st.battery_pct = 8;
      else st.tamper = true;
      body = st;
    } else if (anomaly == "offline") {
      silenced = first_of(K::Meter);
      if (silenced) report.injected.push_back("offline: " + fleet_[*silenced].registration.device.str());
      continue;
    } else {
      return std::unexpected("unknown anomaly " + anomaly);
    }
    if (!d) return std::unexpected("no device in the fleet can report " + anomaly);
    if (anomaly != "fever") in_incident.insert(*d);  // a gate goes on letting people through
    schemas::Event e;
    e.boot = cursors[*d].boot;
    e.seq = cursors[*d].next_seq++;
    e.device_time_ms = wall_ms();
    e.body = body;
    nlohmann::json payload{{"seq", e.seq}, {"boot", e.boot}, {"ts", e.device_time_ms},
                           {"type", schemas::type_name(e.body)}, {"body", schemas::body_to_json(e.body)}};
    const auto& device = fleet_[*d].registration;
    if (auto ok = clients[*d]->publish_when_connected(telemetry_topic(device), payload.dump(), 1, kBrokerPatience); !ok) {
      return std::unexpected(ok.error());
    }
    ++report.valid[device.device.str()][std::string(schemas::type_name(e.body))];
    ++report.sent;
    report.injected.push_back(anomaly + ": " + device.device.str());
  }

  auto scenes = Scenes::make(config_, fleet_);
  if (!scenes) return std::unexpected(scenes.error());
  // A pass, then the camera's picture of whoever went through: the pass waits for its PUBACK, so
  // the broker hands ingest the two in that order.
  auto scene = [&]() -> std::expected<void, std::string> {
    const std::uint64_t k = scenes->next++;
    const auto& pair = scenes->pairs[k % scenes->pairs.size()];
    const auto& gate = fleet_[pair.gate].registration;
    const auto& camera = fleet_[pair.camera].registration;
    schemas::Event pass;
    pass.boot = cursors[pair.gate].boot;
    pass.seq = cursors[pair.gate].next_seq++;
    pass.device_time_ms = wall_ms();
    std::string jpeg;
    if (pair.vehicles) {
      const bool mismatch = k % 8 == 7;
      pass.body = schemas::VehiclePass{schemas::plate_token(config_.plate_key, plate_text(k)), schemas::Direction::In,
                                       schemas::Decision::Granted};
      jpeg = processors::render_plate_jpeg(plate_text(mismatch ? k + 3 : k));
      report.plate_mismatch_scenes += mismatch;
    } else {
      const bool tailgating = k % 5 == 4;
      schemas::GatePass g;
      g.credential = schemas::Credential::Card;
      g.subject = fmt::format("subj-{:05}", k % 2000);
      pass.body = g;
      jpeg = tailgating ? scenes->two_people : scenes->one_person;
      report.tailgating_scenes += tailgating;
    }
    auto acked = clients[pair.gate]->publish_and_wait(telemetry_topic(gate), payload_json(pass), 1, std::chrono::seconds(10));
    if (!acked) return std::unexpected("publish from " + gate.device.str() + ": " + acked.error());
    ++(*acked < 128 ? report.acked : report.refused);  // a waited-for publish is not in the client's counts
    ++report.valid[gate.device.str()][std::string(schemas::type_name(pass.body))];
    schemas::Event snapshot;
    snapshot.boot = cursors[pair.camera].boot;
    snapshot.seq = cursors[pair.camera].next_seq++;
    snapshot.device_time_ms = wall_ms();
    snapshot.body = schemas::CameraSnapshot{gate.device.str(), std::move(jpeg), "", 0, 0, 0};
    if (auto ok = clients[pair.camera]->publish(snapshot_topic(camera), payload_json(snapshot), 1); !ok) {
      return std::unexpected("publish from " + camera.device.str() + ": " + ok.error());
    }
    ++report.valid[camera.device.str()]["camera.snapshot"];
    report.sent += 2;
    ++report.scenes;
    return {};
  };
  std::set<std::size_t> watched;
  for (const auto& pair : scenes->pairs) watched.insert(pair.gate);
  const auto scene_interval = std::chrono::duration<double>(60.0 / std::max(config_.scenes_per_minute, 1e-9));

  const auto start = std::chrono::steady_clock::now();
  const auto interval = std::chrono::duration<double>(1.0 / std::max(config_.rate, 0.001));
  const double bad_every = config_.bad_fraction > 0 ? 1.0 / config_.bad_fraction : 0;
  double bad_credit = 0;
  int bad_kind = 0;
  std::uint64_t turn = 0;
  for (std::uint64_t i = 0;; ++i) {
    if (stop.stop_requested()) break;
    if (config_.events && i >= config_.events) break;
    auto due = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(interval * static_cast<double>(i));
    if (config_.duration_s > 0 && due - start > std::chrono::duration<double>(config_.duration_s)) break;
    // Asleep only when a millisecond or more ahead: at 10,000 events/s a sleep before every
    // payload cost the fleet more CPU than publishing them (a payload goes at most 1 ms early).
    if (due - std::chrono::steady_clock::now() >= std::chrono::milliseconds(1)) std::this_thread::sleep_until(due);
    if (!scenes->pairs.empty() &&
        std::chrono::steady_clock::now() - start >= scene_interval * static_cast<double>(scenes->next)) {
      if (auto ok = scene(); !ok) return std::unexpected(ok.error());
    }
    // Valid payloads go round the fleet; bad ones are spread evenly in time (every
    // 1/bad_fraction-th), cycling through every kind, from a device picked at random, and take
    // nobody's turn (taking a fixed turn would silence the same few devices every time).
    bad_credit += 1;
    const bool bad = bad_every > 0 && bad_credit >= bad_every;
    std::size_t d = 0;
    if (bad) {
      bad_credit -= bad_every;
      d = gen.pick(fleet_.size());
    } else {
      d = turn++ % fleet_.size();
    }
    if (silenced && d == *silenced) d = (d + 1) % fleet_.size();
    const auto& device = fleet_[d].registration;
    std::string topic = telemetry_topic(device);
    Payload p;
    if (bad) {
      p = gen.bad(device, cursors[d], wall_ms(), static_cast<BadKind>(bad_kind++ % kBadKinds));
      report.bad.push_back({device.device.str(), topic, p.bytes, p.reason});
    } else {
      // A gate under a camera lets people through in scenes only, so every pass there has its picture.
      const bool quiet = in_incident.contains(d) || watched.contains(d);
      p = quiet ? gen.heartbeat(device, cursors[d], wall_ms())
                                  : gen.valid(device, cursors[d], wall_ms(), gen.uniform() < config_.flatbuffer_fraction);
      ++report.valid[device.device.str()][p.type];
      if (track_latency) {
        report.publish_ns[device.device.str() + "/" + std::to_string(cursors[d].boot) + "/" + std::to_string(p.seq)] =
            std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
      }
    }
    if (auto ok = clients[d]->publish_when_connected(topic, p.bytes, 1, kBrokerPatience); !ok) {
      return std::unexpected("publish from " + device.device.str() + ": " + ok.error());
    }
    ++report.sent;
  }
  for (auto& c : clients) {
    if (!c->wait_all_acked(kBrokerPatience)) return std::unexpected(std::string("PUBACKs missing after 60 s"));
    report.acked += c->acked();
    report.refused += c->refused();
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace courtyard::devices
