// The whole path against the real Mosquitto and Kafka: simulated devices -> MQTT -> ingest ->
// Kafka -> processors -> RocksDB -> HTTP, with 1% of the payloads bad in every way.
#include <doctest/doctest.h>

#include <set>
#include <thread>

#include "devices/simulator.h"
#include "schemas/event.h"
#include "http_client.h"
#include "services.h"

using namespace courtyard;
using namespace std::chrono_literals;

TEST_SUITE("integration: event path") {
  TEST_CASE("200 devices of every kind send 10000 events: every valid one is counted once and every bad one is dead-lettered with its reason") {
    auto services = test::services();
    std::string prefix = test::unique_name("ep") + "-";
    auto sim = services.simulator({prefix + "north", prefix + "south"});
    sim.devices = 200;
    sim.events = 10000;
    sim.rate = 2500;
    sim.bad_fraction = 0.01;
    sim.flatbuffer_fraction = 0.1;

    test::Stack stack(sim.communities);
    stack.start_ingest();
    stack.start_hub();

    devices::Simulator simulator(sim);
    std::set<std::string> kinds;
    for (const auto& d : simulator.fleet()) kinds.insert(std::string(schemas::to_string(d.registration.kind)));
    CHECK(kinds.size() == 7);  // every kind of device takes part
    REQUIRE_MESSAGE(simulator.provision(), "provisioning failed");

    // Listen for the error replies the devices would get.
    MqttClient::Options listener_options;
    listener_options.username = sim.mqtt.username;
    listener_options.password = sim.mqtt_password;
    auto listener = MqttClient::connect("127.0.0.1", services.mqtt_port, listener_options, 10s);
    REQUIRE(listener);
    for (const auto& c : sim.communities) REQUIRE((*listener)->subscribe("courtyard/v1/" + c + "/+/errors", 1, 10s));

    auto report = simulator.run(std::stop_token{});
    REQUIRE_MESSAGE(report, (report ? "" : report.error()));
    CHECK(report->sent == 10000);
    CHECK(report->acked == 10000);
    CHECK(report->refused == 0);
    CHECK(report->bad.size() == 100);

    REQUIRE_MESSAGE(test::eventually([&] { return test::projections_match(stack, *report); }, 120s),
                    "projections did not converge; hub log: " << test::read_file(stack.hub().log_path()));

    // Every valid event counted once, in its device's projection, by type; nothing lost.
    auto served = stack.devices();
    CHECK(served.size() == 200);
    for (const auto& [device, types] : report->valid) {
      CAPTURE(device);
      const auto& p = served.at(device);
      for (const auto& [type, n] : types) CHECK(p["counts"][type].get<std::uint64_t>() == n);
      CHECK(p["seq"]["gaps"] == 0);
      CHECK(p["registered"] == true);
    }

    // Every bad payload is in the dead-letter topic with its reason and its original bytes...
    std::vector<test::DeadLetterRecord> letters;
    REQUIRE(test::eventually(
        [&] {
          letters = test::read_dead_letters(sim.kafka, prefix);
          return letters.size() >= report->bad.size();
        },
        60s));
    CHECK(letters.size() == report->bad.size());
    std::multiset<std::tuple<std::string, std::string, std::string>> expected, found;
    for (const auto& b : report->bad) expected.emplace(b.device, b.reason, b.payload);
    for (const auto& l : letters) {
      found.emplace(l.device, l.reason, l.payload);
      CHECK_FALSE(l.detail.empty());
    }
    CHECK(found == expected);

    // ...and the device was told why on its errors topic.
    std::multiset<std::pair<std::string, std::string>> told, owed;
    for (const auto& b : report->bad) owed.emplace(b.device, b.reason);
    while (told.size() < owed.size()) {
      auto m = (*listener)->next_message(10s);
      REQUIRE_MESSAGE(m.has_value(), "only " << told.size() << " error replies arrived");
      auto topic = schemas::parse_topic(m->topic);
      REQUIRE(topic);
      auto j = nlohmann::json::parse(m->payload);
      CHECK(j.contains("seq"));
      CHECK_FALSE(j["detail"].get<std::string>().empty());
      told.emplace(topic->device.str(), j["reason"].get<std::string>());
    }
    CHECK(told == owed);

    // The hub's metrics count the rejections by reason.
    auto metrics = test::http_get_text(stack.http_port(), "/metrics", stack.admin_token());
    CHECK(metrics.find("courtyard_rejected_total{reason=\"out_of_range\"}") != std::string::npos);
    CHECK(metrics.find("courtyard_events_total{type=\"gate.pass\"}") != std::string::npos);
  }
}
