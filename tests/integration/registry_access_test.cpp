// The registry over the real brokers: a visitor's invitation reaches the gate as an access
// update, the gate's passes are counted by who passed, a stranger's refusal raises an alert, and
// the household sees its visitor inside.
#include <doctest/doctest.h>

#include <set>

#include "devices/provisioner.h"
#include "http_client.h"
#include "services.h"

using namespace courtyard;
using namespace std::chrono_literals;
using nlohmann::json;

TEST_SUITE("integration: registry and access") {
  TEST_CASE("an invitation reaches the gate, and passes are told apart by who passed") {
    auto services = test::services();
    std::string community = test::unique_name("reg");
    test::Stack stack({community}, {{"COURTYARD_INGEST_TICK_INTERVAL_MS", "200"}});
    stack.start_ingest();
    stack.start_hub();

    auto provisioner = devices::Provisioner::connect({services.kafka(), services.mqtt(), services.service_password()});
    REQUIRE(provisioner);
    schemas::Registration gate{DeviceId(community + "-gate"), CommunityId(community), schemas::DeviceKind::Gate, "",
                               "North gate", 1};
    std::vector<devices::NewDevice> fleet{{gate, ""}};
    auto passwords = (*provisioner)->add(fleet);
    REQUIRE(passwords);
    MqttClient::Options o;
    o.client_id = o.username = gate.device.str();
    o.password = (*passwords)[0];
    auto client = MqttClient::connect("127.0.0.1", services.mqtt_port, o, 10s);
    REQUIRE(client);
    REQUIRE((*client)->subscribe(schemas::topic_for(gate.community, gate.device, "cmd"), 1, 10s));
    // The hub must know the gate before it can address it.
    REQUIRE(test::eventually([&] { return stack.get("/api/v1/devices/" + gate.device.str()).has_value(); }, 30s));

    auto now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    CHECK(stack.post("/api/v1/registry/" + community, {{"kind", "person"}, {"id", "res-1"}, {"unit", "b2-0101"}}).first == 202);
    CHECK(stack.post("/api/v1/registry/" + community,
                     {{"kind", "person"}, {"id", "vis-1"}, {"role", "visitor"}, {"unit", "b2-0101"},
                      {"valid_from", now - 60'000}, {"valid_to", now + 3'600'000}})
              .first == 202);

    // The gate is told who may pass.
    std::set<std::string> allowed;
    REQUIRE(test::eventually(
        [&] {
          while (auto m = (*client)->next_message(10ms)) {
            auto j = json::parse(m->payload, nullptr, false);
            if (j.is_object() && j["command"] == "access_update" && j["body"]["allowed"] == true) {
              allowed.insert(j["body"]["id"].get<std::string>());
            }
          }
          return allowed == std::set<std::string>{"res-1", "vis-1"};
        },
        30s));

    std::uint64_t seq = 0;
    auto pass = [&](const std::string& subject, const std::string& decision) {
      json payload{{"seq", ++seq}, {"ts", now}, {"type", "gate.pass"},
                   {"body", {{"credential", "qr"}, {"subject", subject}, {"direction", "in"}, {"decision", decision}}}};
      auto rc = (*client)->publish_and_wait(devices::telemetry_topic(gate), payload.dump(), 1, 10s);
      REQUIRE(rc);
      REQUIRE(*rc < 128);
    };
    pass("res-1", "granted");
    pass("vis-1", "granted");
    pass("stranger-7", "denied");

    REQUIRE(test::eventually(
        [&] {
          auto g = stack.get("/api/v1/gates/" + gate.device.str());
          return g && (*g)["passes"] == 3;
        },
        30s));
    auto g = *stack.get("/api/v1/gates/" + gate.device.str());
    CHECK(g["by_subject_kind"]["resident"] == 1);
    CHECK(g["by_subject_kind"]["visitor"] == 1);
    CHECK(g["by_subject_kind"]["unknown"] == 1);
    CHECK(g["denials_by_reason"]["unspecified"] == 1);

    auto home = stack.get("/api/v1/homes/" + community + "/b2-0101");
    REQUIRE(home);
    CHECK((*home)["people_inside"] == json::array({"res-1", "vis-1"}));

    REQUIRE(test::eventually(
        [&] {
          auto a = stack.get("/api/v1/alerts?rule=unknown_subject&community=" + community);
          return a && (*a)["count"] == 1;
        },
        30s));
    auto alert = (*stack.get("/api/v1/alerts?rule=unknown_subject&community=" + community))["items"][0];
    CHECK(alert["subject"] == "stranger-7");
    CHECK(alert["location"] == "North gate");

    auto entry = stack.get("/api/v1/registry/" + community + "/person/vis-1");
    REQUIRE(entry);
    CHECK((*entry)["role"] == "visitor");
  }
}
