// bench/faults: one fault at a time under a steady load, counted. For each fault a fresh stack
// (ingest and hub on the bench's Mosquitto and Kafka), the simulated fleet in a child process
// (every device kind, gate scenes for the cameras), an operator issuing device commands and
// as-of queries all along; the fault is injected after a while, the load goes on after it ends,
// then the bench waits for the hub to settle and counts, from the simulator's own tally,
// the log and the projections: sent, acknowledged, in the log, projected; lost (acknowledged,
// never projected), doubled (in the log or projected twice); recovery (fault end until the median
// device's latest projected event is under a second old again); peak memory of each process.
//
// Built on the integration tests' harness (tests/support): its helpers assert with doctest, so
// each fault is a doctest case and a failed step stops that fault's row, not the bench.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "devices/simulator.h"
#include "http_client.h"
#include "services.h"

using namespace courtyard;
using namespace std::chrono_literals;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double env_number(const char* name, double fallback) {
  const char* v = std::getenv(name);
  return v ? std::atof(v) : fallback;
}

struct Load {
  double rate = env_number("BENCH_FAULTS_RATE", 2000);
  double before_s = env_number("BENCH_FAULTS_BEFORE_S", 15);  // load before the fault
  double after_s = env_number("BENCH_FAULTS_AFTER_S", 15);    // load after it ends
  std::size_t devices = static_cast<std::size_t>(env_number("BENCH_FAULTS_DEVICES", 300));
  double scenes_per_minute = env_number("BENCH_FAULTS_SCENES", 60);
};

struct Row {
  std::string fault;
  std::uint64_t sent = 0, acked = 0, valid = 0, in_log = 0, projected = 0;
  std::int64_t lost = -1;  // -1: not known (a fleet killed before it could tally)
  std::uint64_t doubled = 0;
  double fault_s = 0, recovery_s = -1;
  long ingest_mib = 0, hub_mib = 0, kafka_mib = 0, mqtt_mib = 0;
  std::string note;
};
std::vector<Row> rows;

long rss_mib(int pid) { return pid > 0 ? test::rss_kb(pid) / 1024 : 0; }
int pid_in(const std::string& file) {
  std::ifstream in(file);
  int pid = 0;
  in >> pid;
  return pid;
}

// The fleet in a child process (so it can be SIGKILLed mid-publish like real devices losing
// power): it provisions, waits for the go, runs, and writes its tally to a pipe.
class Fleet {
 public:
  Fleet(devices::SimulatorConfig config) {
    REQUIRE(::pipe(go_) == 0);
    REQUIRE(::pipe(tally_) == 0);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(go_[1]);
      ::close(tally_[0]);
      devices::Simulator simulator(config);
      char start = 0;
      if (!simulator.provision() || ::write(tally_[1], "r", 1) != 1 || ::read(go_[0], &start, 1) != 1) ::_exit(3);
      std::stop_source stopping;
      std::jthread stopper([&] {  // a second byte: stop publishing, tally
        char stop = 0;
        if (::read(go_[0], &stop, 1) == 1) stopping.request_stop();
      });
      auto report = simulator.run(stopping.get_token());
      if (!report) ::_exit(1);
      json valid = json::object();
      for (const auto& [device, types] : report->valid) valid[device] = test::total(types);
      const auto text = json{{"sent", report->sent}, {"acked", report->acked}, {"valid", valid}}.dump();
      for (std::size_t at = 0; at < text.size();) {
        const auto n = ::write(tally_[1], text.data() + at, text.size() - at);
        if (n <= 0) ::_exit(2);
        at += static_cast<std::size_t>(n);
      }
      ::_exit(0);
    }
    ::close(go_[0]);
    ::close(tally_[1]);
  }
  ~Fleet() {
    if (pid_ > 0) kill();
    ::close(go_[1]);
    ::close(tally_[0]);
  }
  // Waits until the fleet is provisioned (300 devices take a while), then lets it publish.
  void start() {
    char ready = 0;
    REQUIRE_MESSAGE(::read(tally_[0], &ready, 1) == 1, "the fleet died while provisioning");
    REQUIRE(::write(go_[1], "s", 1) == 1);
  }
  void stop() { REQUIRE(::write(go_[1], "x", 1) == 1); }
  void kill() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  // Waits for the run to end; its tally.
  json tally() {
    std::string text;
    char buffer[65536];
    for (ssize_t n; (n = ::read(tally_[0], buffer, sizeof buffer)) > 0;) text.append(buffer, static_cast<std::size_t>(n));
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    const bool exited_well = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    REQUIRE_MESSAGE(exited_well, "the fleet failed: status " << status);
    return json::parse(text);
  }

 private:
  pid_t pid_ = -1;
  int go_[2], tally_[2];
};

