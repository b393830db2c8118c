// bench/failover: hubs sharing the partitions (decision 0024) under a steady load, one killed with
// SIGKILL. Measures, on the bench's own Mosquitto and Kafka:
//   - the failover: from the kill to the survivors holding every partition, and to every partition
//     the dead hub folded being current again (its lag on the survivors back under a small bound);
//   With BENCH_FAILOVER_STANDBY=0 the three are hub.role = processors without standbys (the
//   failover then restores the moved partitions from the changelog), and a fourth, of role api,
//   serves the reads.
//   - the restore: a new hub on an empty store joining afterwards, from its start until it answers
//     every read as the others do (it applies every partition's changelog), against a rebuild of
//     the same log's projections (`courtyard replay rebuild`), in the same run.
// Built on the integration tests' harness (tests/support), like bench/faults. Not a test: it
// prints numbers.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdlib>
#include <map>
#include <regex>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/handles.h"
#include "common/kafka.h"
#include "devices/simulator.h"
#include "http_client.h"
#include "services.h"

using namespace courtyard;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

double env_number(const char* name, double fallback) {
  const char* v = std::getenv(name);
  return v ? std::atof(v) : fallback;
}

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Lag per events partition, as hub `n`'s /metrics has it (partitions it folds).
std::map<int, double> lags(test::Stack& stack, std::size_t n) {
  std::map<int, double> out;
  auto text = test::http_get_text(stack.http_port(n), "/metrics", stack.admin_token());
  static const std::regex line(R"re(courtyard_consumer_lag\{[^}]*partition="(\d+)"[^}]*topic="courtyard\.events\.v1"[^}]*\} ([0-9.e+]+))re");
  static const std::regex line2(R"re(courtyard_consumer_lag\{[^}]*topic="courtyard\.events\.v1"[^}]*partition="(\d+)"[^}]*\} ([0-9.e+]+))re");
  for (const auto* re : {&line, &line2}) {
    for (std::sregex_iterator it(text.begin(), text.end(), *re), end; it != end; ++it) {
      out[std::stoi((*it)[1])] = std::stod((*it)[2]);
    }
  }
  return out;
}

int assigned(test::Stack& stack, std::size_t n) {
  auto h = stack.get(n, "/healthz");
  return h ? (*h)["assigned_partitions"].get<int>() : -1;
}

nlohmann::json devices_read(test::Stack& stack, std::size_t n) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [id, d] : stack.devices(n)) out[id] = d["events"];
  return out;
}

// Records and bytes the changelog topics hold now (what a restore reads), read to their ends.
std::pair<std::uint64_t, std::uint64_t> changelog_size(const KafkaConfig& kafka) {
  auto consumer = make_consumer(kafka, {{"group.id", "bench-failover-count"}, {"isolation.level", "read_committed"},
                                        {"enable.partition.eof", "true"}});
  REQUIRE(consumer);
  KafkaPartitionsPtr parts(rd_kafka_topic_partition_list_new(16));
  for (const auto& [topic, count] : {std::pair{kafka.state_topic, 12}, std::pair{kafka.state_deadletter_topic, 3}}) {
    for (int p = 0; p < count; ++p) rd_kafka_topic_partition_list_add(parts.get(), topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  }
  REQUIRE(rd_kafka_assign(consumer->get(), parts.get()) == RD_KAFKA_RESP_ERR_NO_ERROR);
  std::uint64_t records = 0, bytes = 0;
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> kinds;
  for (int ends = 0, idle = 0; ends < parts->cnt && idle < 100;) {
    KafkaMessagePtr m(rd_kafka_consumer_poll(consumer->get(), 100));
    if (!m) {
      ++idle;
      continue;
    }
    idle = 0;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) ++ends;
    else if (!m->err) {
      ++records, bytes += m->len + m->key_len;
      if (std::getenv("BENCH_FAILOVER_KEYS") && m->key) {  // which kinds of records make it up
        std::string key(static_cast<const char*>(m->key), m->key_len);
        auto& [n, b] = kinds[key.substr(0, key.find('/'))];
        ++n, b += m->len + m->key_len;
      }
    }
  }
  for (const auto& [kind, nb] : kinds) fmt::print("  changelog {}/: {} records, {:.1f} MB\n", kind, nb.first, nb.second / 1e6);
  return {records, bytes};
}

}  // namespace

