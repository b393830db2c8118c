// The broker, not Courtyard's code, keeps devices in their lanes: per-device credentials and
// roles from the dynamic-security plugin.
#include <doctest/doctest.h>

#include "devices/provisioner.h"
#include "services.h"

using namespace courtyard;
using namespace std::chrono_literals;

namespace {

struct TwoDevices {
  test::Services services = test::services();
  std::string community = test::unique_name("acl");
  schemas::Registration a{DeviceId(community + "-meter-a"), CommunityId(community), schemas::DeviceKind::Meter, "u1", "", 1};
  schemas::Registration b{DeviceId(community + "-meter-b"), CommunityId(community), schemas::DeviceKind::Meter, "u2", "", 1};
  std::string password_a, password_b;

  TwoDevices() {
    auto provisioner = devices::Provisioner::connect({services.kafka(), services.mqtt(), services.service_password()});
    REQUIRE_MESSAGE(provisioner, (provisioner ? "" : provisioner.error()));
    std::vector<devices::NewDevice> requests{{a, ""}, {b, "chosen-password-b"}};
    auto passwords = (*provisioner)->add(requests);
    REQUIRE_MESSAGE(passwords, (passwords ? "" : passwords.error().detail));
    password_a = (*passwords)[0];
    password_b = (*passwords)[1];
  }

  std::expected<std::unique_ptr<MqttClient>, std::string> connect(const std::string& user, const std::string& password,
                                                                  std::string client_id = "") {
    MqttClient::Options options;
    options.client_id = client_id.empty() ? user : client_id;
    options.username = user;
    options.password = password;
    return MqttClient::connect("127.0.0.1", services.mqtt_port, options, 10s);
  }
  std::unique_ptr<devices::Provisioner> provisioner() {
    auto p = devices::Provisioner::connect({services.kafka(), services.mqtt(), services.service_password()});
    REQUIRE_MESSAGE(p, (p ? "" : p.error()));
    return std::move(*p);
  }
};

}  // namespace