// Peak resident memory of every process of the stack, sampled every 250 ms. The ingest and hub
// pids change when the fault restarts them: track() after each.
class Memory {
 public:
  explicit Memory(const test::Services& services)
      : thread_([this, services](std::stop_token stop) {
          while (!stop.stop_requested()) {
            sample(row_.ingest_mib, ingest_.load());
            sample(row_.hub_mib, hub_.load());
            sample(row_.kafka_mib, pid_in(services.var + "/kafka/kafka.pid"));
            sample(row_.mqtt_mib, pid_in(services.var + "/mosquitto/mosquitto.pid"));
            std::this_thread::sleep_for(250ms);
          }
        }) {}
  void track(test::Stack& stack) {
    ingest_ = stack.ingest().pid();
    hub_ = stack.hub().pid();
  }
  void into(Row& row) {
    thread_.request_stop();
    thread_.join();
    row.ingest_mib = row_.ingest_mib;
    row.hub_mib = row_.hub_mib;
    row.kafka_mib = row_.kafka_mib;
    row.mqtt_mib = row_.mqtt_mib;
  }

 private:
  void sample(long& peak, int pid) { peak = std::max(peak, rss_mib(pid)); }
  Row row_;
  std::atomic<int> ingest_{0}, hub_{0};
  std::jthread thread_;
};

// The operator: a command to one of the fleet's meters and an as-of query (a minute back) every
// half second. Their answers are counted, not checked: the hub may be down.
class Operator {
 public:
  Operator(test::Stack& stack, std::vector<std::string> meters)
      : thread_([&stack, meters = std::move(meters), this](std::stop_token stop) {
          for (std::uint64_t n = 0; !stop.stop_requested(); ++n) {
            std::this_thread::sleep_for(500ms);
            const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::system_clock::now().time_since_epoch()).count();
            auto past = test::http_get("127.0.0.1", stack.http_port(),
                                       "/api/v1/devices?limit=5&as_of_time=" + std::to_string(now_ms - 60'000),
                                       stack.admin_token());
            if (past && past->status == 200) ++as_of_;
            if (meters.empty()) continue;
            const auto& meter = meters[n % meters.size()];
            auto [status, _] = stack.post("/api/v1/devices/" + meter + "/commands", {{"action", "read_now"}, {"ttl_s", 30}});
            if (status == 202) ++commands_;
          }
        }) {}
  std::string summary() {
    thread_.request_stop();
    thread_.join();
    return std::to_string(commands_.load()) + " commands, " + std::to_string(as_of_.load()) + " as-of queries";
  }

 private:
  std::atomic<std::uint64_t> commands_{0}, as_of_{0};
  std::jthread thread_;
};

std::int64_t lag_total(test::Stack& stack) {
  auto h = stack.get("/healthz");
  return h ? (*h)["lag_total"].get<std::int64_t>() : -1;
}

std::map<std::string, std::uint64_t> projected(test::Stack& stack) {
  std::map<std::string, std::uint64_t> out;
  for (const auto& [id, d] : stack.devices()) out[id] = d["events"].get<std::uint64_t>();
  return out;
}

// What a fault does: given the stack, the services and the fleet, injects itself and returns
// once it has ended.
using Inject = std::function<void(test::Stack&, const test::Services&, std::unique_ptr<Fleet>&)>;

