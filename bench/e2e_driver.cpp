// End-to-end benchmark driver. Measures, in one run on one machine:
//   1. the raw Mosquitto QoS 1 pub->sub rate and latency (the peer baseline);
//   2. Courtyard's sustained events/s and device-publish -> projection-commit latency, with a
//      simulated fleet publishing at a chosen rate through MQTT, ingest, Kafka and the hub.
// Prints a table and a JSON summary. bench/e2e starts the services, hub and ingest around it.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/metrics.h"
#include "common/mqtt.h"
#include "devices/simulator.h"
#include "http_client.h"
#include "options.h"
#include "scrape.h"

using namespace courtyard;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  int mqtt_port = 1883, kafka_port = 9092, http_port = 8080;
  std::string password_file, token;
  double rate = 2000;
  double seconds = 20;
  std::size_t devices = 300;
  std::size_t raw_messages = 50000;
};

struct RawResult {
  double rate, p50_ms, p99_ms;
};

// One publisher, one subscriber, QoS 1, ~200-byte payloads carrying their send time.
RawResult raw_mosquitto(const Args& a, const std::string& password, std::size_t n, double rate) {
  MqttClient::Options o;
  o.username = "courtyard-service";
  o.password = password;
  std::mutex mu;
  std::vector<double> latencies;
  latencies.reserve(n);
  std::atomic<std::size_t> received{0};
  MqttClient::Options so = o;
  so.handler = [&](const MqttMessage& m) {
    auto sent = std::stoll(m.payload.substr(0, m.payload.find(' ')));
    double ms = static_cast<double>(Clock::now().time_since_epoch().count() - sent) / 1e6;
    std::lock_guard lock(mu);
    latencies.push_back(ms);
    ++received;
    return Delivery::Taken;
  };
  auto sub = MqttClient::connect("127.0.0.1", a.mqtt_port, so, 10s);
  auto pub = MqttClient::connect("127.0.0.1", a.mqtt_port, o, 10s);
  if (!sub || !pub) throw std::runtime_error("raw bench: cannot connect");
  std::string topic = "courtyard/bench/raw-" + std::to_string(::getpid());
  if (!(*sub)->subscribe(topic, 1, 10s)) throw std::runtime_error("raw bench: subscribe failed");
  std::string pad(180, 'x');
  auto start = Clock::now();
  for (std::size_t i = 0; i < n; ++i) {
    if (rate > 0) std::this_thread::sleep_until(start + std::chrono::nanoseconds(static_cast<std::int64_t>(1e9 * static_cast<double>(i) / rate)));
    std::string payload = std::to_string(Clock::now().time_since_epoch().count()) + " " + pad;
    while (!(*pub)->publish(topic, payload, 1)) std::this_thread::sleep_for(1ms);
  }
  auto deadline = Clock::now() + 120s;
  while (received < n && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::lock_guard lock(mu);
  return {static_cast<double>(received) / secs, bench::percentile(latencies, 0.5), bench::percentile(latencies, 0.99)};
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  CLI::App app{"bench_e2e: Courtyard end to end next to the raw broker (run through bench/e2e)"};
  bench::add_service_options(app, a);
  app.add_option("--rate", a.rate, "offered events/s");
  app.add_option("--seconds", a.seconds, "how long");
  app.add_option("--devices", a.devices, "fleet size");
  app.add_option("--raw-messages", a.raw_messages, "messages of the unpaced raw baseline");
  CLI11_PARSE(app, argc, argv);
  auto password = read_secret(a.password_file);
  if (!password) {
    std::cerr << password.error() << "\n";
    return 1;
  }

  std::cerr << "baseline: raw Mosquitto QoS 1, " << a.raw_messages << " messages as fast as possible...\n";
  auto raw_max = raw_mosquitto(a, *password, a.raw_messages, 0);
  std::cerr << "baseline: raw Mosquitto QoS 1 at " << a.rate << "/s...\n";
  auto raw_paced = raw_mosquitto(a, *password, static_cast<std::size_t>(a.rate * std::min(a.seconds, 10.0)), a.rate);

  devices::SimulatorConfig sim;
  sim.kafka = bench::kafka_as("hub", a.kafka_port, a.password_file);
  sim.mqtt.port = a.mqtt_port;
  sim.mqtt_password = *password;
  std::string run = "bench" + std::to_string(::getpid());
  sim.communities = {run + "-a", run + "-b"};
  sim.devices = a.devices;
  sim.rate = a.rate;
  sim.duration_s = a.seconds;
  sim.bad_fraction = 0;
  devices::Simulator simulator(sim);
  if (auto ok = simulator.provision(); !ok) {
    std::cerr << "provisioning: " << ok.error() << "\n";
    return 1;
  }
  auto before = bench::scrape_histogram(a.http_port, a.token, "courtyard_event_to_projection_seconds");
  std::cerr << "courtyard: " << a.devices << " devices at " << a.rate << " events/s for " << a.seconds << " s...\n";
  auto start = Clock::now();
  auto report = simulator.run(std::stop_token{});
  if (!report) {
    std::cerr << report.error() << "\n";
    return 1;
  }
  std::uint64_t valid = 0;
  for (const auto& [_, types] : report->valid) {
    for (const auto& [__, n] : types) valid += n;
  }
  auto deadline = Clock::now() + 300s;
  while (bench::projected_events(a.http_port, a.token, sim.communities) < valid && Clock::now() < deadline) std::this_thread::sleep_for(20ms);
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  auto after = bench::scrape_histogram(a.http_port, a.token, "courtyard_event_to_projection_seconds");
  auto delta = bench::between(before.second, after.second);
  double p50 = histogram_quantile(after.first, delta, 0.5) * 1000, p99 = histogram_quantile(after.first, delta, 0.99) * 1000;
  double e2e_rate = static_cast<double>(valid) / secs;
  std::uint64_t projected = bench::projected_events(a.http_port, a.token, sim.communities);

  std::printf("\n%-52s %12s %10s %10s\n", "measure (same machine, same run)", "events/s", "p50 ms", "p99 ms");
  std::printf("%-52s %12.0f %10.2f %10.2f\n", "raw Mosquitto QoS 1 pub->sub, unpaced", raw_max.rate, raw_max.p50_ms, raw_max.p99_ms);
  std::printf("%-52s %12.0f %10.2f %10.2f\n", ("raw Mosquitto QoS 1 pub->sub, paced at " + std::to_string(static_cast<int>(a.rate)) + "/s").c_str(),
              raw_paced.rate, raw_paced.p50_ms, raw_paced.p99_ms);
  std::printf("%-52s %12.0f %10.2f %10.2f\n", "courtyard device publish -> projection commit", e2e_rate, p50, p99);
  std::printf("\nprojected %llu of %llu events sent; courtyard sustained %.1f%% of the offered rate, latency p50 %.1fx the raw broker's at that rate\n",
              static_cast<unsigned long long>(projected), static_cast<unsigned long long>(valid), 100 * e2e_rate / a.rate,
              raw_paced.p50_ms > 0 ? p50 / raw_paced.p50_ms : 0);
  nlohmann::json summary{{"offered_rate", a.rate},   {"seconds", a.seconds},          {"devices", a.devices},
                         {"sent", valid},            {"projected", projected},         {"e2e_events_per_s", e2e_rate},
                         {"e2e_p50_ms", p50},        {"e2e_p99_ms", p99},             {"raw_max_per_s", raw_max.rate},
                         {"raw_paced_p50_ms", raw_paced.p50_ms}, {"raw_paced_p99_ms", raw_paced.p99_ms},
                         {"latency_resolution", "histogram buckets; device timestamps have 1 ms resolution"}};
  std::cout << summary.dump() << "\n";
  return projected == valid ? 0 : 2;
}