TEST_CASE("failover and restore of hubs sharing the partitions") {
  const double rate = env_number("BENCH_FAILOVER_RATE", 2000);
  const double before_s = env_number("BENCH_FAILOVER_BEFORE_S", 30), after_s = env_number("BENCH_FAILOVER_AFTER_S", 30);
  const double session_ms = env_number("BENCH_FAILOVER_SESSION_MS", 6000);
  auto services = test::services();
  std::vector<std::string> communities;
  for (int i = 0; i < 12; ++i) communities.push_back(fmt::format("{}-c{}", test::unique_name("fo"), i));
  auto sim = services.simulator(communities);
  sim.devices = static_cast<std::size_t>(env_number("BENCH_FAILOVER_DEVICES", 300));
  sim.rate = rate;
  sim.events = static_cast<std::uint64_t>(rate * (before_s + after_s));

  const bool standby = env_number("BENCH_FAILOVER_STANDBY", 1) != 0;
  std::map<std::string, std::string> env{{"COURTYARD_HUB_CLUSTER", "true"},
                                         {"COURTYARD_HUB_FOLD_LANES", "1"},
                                         {"COURTYARD_HUB_SESSION_TIMEOUT_MS", fmt::format("{:.0f}", session_ms)}};
  if (!standby) env.insert({{"COURTYARD_HUB_ROLE", "processors"}, {"COURTYARD_HUB_STANDBY", "false"}});
  test::Stack stack(communities, env);
  stack.start_ingest();
  stack.start_hub();
  for (int i = 0; i < 2; ++i) stack.start_hub(stack.add_hub());
  const std::map<std::string, std::string> serving{{"COURTYARD_HUB_ROLE", "api"}, {"COURTYARD_HUB_STANDBY", "true"}};
  std::size_t reader = 0;  // a hub that serves reads (without standbys: a fourth, of role api)
  if (!standby) stack.start_hub(reader = stack.add_hub(serving));
  devices::Simulator simulator(sim);
  REQUIRE(simulator.provision());
  std::expected<devices::SimReport, std::string> report = std::unexpected(std::string("not run"));
  std::jthread fleet([&] { report = simulator.run(std::stop_token{}); });

  REQUIRE(test::eventually([&] { return assigned(stack, 0) > 0 && assigned(stack, 1) > 0 && assigned(stack, 2) > 0; }, 120s));
  std::this_thread::sleep_for(std::chrono::duration<double>(before_s));
  std::size_t victim = 0;
  double most = -1;
  for (std::size_t n = 0; n < 3; ++n) {
    if (double f = test::metric(stack, n, "courtyard_folded_total"); f > most) most = f, victim = n;
  }
  std::vector<int> moved;
  for (const auto& [p, _] : lags(stack, victim)) moved.push_back(p);
  const std::size_t a = victim == 0 ? 1 : 0, b = victim == 2 ? 1 : 2;
  const double bound = std::max(50.0, rate / 12 * 0.5);  // half a second of a partition's traffic

  const auto killed = Clock::now();
  stack.hub(victim).kill_now();
  double taken_s = -1, current_s = -1;
  while (seconds_since(killed) < 120 && current_s < 0) {
    const bool all = assigned(stack, a) + assigned(stack, b) == 15;
    if (all && taken_s < 0) taken_s = seconds_since(killed);
    if (all) {
      auto la = lags(stack, a), lb = lags(stack, b);
      bool current = true;
      for (int p : moved) {
        auto it = la.find(p);
        if (it == la.end()) it = lb.find(p);
        if (it == lb.end() || it->second > bound) current = false;
      }
      if (current) current_s = seconds_since(killed);
    }
    std::this_thread::sleep_for(50ms);
  }
  fleet.join();
  REQUIRE_MESSAGE(report, (report ? "" : report.error()));
  if (standby) reader = a;
  REQUIRE(test::eventually([&] {
    return assigned(stack, a) + assigned(stack, b) == 15 && lags(stack, a).size() + lags(stack, b).size() == 12 &&
           [&] {
             for (std::size_t hub : {a, b}) {
               for (const auto& [_, lag] : lags(stack, hub)) if (lag > 0) return false;
             }
             return true;
           }();
  }, 120s));
  REQUIRE(test::eventually([&] {
    auto h = stack.get(reader, "/healthz");
    return h && h->value("changelog_lag", -1) == 0;
  }, 120s));

  // The restore: a new hub, empty store, joins; the rebuild: the same log into a fresh store.
  const auto reference = devices_read(stack, reader);
  const std::size_t fresh = standby ? stack.add_hub() : stack.add_hub(serving);
  const auto joined = Clock::now();
  stack.start_hub(fresh);
  REQUIRE(test::eventually([&] { return devices_read(stack, fresh) == reference; }, 300s));
  const double restore_s = seconds_since(joined);
  const auto rebuilding = Clock::now();
  auto [status, out] = test::run_courtyard(stack, {"replay", "rebuild", "--to", stack.dir().str("rebuilt")}, "rebuild");
  const double rebuild_s = seconds_since(rebuilding);
  REQUIRE_MESSAGE(status == 0, out);
  auto summary = test::last_json_line(out);

  std::uint64_t events = 0;
  for (const auto& [_, d] : reference.items()) events += d.get<std::uint64_t>();
  fmt::print("\nhubs sharing the partitions: 3, one fold lane each, {}; {:.0f} events/s for {:.0f} s from {} devices in 12 "
             "communities; session timeout {:.0f} ms\n",
             standby ? "each a standby for every partition" : "no standbys (role processors; a fourth of role api serves)",
             rate, before_s + after_s, sim.devices, session_ms);
  fmt::print("killed hub {} (it folded {:.0f} events on {} events partitions)\n", victim, most, moved.size());
  fmt::print("| measure | seconds |\n| --- | ---: |\n");
  fmt::print("| kill -> the survivors hold all 15 partitions | {:.2f} |\n", taken_s);
  fmt::print("| kill -> every moved partition current (lag <= {:.0f}) | {:.2f} |\n", bound, current_s);
  fmt::print("| a new hub on an empty store -> answering as the others | {:.2f} |\n", restore_s);
  fmt::print("| `replay rebuild` of the same log | {:.2f} |\n", rebuild_s);
  const auto [records, bytes] = changelog_size(services.kafka());
  fmt::print("events projected: {}; log messages rebuilt: {}; changelog records restored: {} ({:.1f} MB); "
             "restore / rebuild: {:.2f}x faster\n",
             events, summary.is_object() ? summary.value("messages", 0) : 0, records, bytes / 1e6, rebuild_s / restore_s);
}

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  return context.run();
}