// From the fault's end, every 250 ms: how old each device's latest projected event is. The stack
// has recovered when the median over the fleet is under a second again (each device publishes
// several times a second: in steady state it is ~0.2 s), which needs every backlog the fault
// built (spool, broker queues, log) gone, on every partition.
class Recovery {
 public:
  explicit Recovery(test::Stack& stack)
      : start_(Clock::now()), thread_([this, &stack](std::stop_token stop) {
          while (!stop.stop_requested()) {
            std::vector<std::int64_t> latest;
            for (const auto& [_, d] : stack.devices()) latest.push_back(d.value("last_device_time", std::int64_t{0}));
            const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::system_clock::now().time_since_epoch()).count();
            std::nth_element(latest.begin(), latest.begin() + static_cast<std::ptrdiff_t>(latest.size() / 2), latest.end());
            if (!latest.empty() && now_ms - latest[latest.size() / 2] < 1000) {
              seconds_ = std::chrono::duration<double>(Clock::now() - start_).count();
              return;
            }
            std::this_thread::sleep_for(250ms);
          }
        }) {}
  double seconds() {
    thread_.request_stop();
    thread_.join();
    return seconds_;
  }

 private:
  Clock::time_point start_;
  double seconds_ = -1;
  std::jthread thread_;
};

// `prepare` runs on the stack before ingest and the hub start (a small disk under one of them).
void run(const std::string& name, const Inject& inject, bool kills_fleet = false,
         const std::function<void(test::Stack&)>& prepare = {}) {
  const Load load;
  auto services = test::services();
  Row row;
  row.fault = name;
  auto sim = services.simulator({test::unique_name("faults")});
  sim.devices = load.devices;
  sim.rate = load.rate;
  sim.scenes_per_minute = load.scenes_per_minute;
  sim.bad_fraction = 0;
  test::Stack stack(sim.communities);
  if (prepare) prepare(stack);
  stack.start_ingest();
  stack.start_hub();
  auto plate_key = read_secret(stack.dir().str("var/secrets/plate-key"));
  REQUIRE(plate_key);
  sim.plate_key = *plate_key;
  std::vector<std::string> meters;
  {
    devices::Simulator fleet_of(sim);
    for (const auto& d : fleet_of.fleet()) {
      if (d.registration.kind == schemas::DeviceKind::Meter) meters.push_back(d.registration.device.str());
    }
  }

  Memory memory(services);
  memory.track(stack);
  auto fleet = std::make_unique<Fleet>(sim);
  std::this_thread::sleep_for(5s);  // provisioned, and the hub knows the fleet
  fleet->start();
  Operator operate(stack, meters);
  std::this_thread::sleep_for(std::chrono::duration<double>(load.before_s));
  const auto fault_at = Clock::now();
  memory.track(stack);  // (a pid that died meanwhile reads as nothing)
  inject(stack, services, fleet);
  memory.track(stack);
  if (kills_fleet) {  // the devices come back: a new boot of the same fleet
    fleet = std::make_unique<Fleet>(sim);
    std::this_thread::sleep_for(2s);
    fleet->start();
  }
  const auto fault_end = Clock::now();
  row.fault_s = std::chrono::duration<double>(fault_end - fault_at).count();
  Recovery recovery(stack);
  std::this_thread::sleep_for(std::chrono::duration<double>(load.after_s));
  fleet->stop();
  const json tally = fleet->tally();
  row.note = operate.summary();
  row.sent = tally["sent"];
  row.acked = tally["acked"];
  for (const auto& [_, n] : tally["valid"].items()) row.valid += n.get<std::uint64_t>();
  // Settled: nothing behind and the counts still for 3 s (what the brokers held has flowed).
  std::uint64_t before = 0;
  auto still_since = Clock::now();
  const bool settled = test::eventually([&] {
    std::uint64_t now = 0;
    for (const auto& [_, n] : projected(stack)) now += n;
    if (now != before || lag_total(stack) != 0) still_since = Clock::now();
    before = now;
    return Clock::now() - still_since > 3s;
  }, 30min);
  row.recovery_s = recovery.seconds();  // -1: not within the load after the fault
  if (!settled) row.note += "; did not settle in 30 min";
  if (settled && row.recovery_s < 0) {  // a backlog longer than the load after the fault: when it was folded
    row.note += fmt::format("; the backlog was folded {:.0f} s after the fault ended",
                            std::chrono::duration<double>(still_since - fault_end).count());
  }
  memory.into(row);

  const auto served = projected(stack);
  for (const auto& [_, n] : served) row.projected += n;
  const auto log = test::read_community_log(services, sim.communities[0]);
  row.in_log = log.messages;
  row.doubled = log.doubled + log.repeated_positions;
  if (kills_fleet) {
    // The first fleet's tally died with it: the log is the reference (every message there once,
    // each projected once).
    row.doubled += row.projected > row.in_log ? row.projected - row.in_log : 0;
    row.note += "; sent/acked: the fleet after the kill";
  } else {
    std::int64_t lost = 0;
    for (const auto& [device, n] : tally["valid"].items()) {
      const auto valid = n.get<std::uint64_t>();
      const auto it = served.find(device);
      const std::uint64_t got = it == served.end() ? 0 : it->second;
      if (got < valid) lost += static_cast<std::int64_t>(valid - got);
      if (got > valid) row.doubled += got - valid;
    }
    row.lost = lost;
    if (row.acked < row.sent) row.note += "; " + std::to_string(row.sent - row.acked) + " never acknowledged";
    // The simulator counts PUBACKs: messages libmosquitto sends again after a reconnect can be
    // acknowledged twice.
    if (row.acked > row.sent) row.note += "; " + std::to_string(row.acked - row.sent) + " PUBACKs more than messages";
  }
  rows.push_back(row);
  std::printf("%s: sent %llu, acked %llu, in log %llu, projected %llu, lost %lld, doubled %llu, recovery %.1f s\n",
              name.c_str(), static_cast<unsigned long long>(row.sent), static_cast<unsigned long long>(row.acked),
              static_cast<unsigned long long>(row.in_log), static_cast<unsigned long long>(row.projected),
              static_cast<long long>(row.lost), static_cast<unsigned long long>(row.doubled), row.recovery_s);
  std::fflush(stdout);
}

