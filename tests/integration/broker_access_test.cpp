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
    REQUIRE_MESSAGE(passwords, (passwords ? "" : passwords.error()));
    password_a = (*passwords)[0];
    password_b = (*passwords)[1];
  }

  std::expected<std::unique_ptr<MqttClient>, std::string> connect(const std::string& user, const std::string& password) {
    MqttClient::Options options;
    options.client_id = user;
    options.username = user;
    options.password = password;
    return MqttClient::connect("127.0.0.1", services.mqtt_port, options, 10s);
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

  TEST_CASE("adding a device again resets its password") {
    TwoDevices f;
    auto provisioner = devices::Provisioner::connect({f.services.kafka(), f.services.mqtt(), f.services.service_password()});
    REQUIRE(provisioner);
    std::vector<devices::NewDevice> again{{f.a, "rotated-password"}};
    REQUIRE((*provisioner)->add(again));
    CHECK_FALSE(f.connect(f.a.device.str(), f.password_a).has_value());
    CHECK(f.connect(f.a.device.str(), "rotated-password").has_value());
  }
}
