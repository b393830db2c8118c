// SIGKILL of ingest and of the hub in the middle of a run loses nothing and counts nothing twice:
// neither events nor camera snapshots, nor what the vision processor saw in them. And the log
// itself holds each device message once: ingest appends in transactions and drops a message the
// broker delivers again (decision 14), so no event and no chain position is there twice.
#include <doctest/doctest.h>

#include <thread>

#include "devices/simulator.h"
#include "http_client.h"
#include "services.h"

using namespace courtyard;
using namespace std::chrono_literals;

namespace {

std::uint64_t applied(test::Stack& stack) {
  std::uint64_t n = 0;
  for (const auto& [_, d] : stack.devices()) n += d["events"].get<std::uint64_t>();
  return n;
}

// Snapshots the vision processor analysed, over every camera of the community.
std::uint64_t analysed(test::Stack& stack, const std::string& community) {
  std::uint64_t n = 0;
  if (auto cameras = stack.get("/api/v1/cameras?limit=1000&community=" + community)) {
    for (const auto& c : (*cameras)["items"]) n += c["analysed"].get<std::uint64_t>();
  }
  return n;
}

}  // namespace

TEST_SUITE("integration: crash recovery") {
  TEST_CASE("killing ingest and the hub with SIGKILL mid-run loses no event or snapshot analysis and counts none twice") {
    auto services = test::services();
    std::string prefix = test::unique_name("kill") + "-";
    auto sim = services.simulator({prefix + "east"});
    sim.devices = 60;
    sim.events = 8000;
    sim.rate = 1000;
    sim.scenes_per_minute = 600;  // a gate scene (pass + camera snapshot) every 100 ms

    test::Stack stack(sim.communities);
    stack.start_ingest();
    stack.start_hub();
    auto plate_key = read_secret(stack.dir().str("var/secrets/plate-key"));
    REQUIRE(plate_key);
    sim.plate_key = *plate_key;
    devices::Simulator simulator(sim);
    REQUIRE(simulator.provision());

    std::expected<devices::SimReport, std::string> report = std::unexpected(std::string("not run"));
    std::jthread devices_thread([&] { report = simulator.run(std::stop_token{}); });

    // Kill ingest while events flow; the devices keep publishing into its persistent session.
    REQUIRE(test::eventually([&] { return applied(stack) >= 1500; }, 60s));
    stack.ingest().kill_now();
    stack.start_ingest();

    // Kill the hub while events flow; it must resume from the offsets in its own store.
    REQUIRE(test::eventually([&] { return applied(stack) >= 4000; }, 60s));
    stack.hub().kill_now();
    stack.start_hub();

    // And ingest once more, right as the last events arrive.
    REQUIRE(test::eventually([&] { return applied(stack) >= 7000; }, 60s));
    stack.ingest().kill_now();
    stack.start_ingest();

    devices_thread.join();
    REQUIRE_MESSAGE(report, (report ? "" : report.error()));
    REQUIRE(report->acked == report->sent);
    REQUIRE(report->scenes > 20);

    auto expected = [&](const std::string& device) { return test::total(report->valid.at(device)); };
    REQUIRE_MESSAGE(test::eventually([&] { return test::projections_match(stack, *report); }, 120s),
                    "did not converge; applied " << applied(stack) << " of " << sim.events);
    // Settle: nothing more may arrive after convergence (a double count would show up as more).
    auto lag_zero = [&] {
      auto h = stack.get("/healthz");
      return h && (*h)["lag_total"] == 0;
    };
    REQUIRE(test::eventually(lag_zero, 60s));
    for (const auto& [device, p] : stack.devices()) {
      CAPTURE(device);
      CHECK(p["events"].get<std::uint64_t>() == expected(device));
      for (const auto& [type, n] : report->valid.at(device)) CHECK(p["counts"][type].get<std::uint64_t>() == n);
      CHECK(p["seq"]["gaps"] == 0);
    }
    // Every snapshot analysed exactly once in the projections, though the hub died mid-analysis
    // (the vision processor commits after appending; the folds ignore a snapshot analysed again).
    REQUIRE_MESSAGE(test::eventually([&] { return analysed(stack, sim.communities[0]) >= report->scenes; }, 120s),
                    "analysed " << analysed(stack, sim.communities[0]) << " of " << report->scenes);
    REQUIRE(test::eventually(lag_zero, 60s));
    CHECK(analysed(stack, sim.communities[0]) == report->scenes);

    // The log: every device message once, and the community's chain one position after another.
    std::uint64_t valid = 0;
    for (const auto& [device, counts] : report->valid) valid += test::total(counts);
    const auto log = test::read_community_log(services, sim.communities[0]);
    CHECK(log.doubled == 0);
    CHECK(log.repeated_positions == 0);
    CHECK(log.messages == valid);
    CHECK(log.first_position == 1);
    CHECK(log.last_position == log.positions);
    std::uint64_t ignored = 0;
    for (const auto& [_, p] : stack.devices()) ignored += p["duplicates"].get<std::uint64_t>() + p["stale"].get<std::uint64_t>();
    MESSAGE("redelivered events recognised and ignored after the kills: " << ignored);
  }
}