void restart_service(const test::Services& services, const std::string& which, int signal, std::chrono::milliseconds down) {
  const int pid = pid_in(services.var + "/" + which + "/" + which + ".pid");
  REQUIRE(pid > 0);
  REQUIRE(::kill(pid, signal) == 0);
  REQUIRE(test::eventually([&] { return ::kill(pid, 0) != 0; }, 120s));
  std::this_thread::sleep_for(down);
  test::Process up({std::string(COURTYARD_SOURCE_DIR) + "/scripts/services", "up"},
                   {{"COURTYARD_VAR", services.var},
                    {"COURTYARD_MQTT_PORT", std::to_string(services.mqtt_port)},
                    {"COURTYARD_KAFKA_PORT", std::to_string(services.kafka_port)},
                    {"COURTYARD_KAFKA_CONTROLLER_PORT", std::to_string(services.kafka_port + 1)}},
                   services.var + "/restart.log");
  REQUIRE(up.wait() == 0);
}

// The disk under one process's state (`dir` in the stack's directory, a 1 GiB tmpfs) filled to
// the last byte until `full` is logged, kept full for 30 s more, then freed until `recovered` is. It
// starts with 64 MiB free, as a disk that fills up does: RocksDB reserves each new write-ahead
// log's space ahead (1.1 memtables, 70 MiB) when it can, and writes into space it reserved meet
// no full disk until the log is full (minutes at this load).
void disk_full(const std::string& name, test::Process& (test::Stack::*process)(),
               const std::function<std::string(test::Stack&)>& dir, const std::string& full,
               const std::string& recovered) {
  std::unique_ptr<test::SmallDisk> disk;
  run(name,
      [&](test::Stack& stack, auto&, auto&) {
        disk->fill();
        REQUIRE((stack.*process)().wait_for_log(full, 120s));
        // Kept full: what the store frees (a log file closed, a table compacted) is taken again
        // at once, as by whatever filled the disk.
        for (const auto until = Clock::now() + 30s; Clock::now() < until;) {
          disk->fill();
          std::this_thread::sleep_for(100ms);
        }
        disk->free_space();
        REQUIRE((stack.*process)().wait_for_log(recovered, 120s));
      },
      false, [&](test::Stack& stack) {
        disk = std::make_unique<test::SmallDisk>(stack.dir().str(dir(stack)), "1g");
        disk->fill(64 << 20);
      });
}

