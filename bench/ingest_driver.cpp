// Ingest alone: device publish -> event readable in Kafka (committed), no hub. Measures, in one
// run on one machine:
//   1. the raw Mosquitto QoS 1 pub->sub rate (the peer baseline);
//   2. ingest's sustained events/s and publish -> committed-in-Kafka latency (p50/p99), split at
//      ingest's stamp into broker-to-ingest and ingest-to-readable, for a simulated fleet at a rate;
//   3. the CPU each named process (--pid ingest=N, mosquitto=N, kafka=N) and the fleet itself used.
// bench/ingest starts the services and ingest (no hub) around it.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <set>
#include <thread>

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "common/kafka.h"
#include "devices/simulator.h"
#include "options.h"
#include "process_cpu.h"
#include "raw_broker.h"
#include "schemas/event.h"

using namespace courtyard;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

struct Args : bench::Load {
  int mqtt_port = 1883, kafka_port = 9092;
  std::string password_file;
};

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Reads the events topic from its end as it is now, read_committed (what the hub would see),
// and records for each event of `communities` the wall time it became readable.
class CommittedReader {
 public:
  CommittedReader(const KafkaConfig& kafka, std::set<std::string> communities) : communities_(std::move(communities)) {
    auto c = make_consumer(kafka, {{"group.id", "courtyard-reader"}, {"enable.auto.commit", "false"},
                                   {"fetch.wait.max.ms", "5"}, {"fetch.error.backoff.ms", "5"}});
    if (!c) throw std::runtime_error("consumer: " + c.error());
    consumer_ = std::move(*c);
    const rd_kafka_metadata_t* md = nullptr;
    if (rd_kafka_metadata(consumer_.get(), 1, nullptr, &md, 10000)) throw std::runtime_error("metadata");
    KafkaPartitionsPtr parts(rd_kafka_topic_partition_list_new(8));
    for (int t = 0; t < md->topic_cnt; ++t) {
      if (kafka.events_topic != md->topics[t].topic) continue;
      for (int i = 0; i < md->topics[t].partition_cnt; ++i) {
        const auto p = md->topics[t].partitions[i].id;
        auto high = query_high_watermark(consumer_.get(), kafka.events_topic, p, 10s);
        if (!high) throw std::runtime_error(high.error());
        rd_kafka_topic_partition_list_add(parts.get(), kafka.events_topic.c_str(), p)->offset = *high;
      }
    }
    rd_kafka_metadata_destroy(md);
    if (rd_kafka_assign(consumer_.get(), parts.get())) throw std::runtime_error("assign");
    thread_ = std::jthread([this](std::stop_token stop) { run(stop); });
  }

  std::uint64_t seen() const { return seen_; }
  Clock::time_point last_seen() const {
    std::lock_guard lock(mu_);
    return last_;
  }
  // Latencies in ms: publish -> readable, publish -> ingest's stamp, stamp -> readable.
  struct Latencies {
    std::vector<double> total, to_ingest, to_kafka;
  };
  Latencies latencies() const {
    std::lock_guard lock(mu_);
    return latencies_;
  }

 private:
  void run(std::stop_token stop) {
    while (!stop.stop_requested()) {
      KafkaMessagePtr m(rd_kafka_consumer_poll(consumer_.get(), 50));
      if (!m || m->err || !m->key) continue;
      if (!communities_.contains(std::string(static_cast<const char*>(m->key), m->key_len))) continue;
      const auto now = wall_ms();
      auto e = schemas::decode(std::string_view(static_cast<const char*>(m->payload), m->len));
      if (!e || std::holds_alternative<schemas::DeviceRegistered>(e->body)) continue;
      std::lock_guard lock(mu_);
      latencies_.total.push_back(static_cast<double>(now - e->device_time_ms));
      latencies_.to_ingest.push_back(static_cast<double>(e->ingest_time_ms - e->device_time_ms));
      latencies_.to_kafka.push_back(static_cast<double>(now - e->ingest_time_ms));
      last_ = Clock::now();
      ++seen_;
    }
  }

