// Three hubs sharing the partitions through the changelog (decision 0024), against the real
// brokers: one is killed with SIGKILL under load, the others take its partitions over from the
// changelog and go on; every event is projected once, and every hub answers every community's
// reads with the same content. Restarted, the killed hub rejoins and catches up.
#include <doctest/doctest.h>

#include <thread>

#include "devices/simulator.h"
#include "services.h"

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

}  // namespace

TEST_SUITE("integration: hubs sharing the partitions") {
  TEST_CASE("three hubs share the partitions; one killed with SIGKILL under load is taken over from the changelog: every "
            "event once, every hub answering the same") {
    auto services = test::services();
    const std::string prefix = test::unique_name("trio") + "-";
    auto sim = services.simulator({prefix + "north", prefix + "south", prefix + "east", prefix + "west"});
    sim.devices = 40;
    sim.events = 3000;
    sim.rate = 500;

    test::Stack stack(sim.communities, {{"COURTYARD_HUB_CLUSTER", "true"}, {"COURTYARD_HUB_FOLD_LANES", "2"}});
    stack.start_ingest();
    stack.start_hub();
    for (int i = 0; i < 2; ++i) stack.start_hub(stack.add_hub());
    devices::Simulator simulator(sim);
    REQUIRE(simulator.provision());

    std::expected<devices::SimReport, std::string> report = std::unexpected(std::string("not run"));
    std::jthread devices_thread([&] { report = simulator.run(std::stop_token{}); });

    // Once the group has settled (each hub folding its share of the 15 partitions) and events
    // flow, kill the hub that folded most: its partitions hold these communities.
    auto assigned = [&](std::size_t hub) {
      auto h = stack.get(hub, "/healthz");
      return h ? (*h)["assigned_partitions"].get<int>() : -1;
    };
    REQUIRE(test::eventually([&] {
      return assigned(0) > 0 && assigned(1) > 0 && assigned(2) > 0 && assigned(0) + assigned(1) + assigned(2) == 15;
    }, 90s));
    REQUIRE(test::eventually([&] { return applied(stack, 0) >= 500; }, 90s));
    std::size_t victim = 0;
    double folded[3];
    for (std::size_t hub = 0; hub < 3; ++hub) {
      folded[hub] = test::metric(stack, hub, "courtyard_folded_total");
      if (folded[hub] > folded[victim]) victim = hub;
    }
    REQUIRE(folded[victim] > 0);
    const std::size_t a = victim == 0 ? 1 : 0, b = victim == 2 ? 1 : 2;  // the survivors
    MESSAGE("killing hub " << victim << ", which folded " << folded[victim] << " events on " << assigned(victim)
                           << " partitions");
    stack.hub(victim).kill_now();
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
    // The SOS is raised once: one alert, on every hub, for the wearer who pressed it.
    REQUIRE(second->injected.size() == 1);
    const std::string wearer = second->injected[0].substr(std::string("sos: ").size());
    for (std::size_t hub : {a, b}) {
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

    // Restarted, the killed hub catches up from the changelog, takes partitions back, and
    // answers the same as the others; nothing is counted twice on the way.
    stack.start_hub(victim);
    REQUIRE(test::eventually([&] { return projected(stack, victim, expected); }, 120s));
    REQUIRE(test::eventually([&] { return reads(stack, victim) == reads(stack, a) && reads(stack, b) == reads(stack, a); }, 60s));
    CHECK(applied(stack, victim) == applied(stack, a));
    // And the group gives it a share again.
    REQUIRE(test::eventually([&] { return assigned(victim) > 0 && assigned(a) + assigned(b) + assigned(victim) == 15; }, 60s));
    CHECK(reads(stack, victim) == reads(stack, a));
  }
}
