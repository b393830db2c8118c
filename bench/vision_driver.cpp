// Vision benchmark driver. Measures, in one run on one machine:
//   1. one worker's analysis of each kind of gate snapshot (a face, two faces, a plate, nobody):
//      snapshots/s and latency percentiles, next to decoding and re-encoding the same JPEG (the
//      floor any image handling pays) measured in the same run;
//   2. through the whole stack (bench/vision starts it): the event path's publish -> projection
//      latency with a fleet's telemetry alone, then with gate scenes (a pass and a snapshot) on
//      top, and the vision processor's snapshots/s and ingest -> analysis latency meanwhile.
// Prints a table and a JSON summary. Asserts nothing about speed.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/metrics.h"
#include "common/mqtt.h"
#include "common/random.h"
#include "devices/simulator.h"
#include "http_client.h"
#include "options.h"
#include "processors/vision.h"
#include "processors/vision_worker.h"
#include "scrape.h"

using namespace courtyard;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  int mqtt_port = 1883, kafka_port = 9092, http_port = 8080;
  std::string password_file, token, plate_key_file;
  std::string photos_dir = "/usr/share/doc/opencv-doc/examples/data";
  int iterations = 40;           // per snapshot kind, in process
  double rate = 500;             // telemetry events/s through the stack
  double seconds = 20;           // per phase
  double scenes_per_minute = 600;
  std::size_t devices = 200;
};

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

struct Timing {
  std::string what;
  double per_s, p50_ms, p99_ms;
};

template <class F>
Timing time_it(const std::string& what, int n, F&& f) {
  std::vector<double> ms;
  auto start = Clock::now();
  for (int i = 0; i < n; ++i) {
    auto t = Clock::now();
    f();
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t).count());
  }
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  return {what, n / secs, bench::percentile(ms, 0.5), bench::percentile(ms, 0.99)};
}

struct Phase {
  double events_per_s = 0, p50_ms = 0, p99_ms = 0;
  std::uint64_t scenes = 0;
  double snapshots_per_s = 0, vision_p50_ms = 0, vision_p99_ms = 0;
};

std::uint64_t analysed(int port, const std::string& token, const std::string& community) {
  auto r = test::http_get("127.0.0.1", port, "/api/v1/cameras?limit=1000&community=" + community, token);
  if (!r || r->status != 200) return 0;
  std::uint64_t n = 0;
  const auto page = nlohmann::json::parse(r->body);  // kept: a range-for over a temporary's member dangles
  for (const auto& c : page["items"]) n += c["analysed"].get<std::uint64_t>();
  return n;
}