  std::set<std::string> communities_;
  KafkaPtr consumer_;
  mutable std::mutex mu_;
  Latencies latencies_;
  Clock::time_point last_ = Clock::now();
  std::atomic<std::uint64_t> seen_{0};
  std::jthread thread_;
};

struct Step {
  double offered = 0, published_per_s = 0, sustained = 0;
  double p50_ms = 0, p99_ms = 0, to_ingest_p99_ms = 0, to_kafka_p50_ms = 0, to_kafka_p99_ms = 0;
  std::uint64_t sent = 0, readable = 0;
  std::map<std::string, double> cpu_share;  // of one core, over the step
  double seconds = 0;
};

Step run_ingest(const Args& a, const std::string& password, double rate, double seconds, int round) {
  devices::SimulatorConfig sim;
  sim.kafka = bench::kafka_as("hub", a.kafka_port, a.password_file);
  sim.mqtt.port = a.mqtt_port;
  sim.mqtt_password = password;
  const std::string run = "ingest" + std::to_string(::getpid()) + "r" + std::to_string(round);
  sim.communities = {run + "-a", run + "-b"};
  sim.devices = a.devices;
  sim.rate = rate;
  sim.duration_s = seconds;
  sim.bad_fraction = 0;
  sim.scenes_per_minute = 0;
  devices::Simulator simulator(sim);
  if (auto ok = simulator.provision(); !ok) throw std::runtime_error("provisioning: " + ok.error());
  CommittedReader reader(bench::kafka_as("auditor", a.kafka_port, a.password_file),
                         {sim.communities.begin(), sim.communities.end()});
  bench::ProcessCpu cpu(a.pids, "fleet");
  std::cerr << "ingest: " << a.devices << " devices at " << rate << " events/s for " << seconds << " s...\n";
  cpu.start();
  const auto start = Clock::now();
  auto report = simulator.run(std::stop_token{});
  if (!report) throw std::runtime_error(report.error());
  const double published_s = std::chrono::duration<double>(Clock::now() - start).count();
  Step step;
  step.offered = rate;
  for (const auto& [_, types] : report->valid) {
    for (const auto& [__, n] : types) step.sent += n;
  }
  for (auto deadline = Clock::now() + 120s; reader.seen() < step.sent && Clock::now() < deadline;) {
    std::this_thread::sleep_for(5ms);
  }
  if (reader.seen() == 0) throw std::runtime_error("no event of the run became readable in Kafka within 120 s");
  step.seconds = std::chrono::duration<double>(reader.last_seen() - start).count();
  step.cpu_share = cpu.shares(step.seconds);
  const auto l = reader.latencies();
  step.readable = reader.seen();
  step.published_per_s = static_cast<double>(step.sent) / published_s;
  step.sustained = static_cast<double>(step.readable) / step.seconds;
  step.p50_ms = bench::percentile(l.total, 0.5);
  step.p99_ms = bench::percentile(l.total, 0.99);
  step.to_ingest_p99_ms = bench::percentile(l.to_ingest, 0.99);
  step.to_kafka_p50_ms = bench::percentile(l.to_kafka, 0.5);
  step.to_kafka_p99_ms = bench::percentile(l.to_kafka, 0.99);
  return step;
}

nlohmann::json to_json(const Step& s) {
  return {{"offered_rate", s.offered},     {"published_per_s", s.published_per_s},
          {"sent", s.sent},                {"readable", s.readable},
          {"ingest_events_per_s", s.sustained}, {"p50_ms", s.p50_ms},
          {"p99_ms", s.p99_ms},            {"broker_to_ingest_p99_ms", s.to_ingest_p99_ms},
          {"ingest_to_readable_p50_ms", s.to_kafka_p50_ms}, {"ingest_to_readable_p99_ms", s.to_kafka_p99_ms},
          {"cpu_share_of_a_core", s.cpu_share}};
}

