// Three hubs sharing the partitions through the changelog (decision 0024), against the real
// brokers: one is killed with SIGKILL under load, the others take its partitions over from the
// changelog and go on; every event is projected once, a timer the dead hub started fires on the
// new owner, a dashboard on a surviving hub misses nothing, and every hub (and a fourth that only
// serves, hub.role = api) answers every community's reads with the same content. Restarted, the killed hub rejoins and catches up.
#include <doctest/doctest.h>

#include <fstream>
#include <mutex>
#include <thread>

#include <librdkafka/rdkafka.h>

#include "devices/simulator.h"
#include "services.h"
#include "ws_client.h"

using namespace courtyard;
using namespace std::chrono_literals;

namespace {

std::uint64_t applied(test::Stack& stack, std::size_t hub) {
  std::uint64_t n = 0;
  for (const auto& [_, d] : stack.devices(hub)) n += d["events"].get<std::uint64_t>();
  return n;
}

// Events per device the simulator's runs had accepted.
using Expected = std::map<std::string, std::uint64_t>;
void add(Expected& expected, const devices::SimReport& report) {
  for (const auto& [device, types] : report.valid) expected[device] += test::total(types);
}

// Every device's record on hub `n` says as many events as expected.
bool projected(test::Stack& stack, std::size_t n, const Expected& expected) {
  auto served = stack.devices(n);
  for (const auto& [device, events] : expected) {
    auto it = served.find(device);
    if (it == served.end() || it->second["events"].get<std::uint64_t>() != events) return false;
  }
  return true;
}

// What a dashboard reads of every community: its devices and its alerts.
nlohmann::json reads(test::Stack& stack, std::size_t n) {
  nlohmann::json out;
  for (const auto& [id, d] : stack.devices(n)) out["devices"][id] = d;
  for (const auto& c : stack.communities()) {
    auto alerts = stack.get(n, "/api/v1/alerts?limit=1000&community=" + c);
    out["alerts"][c] = alerts ? (*alerts)["items"] : nlohmann::json();
  }
  return out;
}

// The events partition of a community: ingest keys its events by community, with librdkafka's
// default partitioner.
std::int32_t partition_of(const std::string& community, std::int32_t partitions) {
  return rd_kafka_msg_partitioner_consistent_random(nullptr, community.data(), community.size(), partitions, nullptr,
                                                    nullptr);
}

// A dashboard on one hub: a WebSocket subscribed to every device record, read on a thread of its
// own, holding the records as its snapshot and the changes after it say.
class Dashboard {
 public:
  Dashboard(int port, const std::string& token) : ws_(test::WsClient::connect(port, "/api/v1/subscribe", token)) {
    REQUIRE(ws_);
    auto hello = ws_->receive();
    REQUIRE(hello);
    REQUIRE(nlohmann::json::parse(*hello)["type"] == "hello");
    ws_->send(R"({"op":"subscribe","id":"fleet","prefix":"devices/"})");
    reader_ = std::jthread([this](std::stop_token stop) { read(stop); });
  }
  // Events per device, as the frames said.
  std::map<std::string, std::uint64_t> events() const {
    std::lock_guard lock(mu_);
    std::map<std::string, std::uint64_t> out;
    for (const auto& [key, value] : records_) out[key.substr(std::string("devices/").size())] = value["events"].get<std::uint64_t>();
    return out;
  }
  // What went wrong on the way: the connection closed, a snapshot cut short, a seq going back.
  std::string trouble() const {
    std::lock_guard lock(mu_);
    return trouble_;
  }

 private:
  void read(std::stop_token stop) {
    while (!stop.stop_requested()) {
      auto frame = ws_->receive(std::chrono::milliseconds(500));
      std::lock_guard lock(mu_);
      if (!frame) {
        if (ws_->closed()) {
          trouble_ += "closed (" + ws_->close_reason() + "); ";
          return;
        }
        continue;
      }
      auto j = nlohmann::json::parse(*frame);
      if (j["type"] == "snapshot") {
        if (j["truncated"].get<bool>()) trouble_ += "snapshot truncated; ";
        for (const auto& item : j["items"]) records_[item["key"].get<std::string>()] = item["value"];
      } else if (j["type"] == "changes") {
        for (const auto& change : j["changes"]) {
          // A device's count only grows: a change with less would be an older state shown again.
          auto& record = records_[change["key"].get<std::string>()];
          if (record.is_object() && change["value"]["events"].get<std::uint64_t>() < record["events"].get<std::uint64_t>()) {
            trouble_ += change["key"].get<std::string>() + " went back; ";
          }
          record = change["value"];
        }
      } else {
        trouble_ += "unexpected frame " + *frame + "; ";
      }
      if (j.contains("seq")) {
        const auto seq = j["seq"].get<std::uint64_t>();
        if (seq < seq_) trouble_ += "seq went back; ";
        seq_ = seq;
      }
    }
  }
  std::unique_ptr<test::WsClient> ws_;
  mutable std::mutex mu_;
  std::map<std::string, nlohmann::json> records_;
  std::uint64_t seq_ = 0;
  std::string trouble_;
  std::jthread reader_;  // last: stops before what it uses goes
};

}  // namespace