bool long_faults() { return env_number("BENCH_FAULTS_LONG", 1) != 0; }

}  // namespace

TEST_SUITE("faults") {
  TEST_CASE("none (the baseline)") {
    run("none", [](auto&, auto&, auto&) {});
  }
  TEST_CASE("SIGKILL ingest") {
    run("SIGKILL ingest", [](test::Stack& stack, auto&, auto&) {
      stack.ingest().kill_now();
      stack.start_ingest();
    });
  }
  TEST_CASE("SIGKILL hub during as-of queries and camera analysis") {
    run("SIGKILL hub (as-of, cameras)", [](test::Stack& stack, auto&, auto&) {
      stack.hub().kill_now();
      stack.start_hub();
    });
  }
  TEST_CASE("SIGKILL the devices mid-publish") {
    run("SIGKILL devices mid-publish", [](auto&, auto&, std::unique_ptr<Fleet>& fleet) { fleet->kill(); }, true);
  }
  TEST_CASE("SIGKILL Kafka") {
    run("SIGKILL Kafka (down 5 s)", [](auto&, const test::Services& services, auto&) {
      restart_service(services, "kafka", SIGKILL, 5s);
    });
  }
  TEST_CASE("Kafka stopped for a minute") {
    run("Kafka stopped 1 min", [](auto&, const test::Services& services, auto&) {
      restart_service(services, "kafka", SIGTERM, 60s);
    });
  }
  TEST_CASE("Kafka stopped for ten minutes") {
    if (!long_faults()) return;
    run("Kafka stopped 10 min", [](auto&, const test::Services& services, auto&) {
      restart_service(services, "kafka", SIGTERM, 600s);
    });
  }
  TEST_CASE("disk full under ingest's spool") {
    disk_full("disk full: ingest's spool (30 s)", &test::Stack::ingest,
              [](test::Stack& stack) { return "var/ingest/" + stack.env().at("COURTYARD_INGEST_CLIENT_ID"); },
              "acknowledging nothing until the spool takes writes again", "acknowledging devices again");
  }
  TEST_CASE("disk full under the hub's store") {
    disk_full("disk full: the hub's store (30 s)", &test::Stack::hub, [](test::Stack&) { return std::string("var/hub/state"); },
              "folding stopped, the store cannot be written", "the store takes writes again");
  }
  TEST_CASE("SIGKILL Mosquitto") {
    run("SIGKILL Mosquitto (down 2 s)", [](auto&, const test::Services& services, auto&) {
      restart_service(services, "mosquitto", SIGKILL, 2s);
    });
  }
  TEST_CASE("Mosquitto restarted cleanly") {
    run("Mosquitto clean restart", [](auto&, const test::Services& services, auto&) {
      restart_service(services, "mosquitto", SIGTERM, 2s);
    });
  }
}

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);  // a fleet that died early must not take the bench with it
  doctest::Context context(argc, argv);
  const int status = context.run();
  std::printf("\n%-34s %9s %9s %9s %9s %7s %8s %8s %10s %8s %8s %8s %8s  %s\n", "fault", "sent", "acked", "in log",
              "projected", "lost", "doubled", "fault s", "recovery s", "ingest", "hub", "kafka", "mqtt", "note");
  for (const auto& r : rows) {
    std::printf("%-34s %9llu %9llu %9llu %9llu %7s %8llu %8.1f %10.1f %8ld %8ld %8ld %8ld  %s\n", r.fault.c_str(),
                static_cast<unsigned long long>(r.sent), static_cast<unsigned long long>(r.acked),
                static_cast<unsigned long long>(r.in_log), static_cast<unsigned long long>(r.projected),
                r.lost < 0 ? "-" : std::to_string(r.lost).c_str(), static_cast<unsigned long long>(r.doubled), r.fault_s,
                r.recovery_s, r.ingest_mib, r.hub_mib, r.kafka_mib, r.mqtt_mib, r.note.c_str());
  }
  std::printf("(memory: peak RSS in MiB over the run; lost: acknowledged to a device, never projected; doubled: a "
              "device message in the log or projected more than once)\n");
  return status;
}
