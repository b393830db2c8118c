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

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/metrics.h"
#include "common/mqtt.h"
#include "devices/simulator.h"
#include "http_client.h"
#include "options.h"
#include "process_cpu.h"
#include "raw_broker.h"
#include "scrape.h"

using namespace courtyard;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

struct Args : bench::Load {
  int mqtt_port = 1883, kafka_port = 9092, http_port = 8080;
  std::string password_file, token;
};

using bench::RawResult;

// One run of the fleet through the whole stack at `rate` for `seconds`, on communities of its own.
struct Step {
  double offered = 0, published_per_s = 0, sustained = 0, p50_ms = 0, p99_ms = 0;
  std::uint64_t sent = 0, projected = 0;
  std::map<std::string, double> cpu_share;  // of one core, each named process and the fleet, over the step
};

Step run_courtyard(const Args& a, const std::string& password, double rate, double seconds, int round) {
  devices::SimulatorConfig sim;
  sim.kafka = bench::kafka_as("hub", a.kafka_port, a.password_file);
  sim.mqtt.port = a.mqtt_port;
  sim.mqtt_password = password;
  std::string run = "bench" + std::to_string(::getpid()) + (round > 0 ? "r" + std::to_string(round) : "");
  sim.communities = {run + "-a", run + "-b"};
  sim.devices = a.devices;
  sim.rate = rate;
  sim.duration_s = seconds;
  sim.bad_fraction = 0;
  devices::Simulator simulator(sim);
  if (auto ok = simulator.provision(); !ok) throw std::runtime_error("provisioning: " + ok.error());
  auto before = bench::scrape_histogram(a.http_port, a.token, "courtyard_event_to_projection_seconds");
  std::cerr << "courtyard: " << a.devices << " devices at " << rate << " events/s for " << seconds << " s...\n";
  bench::ProcessCpu cpu(a.pids, "fleet");
  cpu.start();
  auto start = Clock::now();
  auto report = simulator.run(std::stop_token{});
  if (!report) throw std::runtime_error(report.error());
  const double published_s = std::chrono::duration<double>(Clock::now() - start).count();
  Step step;
  step.offered = rate;
  for (const auto& [_, types] : report->valid) {
    for (const auto& [__, n] : types) step.sent += n;
  }
  auto deadline = Clock::now() + 300s;
  while (bench::projected_events(a.http_port, a.token, sim.communities) < step.sent && Clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  step.cpu_share = cpu.shares(secs);
  auto after = bench::scrape_histogram(a.http_port, a.token, "courtyard_event_to_projection_seconds");
  auto delta = bench::between(before.second, after.second);
  step.p50_ms = histogram_quantile(after.first, delta, 0.5) * 1000;
  step.p99_ms = histogram_quantile(after.first, delta, 0.99) * 1000;
  step.published_per_s = static_cast<double>(step.sent) / published_s;
  step.sustained = static_cast<double>(step.sent) / secs;
  step.projected = bench::projected_events(a.http_port, a.token, sim.communities);
  return step;
}

nlohmann::json to_json(const Step& s) {
  return {{"offered_rate", s.offered}, {"published_per_s", s.published_per_s}, {"sent", s.sent},
          {"projected", s.projected},  {"e2e_events_per_s", s.sustained},      {"e2e_p50_ms", s.p50_ms},
          {"e2e_p99_ms", s.p99_ms},    {"cpu_share_of_a_core", s.cpu_share}};
}

// Raises the offered rate by a quarter each step, from `a.rate`, after a 5 s warm-up, until the
// lag grows (a step's events take more than 3% longer to project than to publish), they are not
// all projected, or the fleet cannot publish at the rate. Two ceilings: the highest step with
// p99 <= `max_p99_ms` (latency), and the highest the lag did not grow at (throughput). Each step
// on fresh communities.
int find_ceiling(const Args& a, const std::string& password, const RawResult& raw_max, double max_p99_ms) {
  std::cerr << "warm-up...\n";
  run_courtyard(a, password, a.rate, 5, 0);
  std::vector<Step> steps;
  std::string stopped;
  for (double rate = a.rate; rate < 200'000 && stopped.empty(); rate *= 1.25) {
    steps.push_back(run_courtyard(a, password, rate, a.seconds, static_cast<int>(steps.size()) + 1));
    const auto& s = steps.back();
    std::cerr << "  sustained " << s.sustained << "/s, p99 " << s.p99_ms << " ms\n";
    if (s.projected != s.sent) stopped = "events not all projected";
    else if (s.published_per_s < 0.95 * rate) stopped = "the fleet could not publish at the rate";
    else if (s.sustained < 0.97 * s.published_per_s) stopped = "lag grows";
  }
  std::printf("\n%-12s %12s %12s %10s %10s", "offered/s", "published/s", "sustained/s", "p50 ms", "p99 ms");
  for (const auto& [name, _] : steps.front().cpu_share) std::printf(" %10s", (name + " %").c_str());
  std::printf("\n");
  double latency_ceiling = 0, throughput_ceiling = 0;
  for (const auto& s : steps) {
    const bool kept_up = &s != &steps.back();
    if (kept_up) throughput_ceiling = s.sustained;
    if (kept_up && s.p99_ms <= max_p99_ms) latency_ceiling = s.sustained;
    std::printf("%-12.0f %12.0f %12.0f %10.2f %10.2f", s.offered, s.published_per_s, s.sustained, s.p50_ms, s.p99_ms);
    for (const auto& [_, share] : s.cpu_share) std::printf(" %10.1f", 100 * share);
    std::printf("  %s\n", kept_up ? "" : stopped.c_str());
  }
  std::printf("\nevery projection and rule on; raw Mosquitto QoS 1 unpaced in the same run: %.0f/s\n", raw_max.rate);
  std::printf("ceiling with p99 <= %.0f ms: %.0f events/s (%.3f of the raw broker)\n", max_p99_ms, latency_ceiling,
              latency_ceiling / raw_max.rate);
  std::printf("ceiling before the lag grows: %.0f events/s (%.3f of the raw broker)\n", throughput_ceiling,
              throughput_ceiling / raw_max.rate);
  nlohmann::json out{{"latency_ceiling_per_s", latency_ceiling}, {"throughput_ceiling_per_s", throughput_ceiling},
                     {"raw_max_per_s", raw_max.rate}, {"max_p99_ms", max_p99_ms}, {"stopped", stopped},
                     {"steps", nlohmann::json::array()}};
  for (const auto& s : steps) out["steps"].push_back(to_json(s));
  std::cout << out.dump() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  bool ceiling = false;
  double max_p99_ms = 100;
  CLI::App app{"bench_e2e: Courtyard end to end next to the raw broker (run through bench/e2e)"};
  bench::add_service_options(app, a);
  bench::add_load_options(app, a);
  app.add_flag("--find-ceiling", ceiling, "raise the rate a quarter at a time until the p99 or the lag gives way");
  app.add_option("--max-p99-ms", max_p99_ms, "with --find-ceiling: the p99 a step may reach");
  CLI11_PARSE(app, argc, argv);
  auto password = read_secret(a.password_file);
  if (!password) {
    std::cerr << password.error() << "\n";
    return 1;
  }

  try {
    std::cerr << "baseline: raw Mosquitto QoS 1, " << a.raw_messages << " messages as fast as possible...\n";
    auto raw_max = bench::raw_mosquitto(a.mqtt_port, *password, a.raw_messages, 0);
    if (ceiling) return find_ceiling(a, *password, raw_max, max_p99_ms);
    std::cerr << "baseline: raw Mosquitto QoS 1 at " << a.rate << "/s...\n";
    auto raw_paced = bench::raw_mosquitto(a.mqtt_port, *password, static_cast<std::size_t>(a.rate * std::min(a.seconds, 10.0)), a.rate);
    const Step s = run_courtyard(a, *password, a.rate, a.seconds, 0);

    std::printf("\n%-52s %12s %10s %10s\n", "measure (same machine, same run)", "events/s", "p50 ms", "p99 ms");
    std::printf("%-52s %12.0f %10.2f %10.2f\n", "raw Mosquitto QoS 1 pub->sub, unpaced", raw_max.rate, raw_max.p50_ms, raw_max.p99_ms);
    std::printf("%-52s %12.0f %10.2f %10.2f\n", ("raw Mosquitto QoS 1 pub->sub, paced at " + std::to_string(static_cast<int>(a.rate)) + "/s").c_str(),
                raw_paced.rate, raw_paced.p50_ms, raw_paced.p99_ms);
    std::printf("%-52s %12.0f %10.2f %10.2f\n", "courtyard device publish -> projection commit", s.sustained, s.p50_ms, s.p99_ms);
    std::printf("\nCPU over the run, share of one core:");
    for (const auto& [name, share] : s.cpu_share) std::printf(" %s %.1f%%", name.c_str(), 100 * share);
    std::printf("\nprojected %llu of %llu events sent; courtyard sustained %.1f%% of the offered rate, latency p50 %.1fx the raw broker's at that rate\n",
                static_cast<unsigned long long>(s.projected), static_cast<unsigned long long>(s.sent), 100 * s.sustained / a.rate,
                raw_paced.p50_ms > 0 ? s.p50_ms / raw_paced.p50_ms : 0);
    auto summary = to_json(s);
    summary.update({{"seconds", a.seconds}, {"devices", a.devices}, {"raw_max_per_s", raw_max.rate},
                    {"raw_paced_p50_ms", raw_paced.p50_ms}, {"raw_paced_p99_ms", raw_paced.p99_ms},
                    {"latency_resolution", "histogram buckets; device timestamps have 1 ms resolution"}});
    std::cout << summary.dump() << "\n";
    return s.projected == s.sent ? 0 : 2;
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
}