TEST_SUITE("integration: broker access") {
  TEST_CASE("an unregistered client is refused at connect") {
    TwoDevices f;
    auto client = f.connect(f.community + "-ghost", "guess");
    REQUIRE_FALSE(client.has_value());
    CHECK(client.error().find("refused") != std::string::npos);
  }

  TEST_CASE("a registered device with a wrong password is refused at connect") {
    TwoDevices f;
    CHECK_FALSE(f.connect(f.a.device.str(), "not-its-password").has_value());
  }

  TEST_CASE("a given password is kept and a generated one is long and random") {
    TwoDevices f;
    CHECK(f.password_b == "chosen-password-b");
    CHECK(f.password_a.size() >= 20);
    CHECK(f.connect(f.b.device.str(), "chosen-password-b").has_value());
  }

  TEST_CASE("a device may publish on its own telemetry topic but not on another device's") {
    TwoDevices f;
    // One connection per publish: what the broker does with a connection after refusing a
    // publish is its own business (seen here: it sometimes closes it); the refusal is what counts.
    auto publish_as_a = [&](const std::string& topic) -> std::expected<int, std::string> {
      auto a = f.connect(f.a.device.str(), f.password_a);
      if (!a) return std::unexpected(a.error());
      return (*a)->publish_and_wait(topic, R"({"seq":1})", 1, 10s);
    };
    auto own = publish_as_a(devices::telemetry_topic(f.a));
    REQUIRE_MESSAGE(own, (own ? "" : own.error()));
    CHECK(*own < 128);  // 0, or 16 "no matching subscribers" while no ingest listens
    auto other = publish_as_a(devices::telemetry_topic(f.b));
    REQUIRE_MESSAGE(other, (other ? "" : other.error()));
    CHECK(*other == 135);  // MQTT 5: not authorized
    auto notices = publish_as_a("courtyard/v1/" + f.community + "/notices");
    REQUIRE_MESSAGE(notices, (notices ? "" : notices.error()));
    CHECK(*notices == 135);
  }

  TEST_CASE("a device may subscribe to its own cmd topic but not to another device's") {
    TwoDevices f;
    auto a = f.connect(f.a.device.str(), f.password_a);
    REQUIRE(a);
    CHECK((*a)->subscribe(schemas::topic_for(f.a.community, f.a.device, "cmd"), 1, 10s).has_value());
    CHECK_FALSE((*a)->subscribe(schemas::topic_for(f.b.community, f.b.device, "cmd"), 1, 10s).has_value());
    CHECK_FALSE((*a)->subscribe("courtyard/#", 1, 10s).has_value());
  }

  TEST_CASE("attack: adding a device that exists is a conflict, and its password still works") {
    TwoDevices f;
    // The review's probe: provisioning an existing id reset its password and handed over the device.
    std::vector<devices::NewDevice> again{{f.a, "attacker-password"}};
    auto result = f.provisioner()->add(again);
    REQUIRE_FALSE(result);
    CHECK(result.error().code == devices::ProvisionError::Code::Conflict);
    CHECK_FALSE(f.connect(f.a.device.str(), "attacker-password").has_value());
    CHECK(f.connect(f.a.device.str(), f.password_a).has_value());
  }

  TEST_CASE("attack: rotation re-keys a device of the same community only, never another community's device") {
    TwoDevices f;
    auto moved = f.a;
    moved.community = CommunityId(f.community + "-other");
    std::vector<devices::NewDevice> takeover{{moved, "attacker-password"}};
    auto refused = f.provisioner()->add(takeover, devices::IfExists::Rotate);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().code == devices::ProvisionError::Code::Conflict);
    CHECK(f.connect(f.a.device.str(), f.password_a).has_value());
    std::vector<devices::NewDevice> rotate{{f.a, "rotated-password"}};
    REQUIRE(f.provisioner()->add(rotate, devices::IfExists::Rotate));
    CHECK_FALSE(f.connect(f.a.device.str(), f.password_a).has_value());
    CHECK(f.connect(f.a.device.str(), "rotated-password").has_value());
  }

  TEST_CASE("attack: Courtyard's own accounts and reserved ids can never be provisioned or rotated") {
    TwoDevices f;
    for (const char* id : {"courtyard-service", "admin", "courtyard-ingest-0", "courtyard-hub", "operator", "_staff"}) {
      CAPTURE(id);
      for (auto mode : {devices::IfExists::Refuse, devices::IfExists::Rotate}) {
        schemas::Registration r{DeviceId(id), CommunityId(f.community), schemas::DeviceKind::Gate, "", "", 1};
        std::vector<devices::NewDevice> request{{r, "attacker-password"}};
        auto result = f.provisioner()->add(request, mode);
        REQUIRE_FALSE(result);
        CHECK(result.error().code == devices::ProvisionError::Code::Reserved);
      }
    }
    // The service account still works with its own password, and not with the attacker's.
    CHECK(f.connect("courtyard-service", f.services.service_password(), f.community + "-svc").has_value());
    CHECK_FALSE(f.connect("courtyard-service", "attacker-password", f.community + "-svc2").has_value());
  }

  TEST_CASE("attack: a device cannot connect under another client id, so it cannot take over ingest's session") {
    TwoDevices f;
    // The review's probe: a device connected with ingest's client id, took over its persistent
    // session and received other devices' telemetry.
    for (const std::string& id : {std::string("courtyard-ingest-0"), std::string("courtyard-ingest-0-snapshots"),
                                  f.b.device.str(), std::string("")}) {
      CAPTURE(id);
      if (id.empty()) continue;
      auto stolen = f.connect(f.a.device.str(), f.password_a, id);
      CHECK_FALSE(stolen.has_value());
    }
    CHECK(f.connect(f.a.device.str(), f.password_a).has_value());  // as itself it connects
  }

  TEST_CASE("attack: delivery is denied by default: a device receives only its own topics and its household's notices") {
    TwoDevices f;
    auto a = f.connect(f.a.device.str(), f.password_a);
    REQUIRE(a);
    const std::string own_notices = "courtyard/v1/" + f.community + "/notices/" + f.a.unit;
    const std::string other_notices = "courtyard/v1/" + f.community + "/notices/" + f.b.unit;
    CHECK((*a)->subscribe(own_notices, 1, 10s).has_value());
    CHECK_FALSE((*a)->subscribe(other_notices, 1, 10s).has_value());
    CHECK_FALSE((*a)->subscribe("courtyard/v1/" + f.community + "/notices/#", 1, 10s).has_value());
    CHECK((*a)->subscribe("courtyard/v1/" + f.community + "/notices", 1, 10s).has_value());
    MqttClient::Options o;
    o.client_id = f.community + "-svc";
    o.username = "courtyard-service";
    o.password = f.services.service_password();
    auto service = MqttClient::connect("127.0.0.1", f.services.mqtt_port, o, 10s);
    REQUIRE(service);
    REQUIRE((*service)->publish_and_wait(other_notices, R"({"title":"b's"})", 1, 10s));
    REQUIRE((*service)->publish_and_wait(own_notices, R"({"title":"a's"})", 1, 10s));
    auto m = (*a)->next_message(10s);
    REQUIRE(m);
    // b's was published first: had the broker delivered it to a, it would have come first.
    CHECK(m->topic == own_notices);
  }
}