TEST_SUITE("integration: hubs sharing the partitions") {
  TEST_CASE("three hubs share the partitions and a fourth only serves; one killed with SIGKILL under load is taken over "
            "from the changelog: every event once, its timer fired by the new owner, dashboards with no gap, every hub "
            "answering the same") {
    auto services = test::services();
    const std::string prefix = test::unique_name("trio") + "-";
    auto sim = services.simulator({prefix + "north", prefix + "south", prefix + "east", prefix + "west"});
    sim.devices = 40;
    sim.events = 3000;
    sim.rate = 500;
    sim.anomalies = {"fall"};  // a wearer falls at the start, on the hub about to be killed
    // The fall turns critical 20 s (of the log's ticks) after it: after the kill and the take-over.
    test::TempDir rules_dir;
    std::ofstream(rules_dir.str("rules.toml")) << "[defaults]\nfall_escalate_s = 20\n";

    test::Stack stack(sim.communities, {{"COURTYARD_HUB_CLUSTER", "true"},
                                        {"COURTYARD_HUB_FOLD_LANES", "2"},
                                        {"COURTYARD_HUB_RULES_FILE", rules_dir.str("rules.toml")},
                                        {"COURTYARD_INGEST_TICK_INTERVAL_MS", "250"},
                                        {"COURTYARD_HUB_AUDIT_INTERVAL_S", "3"}});
    stack.start_ingest();
    stack.start_hub();
    for (int i = 0; i < 2; ++i) stack.start_hub(stack.add_hub());
    // And a hub that only serves (hub.role = api): it folds nothing, the changelog gives it all.
    const std::size_t reader = stack.add_hub({{"COURTYARD_HUB_ROLE", "api"}});
    stack.start_hub(reader);
    devices::Simulator simulator(sim);
    REQUIRE(simulator.provision());

    std::expected<devices::SimReport, std::string> report = std::unexpected(std::string("not run"));
    std::jthread devices_thread([&] { report = simulator.run(std::stop_token{}); });

    // Once the group has settled (each hub folding its share of the 15 partitions), events flow
    // and the fall is open on every hub, kill the hub that folds the fall's community.
    auto assigned = [&](std::size_t hub) {
      auto h = stack.get(hub, "/healthz");
      return h ? (*h)["assigned_partitions"].get<int>() : -1;
    };
    REQUIRE(test::eventually([&] {
      return assigned(0) > 0 && assigned(1) > 0 && assigned(2) > 0 && assigned(0) + assigned(1) + assigned(2) == 15;
    }, 90s));
    REQUIRE(test::eventually([&] { return applied(stack, 0) >= 500; }, 90s));
    auto falls = [&](std::size_t hub) {
      std::vector<nlohmann::json> out;
      for (const auto& c : stack.communities()) {
        auto alerts = stack.get(hub, "/api/v1/alerts?limit=1000&rule=fall&community=" + c);
        if (alerts) out.insert(out.end(), (*alerts)["items"].begin(), (*alerts)["items"].end());
      }
      return out;
    };
    REQUIRE(test::eventually([&] { return falls(0).size() == 1 && falls(1).size() == 1 && falls(2).size() == 1; }, 30s));
    const auto fall = falls(0)[0];
    const auto fall_partition = partition_of(fall["community"].get<std::string>(), 12);
    std::size_t victim = 3;
    for (std::size_t hub = 0; hub < 3; ++hub) {
      auto h = stack.get(hub, "/healthz");
      REQUIRE(h);
      for (const auto& p : (*h)["folding"].value("courtyard.events.v1", nlohmann::json::array())) {
        if (p.get<std::int32_t>() == fall_partition) victim = hub;
      }
    }
    REQUIRE_MESSAGE(victim < 3, "no hub folds partition " << fall_partition << " of " << fall["community"]);
    const std::size_t a = victim == 0 ? 1 : 0, b = victim == 2 ? 1 : 2;  // the survivors
    // Its timer runs: not escalated yet, and it will be only after the kill.
    REQUIRE(fall["severity"] == "major");
    REQUIRE(fall["escalate_at"].get<std::int64_t>() > 0);
    // A dashboard on each survivor follows every device through the failover.
    Dashboard dashboard_a(stack.http_port(a), stack.admin_token()), dashboard_b(stack.http_port(b), stack.admin_token()),
        dashboard_reader(stack.http_port(reader), stack.admin_token());
    MESSAGE("killing hub " << victim << ", which folds partition " << fall_partition << " of the fall's community "
                           << fall["community"] << " among " << assigned(victim) << " partitions");
    stack.hub(victim).kill_now();
    const auto killed_at = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch()).count();
    devices_thread.join();
    REQUIRE_MESSAGE(report, (report ? "" : report.error()));
    REQUIRE(report->acked == report->sent);
    Expected expected;
    add(expected, *report);

    // The devices send again (a new boot), all of it after the kill: what lands in the dead hub's
    // partitions waits for the group to give them to the survivors, which restore them from the
    // changelog (they hold them already) and fold on.
    auto after = sim;
    after.anomalies = {"sos"};  // a wearer presses SOS while the group has not yet moved the dead hub's partitions
    devices::Simulator again(after);
    REQUIRE(again.provision());
    auto second = again.run(std::stop_token{});
    REQUIRE_MESSAGE(second, (second ? "" : second.error()));
    REQUIRE(second->acked == second->sent);
    add(expected, *second);
    REQUIRE(test::eventually([&] { return assigned(a) > 0 && assigned(b) > 0 && assigned(a) + assigned(b) == 15; }, 60s));
    for (std::size_t hub : {a, b}) {
      CAPTURE(hub);
      REQUIRE_MESSAGE(test::eventually([&] { return projected(stack, hub, expected); }, 120s),
                      "hub " << hub << " did not converge: " << applied(stack, hub) << " events projected");
    }
    // Settled: nothing more arrives (a double count would show up as more), and both answer alike.
    REQUIRE(test::eventually([&] {
      auto ha = stack.get(a, "/healthz"), hb = stack.get(b, "/healthz");
      return ha && hb && (*ha)["lag_total"] == 0 && (*hb)["lag_total"] == 0;
    }, 60s));
    for (const auto& [device, p] : stack.devices(a)) {
      CAPTURE(device);
      CHECK(p["events"].get<std::uint64_t>() == expected.at(device));
    }
    CHECK(reads(stack, b) == reads(stack, a));
    // The hub that only serves answers the same, and never folded anything.
    REQUIRE(test::eventually([&] { return reads(stack, reader) == reads(stack, a); }, 30s));
    CHECK(assigned(reader) == 0);
    CHECK(test::metric(stack, reader, "courtyard_folded_total") == 0);
    // The SOS is raised once: one alert, on every hub, for the wearer who pressed it.
    REQUIRE(second->injected.size() == 1);
    const std::string wearer = second->injected[0].substr(std::string("sos: ").size());
    for (std::size_t hub : {a, b, reader}) {
      CAPTURE(hub);
      std::vector<std::string> sos;
      for (const auto& c : stack.communities()) {
        auto alerts = stack.get(hub, "/api/v1/alerts?limit=1000&rule=sos&community=" + c);
        REQUIRE(alerts);
        for (const auto& alert : (*alerts)["items"]) sos.push_back(alert["id"].get<std::string>());
      }
      REQUIRE(sos.size() == 1);
      CHECK(sos[0].find(":sos:" + wearer + ":") != std::string::npos);
    }
    // The fall's timer, started on the dead hub, fired once on the new owner: the fall is critical.
    for (std::size_t hub : {a, b}) {
      CAPTURE(hub);
      REQUIRE(test::eventually([&] {
        auto f = falls(hub);
        return f.size() == 1 && f[0]["severity"] == "critical";
      }, 60s));
      auto f = falls(hub)[0];
      CHECK(f["id"] == fall["id"]);
      CHECK(f["state"] == "escalated");
      int escalations = 0;
      for (const auto& step : f["timeline"]) {
        if (step["what"] != "escalated") continue;
        ++escalations;
        CHECK(step["at"].get<std::int64_t>() > killed_at);  // by a tick the new owner folded
      }
      CHECK(escalations == 1);
    }
    // The dashboards on the survivors saw it all: their subscription went on through the
    // failover, and the records its frames carried add up to every event.
    for (auto* dashboard : {&dashboard_a, &dashboard_b, &dashboard_reader}) {
      REQUIRE(test::eventually([&] {
        auto seen = dashboard->events();
        return std::all_of(expected.begin(), expected.end(), [&](const auto& e) {
          auto it = seen.find(e.first);
          return it != seen.end() && it->second == e.second;
        }) || !dashboard->trouble().empty();
      }, 30s));
      CHECK(dashboard->trouble() == "");
    }

    // Restarted, the killed hub catches up from the changelog, takes partitions back, and
    // answers the same as the others; nothing is counted twice on the way.
    stack.start_hub(victim);
    REQUIRE(test::eventually([&] { return projected(stack, victim, expected); }, 120s));
    REQUIRE(test::eventually([&] { return reads(stack, victim) == reads(stack, a) && reads(stack, b) == reads(stack, a); }, 60s));
    CHECK(applied(stack, victim) == applied(stack, a));
    // And the group gives it a share again.
    REQUIRE(test::eventually([&] { return assigned(victim) > 0 && assigned(a) + assigned(b) + assigned(victim) == 15; }, 60s));
    CHECK(reads(stack, victim) == reads(stack, a));

    // Every hub's signed audit records, the killed one's included, agree with a replay of the log:
    // a store partly folded and partly applied from the changelog digests as the log says.
    for (std::size_t hub : {std::size_t{0}, std::size_t{1}, std::size_t{2}, reader}) {
      CAPTURE(hub);
      auto [status, out] = test::run_courtyard(stack, {"replay", "audit", "--hub", stack.hub_instance_id(hub)},
                                               "audit-" + std::to_string(hub));
      CHECK_MESSAGE(status == 0, out.substr(out.size() > 3000 ? out.size() - 3000 : 0));
      auto summary = test::last_json_line(out);
      CHECK(summary.value("records", 0) >= 1);
    }
  }
}
