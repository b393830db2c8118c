#include "devices/simulator.h"

#include <thread>

#include <spdlog/spdlog.h>

#include "devices/provisioner.h"
#include "generator.h"

namespace courtyard::devices {
namespace {

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

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
  auto passwords = (*provisioner)->add(requests);
  if (!passwords) return std::unexpected(passwords.error());
  for (std::size_t i = 0; i < fleet_.size(); ++i) fleet_[i].password = (*passwords)[i];
  return {};
}

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
  for (auto& c : cursors) c.boot = config_.boot;
  SimReport report;
  const auto start = std::chrono::steady_clock::now();
  const auto interval = std::chrono::duration<double>(1.0 / std::max(config_.rate, 0.001));
  const double bad_every = config_.bad_fraction > 0 ? 1.0 / config_.bad_fraction : 0;
  double bad_credit = 0;
  int bad_kind = 0;
  for (std::uint64_t i = 0;; ++i) {
    if (stop.stop_requested()) break;
    if (config_.events && i >= config_.events) break;
    auto due = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(interval * static_cast<double>(i));
    if (config_.duration_s > 0 && due - start > std::chrono::duration<double>(config_.duration_s)) break;
    std::this_thread::sleep_until(due);
    std::size_t d = i % fleet_.size();
    const auto& device = fleet_[d].registration;
    std::string topic = telemetry_topic(device);
    Payload p;
    // Bad payloads are spread evenly (every 1/bad_fraction-th), cycling through every kind.
    bad_credit += 1;
    if (bad_every > 0 && bad_credit >= bad_every) {
      bad_credit -= bad_every;
      p = gen.bad(device, cursors[d], wall_ms(), static_cast<BadKind>(bad_kind++ % kBadKinds));
      report.bad.push_back({device.device.str(), topic, p.bytes, p.reason});
    } else {
      p = gen.valid(device, cursors[d], wall_ms(), gen.uniform() < config_.flatbuffer_fraction);
      ++report.valid[device.device.str()][p.type];
      if (track_latency) {
        report.publish_ns[device.device.str() + "/" + std::to_string(cursors[d].boot) + "/" + std::to_string(p.seq)] =
            std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
      }
    }
    if (auto ok = clients[d]->publish(topic, p.bytes, 1); !ok) {
      return std::unexpected("publish from " + device.device.str() + ": " + ok.error());
    }
    ++report.sent;
  }
  for (auto& c : clients) {
    if (!c->wait_all_acked(std::chrono::seconds(30))) return std::unexpected(std::string("PUBACKs missing after 30 s"));
    report.acked += c->acked();
    report.refused += c->refused();
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace courtyard::devices