Phase run_phase(const Args& a, const std::string& password, const std::string& plate_key, const std::string& community,
                double scenes_per_minute) {
  devices::SimulatorConfig sim;
  sim.kafka = bench::kafka_as("hub", a.kafka_port, a.password_file);
  sim.mqtt.port = a.mqtt_port;
  sim.mqtt_password = password;
  sim.communities = {community};
  sim.devices = a.devices;
  sim.rate = a.rate;
  sim.duration_s = a.seconds;
  sim.scenes_per_minute = scenes_per_minute;
  sim.photos_dir = a.photos_dir;
  sim.plate_key = plate_key;
  devices::Simulator simulator(sim);
  if (auto ok = simulator.provision(); !ok) throw std::runtime_error("provisioning: " + ok.error());
  auto events_before = bench::scrape_histogram(a.http_port, a.token, "courtyard_event_to_projection_seconds");
  auto vision_before = bench::scrape_histogram(a.http_port, a.token, "courtyard_vision_latency_seconds");
  auto start = Clock::now();
  auto report = simulator.run(std::stop_token{});
  if (!report) throw std::runtime_error(report.error());
  std::uint64_t valid = 0;
  for (const auto& [_, types] : report->valid) {
    for (const auto& [__, n] : types) valid += n;
  }
  auto deadline = Clock::now() + 600s;
  while (bench::projected_events(a.http_port, a.token, {community}) < valid && Clock::now() < deadline) std::this_thread::sleep_for(20ms);
  const double event_secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::cerr << "  " << valid << " events sent, " << bench::projected_events(a.http_port, a.token, {community}) << " projected; "
            << report->scenes << " scenes\n";
  // A hub with vision.enabled = false (to measure what carrying the images alone costs) analyses nothing.
  const bool vision_on = test::http_get_text(a.http_port, "/metrics", a.token).find("courtyard_vision_") != std::string::npos;
  while (vision_on && analysed(a.http_port, a.token, community) < report->scenes && Clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  const double vision_secs = std::chrono::duration<double>(Clock::now() - start).count();
  auto events_after = bench::scrape_histogram(a.http_port, a.token, "courtyard_event_to_projection_seconds");
  auto vision_after = bench::scrape_histogram(a.http_port, a.token, "courtyard_vision_latency_seconds");
  auto events = bench::between(events_before.second, events_after.second);
  auto vision = bench::between(vision_before.second, vision_after.second);
  Phase p;
  p.events_per_s = static_cast<double>(valid) / event_secs;
  p.p50_ms = histogram_quantile(events_after.first, events, 0.5) * 1000;
  p.p99_ms = histogram_quantile(events_after.first, events, 0.99) * 1000;
  p.scenes = report->scenes;
  if (report->scenes && vision_on) {
    p.snapshots_per_s = static_cast<double>(report->scenes) / vision_secs;
    p.vision_p50_ms = histogram_quantile(vision_after.first, vision, 0.5) * 1000;
    p.vision_p99_ms = histogram_quantile(vision_after.first, vision, 0.99) * 1000;
  }
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  CLI::App app{"bench_vision: gate snapshot analysis alone and beside the event path (run through bench/vision)"};
  bench::add_service_options(app, a);
  app.add_option("--plate-key-file", a.plate_key_file, "the hub's plate key (its var/secrets/plate-key)")->required();
  app.add_option("--photos", a.photos_dir, "OpenCV's sample photographs");
  app.add_option("--iterations", a.iterations, "analyses per snapshot kind, in process");
  app.add_option("--rate", a.rate, "telemetry events/s through the stack");
  app.add_option("--seconds", a.seconds, "length of each phase through the stack");
  app.add_option("--scenes-per-minute", a.scenes_per_minute, "gate scenes (pass + snapshot) in the second phase");
  app.add_option("--devices", a.devices, "fleet size");
  CLI11_PARSE(app, argc, argv);
  auto password = read_secret(a.password_file);
  auto plate_key = read_or_create_secret(a.plate_key_file);  // the hub makes it, unless its vision is off
  if (!password || !plate_key) {
    std::cerr << (password ? plate_key.error() : password.error()) << "\n";
    return 1;
  }

  // 1. In process: one worker, each kind of snapshot.
  const std::string face = read_file(std::filesystem::path(a.photos_dir) / "messi5.jpg");
  const std::string nobody = read_file(std::filesystem::path(a.photos_dir) / "building.jpg");
  if (face.empty() || nobody.empty()) {
    std::cerr << "sample photographs missing from " << a.photos_dir << " (opencv-doc)\n";
    return 1;
  }
  const std::string two = *processors::side_by_side_jpeg({face, face});
  const std::string plate = processors::render_plate_jpeg("AB123CD");
  auto analyzer = processors::SnapshotAnalyzer::open({}, *plate_key);
  if (!analyzer) {
    std::cerr << analyzer.error() << "\n";
    return 1;
  }
  auto event_of = [](const std::string& jpeg) {
    schemas::Event e;
    e.event_id = 1;
    e.body = schemas::CameraSnapshot{"gate", jpeg, "", 0, 0, 0};
    return e;
  };
  std::vector<std::pair<Timing, Timing>> kinds;  // analysis, decode+encode floor
  for (const auto& [name, jpeg] : std::vector<std::pair<std::string, std::string>>{
           {"one face (messi5.jpg, 548x342)", face}, {"two faces (1096x342)", two},
           {"rendered plate (640x480)", plate}, {"nobody (building.jpg)", nobody}}) {
    auto e = event_of(jpeg);
    std::cerr << "in process: " << name << "...\n";
    auto analysis = time_it(name, a.iterations, [&] { (void)(*analyzer)->analyze(e); });
    auto floor = time_it(name, a.iterations, [&] { (void)processors::side_by_side_jpeg({jpeg}); });
    kinds.emplace_back(analysis, floor);
  }

  // 2. Through the stack: the event path alone, then with gate scenes.
  const std::string run = "vbench" + std::to_string(::getpid());
  std::cerr << "stack: " << a.devices << " devices at " << a.rate << " events/s for " << a.seconds << " s, no snapshots...\n";
  auto alone = run_phase(a, *password, *plate_key, run + "-a", 0);
  std::cerr << "stack: the same with " << a.scenes_per_minute << " gate scenes/min...\n";
  auto with = run_phase(a, *password, *plate_key, run + "-b", a.scenes_per_minute);

  std::printf("\n%-44s %12s %10s %10s %16s\n", "in process, one worker", "snapshots/s", "p50 ms", "p99 ms", "x decode+encode");
  nlohmann::json in_process = nlohmann::json::array();
  for (const auto& [t, floor] : kinds) {
    std::printf("%-44s %12.1f %10.1f %10.1f %16.1f\n", t.what.c_str(), t.per_s, t.p50_ms, t.p99_ms,
                floor.p50_ms > 0 ? t.p50_ms / floor.p50_ms : 0);
    in_process.push_back({{"kind", t.what}, {"per_s", t.per_s}, {"p50_ms", t.p50_ms}, {"p99_ms", t.p99_ms},
                          {"decode_encode_p50_ms", floor.p50_ms}});
  }
  std::printf("\n%-44s %12s %10s %10s\n", "through the stack", "per s", "p50 ms", "p99 ms");
  std::printf("%-44s %12.0f %10.2f %10.2f\n", "events publish -> projection, alone", alone.events_per_s, alone.p50_ms, alone.p99_ms);
  std::printf("%-44s %12.0f %10.2f %10.2f\n", "events publish -> projection, with scenes", with.events_per_s, with.p50_ms, with.p99_ms);
  std::printf("%-44s %12.1f %10.1f %10.1f\n", "snapshots ingest -> analysis in the log", with.snapshots_per_s, with.vision_p50_ms,
              with.vision_p99_ms);
  std::printf("\n%llu scenes; event path p50 with snapshots %.2fx alone, p99 %.2fx\n",
              static_cast<unsigned long long>(with.scenes), alone.p50_ms > 0 ? with.p50_ms / alone.p50_ms : 0,
              alone.p99_ms > 0 ? with.p99_ms / alone.p99_ms : 0);
  nlohmann::json summary{{"in_process", in_process},
                         {"rate", a.rate},
                         {"seconds", a.seconds},
                         {"scenes_per_minute", a.scenes_per_minute},
                         {"events_alone", {{"per_s", alone.events_per_s}, {"p50_ms", alone.p50_ms}, {"p99_ms", alone.p99_ms}}},
                         {"events_with_scenes", {{"per_s", with.events_per_s}, {"p50_ms", with.p50_ms}, {"p99_ms", with.p99_ms}}},
                         {"snapshots", {{"scenes", with.scenes}, {"per_s", with.snapshots_per_s}, {"p50_ms", with.vision_p50_ms},
                                        {"p99_ms", with.vision_p99_ms}}}};
  std::cout << summary.dump() << "\n";
  return 0;
}
