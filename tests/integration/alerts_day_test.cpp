// A compressed day in one community over the real Mosquitto and Kafka: normal traffic, then a
// fever at the gate, a fall nobody cancels, a water leak, a smoke alarm, and a meter that goes
// silent. Each alert must appear once, with its severity and location, and acknowledging one
// through the API must change its state. Thresholds are shortened by a rules file (a fall
// escalates after 2 s, a meter is offline after 3 missed 1-s heartbeats); ticks every 200 ms.
#include <doctest/doctest.h>

#include <fstream>
#include <set>

#include "devices/provisioner.h"
#include "http_client.h"
#include "services.h"

using namespace courtyard;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

struct Device {
  schemas::Registration registration;
  std::unique_ptr<MqttClient> client;
  std::uint64_t seq = 0;

  void send(const std::string& type, const json& body) {
    json payload{{"seq", ++seq}, {"ts", std::chrono::duration_cast<std::chrono::milliseconds>(
                                            std::chrono::system_clock::now().time_since_epoch()).count()},
                 {"type", type}, {"body", body}};
    auto rc = client->publish_and_wait(devices::telemetry_topic(registration), payload.dump(), 1, 10s);
    REQUIRE(rc);
    REQUIRE(*rc < 128);
  }
};

}  // namespace

TEST_SUITE("integration: alerts") {
  TEST_CASE("a day in a community raises each alert once with its severity and location, and an acknowledgement changes its state") {
    auto services = test::services();
    std::string community = test::unique_name("day");
    test::TempDir rules_dir;
    std::ofstream(rules_dir.str("rules.toml")) << "[defaults]\nfall_escalate_s = 2\ncritical_ack_timeout_s = 600\n"
                                                  "[defaults.heartbeat_s]\nmeter = 1\n";
    test::Stack stack({community}, {{"COURTYARD_HUB_RULES_FILE", rules_dir.str("rules.toml")},
                                    {"COURTYARD_INGEST_TICK_INTERVAL_MS", "200"}});
    stack.start_ingest();
    stack.start_hub();

    auto provisioner = devices::Provisioner::connect({services.kafka(), services.mqtt(), services.service_password()});
    REQUIRE(provisioner);
    using K = schemas::DeviceKind;
    auto reg = [&](const std::string& name, K kind, const std::string& unit, const std::string& location) {
      return schemas::Registration{DeviceId(community + "-" + name), CommunityId(community), kind, unit, location, 1};
    };
    std::vector<devices::NewDevice> fleet{{reg("gate", K::Gate, "", "East gate"), ""},
                                          {reg("watch", K::Wearable, "b2-0301", "Building 2, flat 301"), ""},
                                          {reg("leak", K::HomeSensor, "b2-0301", "Building 2, flat 301, kitchen"), ""},
                                          {reg("smoke", K::HomeSensor, "b5-1102", "Building 5, flat 1102"), ""},
                                          {reg("meter", K::Meter, "b1-0101", "Building 1, flat 101"), ""}};
    auto passwords = (*provisioner)->add(fleet);
    REQUIRE(passwords);
    std::map<std::string, Device> d;
    for (std::size_t i = 0; i < fleet.size(); ++i) {
      MqttClient::Options o;
      o.client_id = o.username = fleet[i].registration.device.str();
      o.password = (*passwords)[i];
      auto c = MqttClient::connect("127.0.0.1", services.mqtt_port, o, 10s);
      REQUIRE(c);
      d[fleet[i].registration.device.str().substr(community.size() + 1)] = Device{fleet[i].registration, std::move(*c)};
    }

    // The household's smoke detector listens on its cmd topic; staff listen to the community's alerts.
    REQUIRE(d["smoke"].client->subscribe(schemas::topic_for(CommunityId(community), DeviceId(community + "-smoke"), "cmd"), 1, 10s));
    MqttClient::Options staff_options;
    staff_options.username = "courtyard-service";
    staff_options.password = services.service_password();
    auto staff = MqttClient::connect("127.0.0.1", services.mqtt_port, staff_options, 10s);
    REQUIRE(staff);
    REQUIRE((*staff)->subscribe("courtyard/v1/" + community + "/alerts", 1, 10s));

    // Morning: ordinary traffic, no alert.
    for (int i = 0; i < 5; ++i) {
      d["gate"].send("gate.pass", {{"credential", "face"}, {"subject", "subj-" + std::to_string(i)}, {"direction", "in"},
                                   {"decision", "granted"}, {"temperature_c", 36.4 + 0.1 * i}});
    }
    d["watch"].send("wearable.vitals", {{"heart_rate_bpm", 70}, {"spo2_pct", 97}, {"moving", true}});
    d["meter"].send("device.status", {{"battery_pct", 90}});
    d["smoke"].send("home.sensor", {{"sensor", "smoke"}, {"state", "ok"}});
    // Then the day's incidents.
    d["gate"].send("gate.pass", {{"credential", "card"}, {"subject", "subj-fever"}, {"direction", "in"},
                                 {"decision", "granted"}, {"temperature_c", 38.4}});
    d["watch"].send("wearable.alarm", {{"kind", "fall"}});
    d["leak"].send("home.sensor", {{"sensor", "water_leak"}, {"state", "leak"}});
    d["smoke"].send("home.sensor", {{"sensor", "smoke"}, {"state", "alarm"}});
    // The meter says nothing more.

    auto alerts = [&] {
      std::map<std::string, json> by_rule;
      auto page = stack.get("/api/v1/alerts?limit=1000&community=" + community);
      if (page) {
        for (auto& a : (*page)["items"]) by_rule[a["rule"].get<std::string>() + "#" + a["id"].get<std::string>()] = a;
      }
      return by_rule;
    };
    auto rule_of = [&](const std::map<std::string, json>& all, const std::string& rule) {
      std::vector<json> out;
      for (const auto& [k, a] : all) if (a["rule"] == rule) out.push_back(a);
      return out;
    };
    REQUIRE_MESSAGE(test::eventually(
                        [&] {
                          auto all = alerts();
                          auto fall = rule_of(all, "fall");
                          return all.size() >= 5 && fall.size() == 1 && fall[0]["severity"] == "critical" &&
                                 rule_of(all, "offline").size() == 1;
                        },
                        60s),
                    "alerts so far: " << json(alerts()).dump(1));
    auto all = alerts();
    CHECK(all.size() == 5);  // nothing else was raised

    auto fever = rule_of(all, "fever");
    REQUIRE(fever.size() == 1);
    CHECK(fever[0]["severity"] == "major");
    CHECK(fever[0]["subject"] == "subj-fever");
    CHECK(fever[0]["location"] == "East gate");
    CHECK(fever[0]["state"] == "open");

    auto fall = rule_of(all, "fall");
    CHECK(fall[0]["state"] == "escalated");
    CHECK(fall[0]["unit"] == "b2-0301");
    CHECK(fall[0]["location"] == "Building 2, flat 301");

    auto leak = rule_of(all, "water_leak");
    REQUIRE(leak.size() == 1);
    CHECK(leak[0]["severity"] == "major");
    CHECK(leak[0]["location"] == "Building 2, flat 301, kitchen");

    auto smoke = rule_of(all, "smoke");
    REQUIRE(smoke.size() == 1);
    CHECK(smoke[0]["severity"] == "critical");
    CHECK(smoke[0]["unit"] == "b5-1102");

    auto offline = rule_of(all, "offline");
    CHECK(offline[0]["severity"] == "major");
    CHECK(offline[0]["device"] == community + "-meter");

    // The community projections tell the same story.
    auto gate = stack.get("/api/v1/gates/" + community + "-gate");
    REQUIRE(gate);
    CHECK((*gate)["passes"] == 6);
    CHECK((*gate)["fevers"] == 1);
    CHECK((*gate)["location"] == "East gate");
    auto occupancy = stack.get("/api/v1/communities/" + community + "/occupancy");
    REQUIRE(occupancy);
    CHECK((*occupancy)["people_now"] == 6);
    auto home = stack.get("/api/v1/homes/" + community + "/b5-1102");
    REQUIRE(home);
    CHECK((*home)["sensors"][community + "-smoke"]["state"] == "alarm");
    CHECK((*home)["open_alerts"].size() == 1);
    auto elder = stack.get("/api/v1/elders/" + community + "-watch");
    REQUIRE(elder);
    CHECK((*elder)["wellbeing"] == "alert");
    CHECK((*elder)["alarms"].back()["kind"] == "fall");
    CHECK(stack.get("/api/v1/devices/" + community + "-meter").value()["online"] == false);
    CHECK(stack.get("/api/v1/devices/" + community + "-gate").value()["online"] == true);

    // Staff acknowledge the smoke alarm from the API; the action goes through the log.
    std::string smoke_id = smoke[0]["id"];
    auto [status, accepted] = stack.post("/api/v1/alerts/" + smoke_id + "/ack", {{"actor", "guard-3"}, {"note", "on my way"}});
    CHECK(status == 202);
    CHECK(accepted["accepted"] == true);
    REQUIRE(test::eventually(
        [&] {
          auto a = stack.get("/api/v1/alerts/" + smoke_id);
          return a && (*a)["state"] == "acknowledged";
        },
        30s));
    auto acked = *stack.get("/api/v1/alerts/" + smoke_id);
    CHECK(acked["timeline"].back()["what"] == "acknowledged");
    // The actor is the token's id and label, not what the body claims.
    CHECK(acked["timeline"].back()["by"].get<std::string>().ends_with("(test admin)"));
    CHECK(stack.get("/api/v1/alerts?state=acknowledged&community=" + community).value()["count"] == 1);
    CHECK(stack.get("/api/v1/alerts?severity=critical&community=" + community).value()["count"] == 2);

    // The acknowledgement is pushed to the household's devices and to staff over MQTT.
    auto pushed = [&](MqttClient& client, const std::string& change) {
      return test::eventually(
          [&] {
            while (auto m = client.next_message(10ms)) {
              auto j = json::parse(m->payload, nullptr, false);
              if (j.is_object() && j["body"]["alert_id"] == smoke_id && j["body"]["change"] == change) return true;
            }
            return false;
          },
          30s);
    };
    CHECK(pushed(*d["smoke"].client, "acknowledged"));
    CHECK(pushed(**staff, "acknowledged"));

    // Resolving it twice: the second is refused, not duplicated.
    CHECK(stack.post("/api/v1/alerts/" + smoke_id + "/resolve", json::object()).first == 202);
    REQUIRE(test::eventually([&] { return stack.get("/api/v1/alerts/" + smoke_id).value()["state"] == "resolved"; }, 30s));
    CHECK(stack.post("/api/v1/alerts/" + smoke_id + "/resolve", json::object()).first == 409);
    CHECK(stack.post("/api/v1/alerts/nope/ack", json::object()).first == 404);

    // Every alert change is published to courtyard.alerts.v1, keyed by the alert id.
    std::set<std::string> published;
    REQUIRE(test::eventually(
        [&] {
          published.clear();
          auto ok = read_to_end(services.kafka(), services.kafka().alerts_topic, [&](const rd_kafka_message_t& m) {
            std::string key(static_cast<const char*>(m.key), m.key_len);
            if (key.starts_with(community)) published.insert(key);
          });
          return ok && published.size() == 5;
        },
        30s));
  }
}
