// The auditor's replay against a live run: the simulated community with alerts, an operator's
// acknowledgement, a command, a notice and ticks; `courtyard replay verify` must find the
// rebuilt projections identical to the live ones, and must name the record when they are not.
#include <doctest/doctest.h>

#include "http_client.h"
#include "processors/store.h"
#include "services.h"

using namespace courtyard;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// Runs `courtyard replay ...` with the stack's environment: exit status and its JSON summary.
std::pair<int, json> replay(test::Stack& stack, std::vector<std::string> args, const std::string& name) {
  args.insert(args.begin(), {COURTYARD_BIN, "replay"});
  test::Process p(args, stack.env(), stack.dir().str(name + ".log"));
  int status = p.wait();
  auto out = test::read_file(stack.dir().str(name + ".log"));
  MESSAGE(name, ": ", out.substr(0, 4000));
  json summary;
  for (std::size_t at = 0; at < out.size();) {  // the summary is the JSON line among the logs
    auto end = out.find('\n', at);
    auto line = out.substr(at, end - at);
    if (line.starts_with("{")) summary = json::parse(line, nullptr, false);
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return {status, summary};
}

}  // namespace

TEST_SUITE("integration: replay") {
  TEST_CASE("a rebuild from the log after a live run gives projections identical to the live ones, and a changed record is named") {
    auto services = test::services();
    std::string community = test::unique_name("rp");
    test::Stack stack({community}, {{"COURTYARD_HUB_TICK_INTERVAL_MS", "200"}});
    stack.start_ingest();
    stack.start_hub();
    auto sim = services.simulator({community});
    sim.devices = 60;
    sim.rate = 400;
    sim.events = 3000;
    sim.bad_fraction = 0.02;
    sim.anomalies = {"fever", "fall", "smoke", "leak"};
    devices::Simulator simulator(sim);
    REQUIRE(simulator.provision());
    auto report = simulator.run(std::stop_token{});
    REQUIRE(report);
    REQUIRE(test::eventually([&] { return test::projections_match(stack, *report); }, 60s));

    // Operators act: an acknowledgement, a command, a notice; all of them events in the log.
    auto alerts = stack.get("/api/v1/alerts?state=active&community=" + community);
    REQUIRE(alerts);
    REQUIRE_FALSE((*alerts)["items"].empty());
    const std::string alert = (*alerts)["items"][0]["id"];
    CHECK(stack.post("/api/v1/alerts/" + alert + "/ack", {{"note", "on my way"}}).first == 202);
    auto devices = stack.devices();
    CHECK(stack.post("/api/v1/devices/" + devices.begin()->first + "/commands", {{"action", "ping"}}).first == 202);
    CHECK(stack.post("/api/v1/notices", {{"community", community}, {"title", "Lift maintenance"}}).first == 202);
    REQUIRE(test::eventually([&] {
      auto a = stack.get("/api/v1/alerts/" + alert);
      auto n = stack.get("/api/v1/notices?community=" + community);
      return a && (*a)["state"] == "acknowledged" && n && (*n)["count"] == 1;
    }, 30s));

    // The hub keeps running (and ticking) while the auditor verifies.
    auto [status, summary] = replay(stack, {"verify"}, "verify");
    CHECK(status == 0);
    CHECK(summary["equal"] == true);
    CHECK(summary["digests"]["alerts"]["records"].get<int>() >= 4);
    CHECK(summary["digests"]["devices"]["records"].get<int>() >= 60);
    // (the test services' log holds the other tests' communities too: the hub and the rebuild read them all)
    CHECK(summary["digests"]["notices"]["records"].get<int>() >= 1);
    CHECK(summary["digests"]["commands"]["records"].get<int>() >= 1);
    CHECK(summary["digests"]["rejections"]["records"].get<int>() >= 1);

    // A rebuild to a directory reproduces the same digests.
    auto [rebuilt, rebuild_summary] = replay(stack, {"rebuild", "--to", stack.dir().str("rebuilt")}, "rebuild");
    CHECK(rebuilt == 0);
    CHECK(rebuild_summary["digests"]["alerts"]["records"] == summary["digests"]["alerts"]["records"]);

    // Someone edits the live store behind the log's back: verify says no, and names the record.
    stack.hub().terminate();
    {
      processors::StoreConfig config;
      config.dir = stack.dir().str("var") + "/hub/state";
      auto live = processors::Store::open(config);
      REQUIRE(live);
      auto record = json::parse(*(*live)->view().get("alerts/" + alert));
      record["state"] = "resolved";
      REQUIRE((*live)->write({{"alerts/" + alert, record.dump()}}, {}));
    }
    auto [tampered, tampered_summary] = replay(stack, {"verify"}, "verify-tampered");
    CHECK(tampered == 1);
    CHECK(tampered_summary["equal"] == false);
    CHECK(tampered_summary["first_difference"]["key"] == "alerts/" + alert);
    CHECK(tampered_summary["digests"]["alerts"]["equal"] == false);
    CHECK(tampered_summary["digests"]["devices"]["equal"] == true);
  }
}