void print_steps(const std::vector<Step>& steps) {
  std::printf("\n%-10s %11s %11s %8s %8s %10s %10s", "offered/s", "published/s", "readable/s", "p50 ms", "p99 ms",
              "->ingest99", "->kafka99");
  for (const auto& [name, _] : steps.front().cpu_share) std::printf(" %10s", (name + " %").c_str());
  std::printf("  %s\n", "ingest us/event");
  for (const auto& s : steps) {
    std::printf("%-10.0f %11.0f %11.0f %8.1f %8.1f %10.1f %10.1f", s.offered, s.published_per_s, s.sustained, s.p50_ms,
                s.p99_ms, s.to_ingest_p99_ms, s.to_kafka_p99_ms);
    for (const auto& [_, share] : s.cpu_share) std::printf(" %10.1f", 100 * share);
    const auto ingest = s.cpu_share.find("ingest");
    std::printf("  %.1f\n", ingest == s.cpu_share.end() || s.sustained == 0 ? 0.0 : 1e6 * ingest->second / s.sustained);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  bool ceiling = false;
  CLI::App app{"bench_ingest: ingest alone (MQTT in -> committed in Kafka) next to the raw broker (run through bench/ingest)"};
  app.add_option("--mqtt-port", a.mqtt_port, "Mosquitto");
  app.add_option("--kafka-port", a.kafka_port, "Kafka");
  app.add_option("--password-file", a.password_file, "Courtyard's service identity at the broker")->required();
  bench::add_load_options(app, a);
  app.add_flag("--find-ceiling", ceiling, "raise the rate a quarter at a time until ingest falls behind");
  CLI11_PARSE(app, argc, argv);
  auto password = read_secret(a.password_file);
  if (!password) {
    std::cerr << password.error() << "\n";
    return 1;
  }
  try {
    std::cerr << "baseline: raw Mosquitto QoS 1, " << a.raw_messages << " messages as fast as possible...\n";
    const auto raw = bench::raw_mosquitto(a.mqtt_port, *password, a.raw_messages, 0);
    std::vector<Step> steps;
    std::string stopped;
    if (ceiling) {
      std::cerr << "warm-up...\n";
      run_ingest(a, *password, a.rate, 5, 0);
      for (double rate = a.rate; rate < 200'000 && stopped.empty(); rate *= 1.25) {
        steps.push_back(run_ingest(a, *password, rate, a.seconds, static_cast<int>(steps.size()) + 1));
        const auto& s = steps.back();
        std::cerr << "  readable " << s.sustained << "/s, p99 " << s.p99_ms << " ms\n";
        if (s.readable != s.sent) stopped = "events not all readable";
        else if (s.published_per_s < 0.95 * rate) stopped = "the fleet could not publish at the rate";
        else if (s.sustained < 0.97 * s.published_per_s) stopped = "ingest falls behind";
      }
    } else {
      steps.push_back(run_ingest(a, *password, a.rate, a.seconds, 1));
    }
    print_steps(steps);
    double kept_up = 0;
    for (std::size_t i = 0; i + (ceiling ? 1 : 0) < steps.size(); ++i) kept_up = std::max(kept_up, steps[i].sustained);
    std::printf("\nraw Mosquitto QoS 1 unpaced in the same run: %.0f/s (p50 %.2f ms, p99 %.2f ms)\n", raw.rate, raw.p50_ms,
                raw.p99_ms);
    if (ceiling) {
      std::printf("ingest's ceiling before it falls behind: %.0f events/s (%.3f of the raw broker); stopped: %s\n", kept_up,
                  kept_up / raw.rate, stopped.c_str());
    }
    nlohmann::json out{{"raw_max_per_s", raw.rate}, {"ceiling_per_s", kept_up}, {"stopped", stopped},
                       {"steps", nlohmann::json::array()}};
    for (const auto& s : steps) out["steps"].push_back(to_json(s));
    std::cout << out.dump() << "\n";
    return steps.back().readable == steps.back().sent || ceiling ? 0 : 2;
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
}
