// Gate cameras over the real Mosquitto and Kafka: a snapshot published by a camera is analysed by
// the hub's vision processor, and what it saw becomes alerts, projections and a blurred image.
#include <doctest/doctest.h>

#include <fstream>

#include "common/digest.h"
#include "devices/simulator.h"
#include "devices/provisioner.h"
#include "http_client.h"
#include "hub/config.h"
#include "ingest/bridge.h"
#include "processors/vision.h"
#include "schemas/registry.h"
#include "services.h"

using namespace courtyard;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

std::string sample(const std::string& name) {
  auto data = test::read_file(std::filesystem::path("/usr/share/doc/opencv-doc/examples/data") / name);
  REQUIRE_MESSAGE(!data.empty(), name, " is missing: run scripts/setup (opencv-doc)");
  return data;
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

struct Device {
  schemas::Registration registration;
  std::unique_ptr<MqttClient> client;
  std::uint64_t seq = 0;

  void publish(const std::string& channel, const std::string& type, const json& body) {
    json payload{{"seq", ++seq}, {"ts", now_ms()}, {"type", type}, {"body", body}};
    auto rc = client->publish_and_wait(schemas::topic_for(registration.community, registration.device, channel),
                                       payload.dump(), 1, 10s);
    REQUIRE(rc);
    REQUIRE(*rc < 128);
  }
  void snapshot(const std::string& gate, const std::string& jpeg) {
    publish("snapshot", "camera.snapshot", {{"gate", gate}, {"jpeg", base64(jpeg)}});
  }
};

struct Site {
  test::Services services = test::services();
  std::string community = test::unique_name("cam");
  test::Stack stack;
  std::map<std::string, Device> devices;

  explicit Site(std::map<std::string, std::string> env = {}) : stack({community}, std::move(env)) {
    stack.start_ingest();
    stack.start_hub();
  }
  Device& add(const std::string& name, schemas::DeviceKind kind, const std::string& location) {
    auto provisioner = devices::Provisioner::connect({services.kafka(), services.mqtt(), services.service_password()});
    REQUIRE(provisioner);
    devices::NewDevice d{{DeviceId(community + "-" + name), CommunityId(community), kind, "", location, 1}, ""};
    auto passwords = (*provisioner)->add(std::span(&d, 1));
    REQUIRE(passwords);
    MqttClient::Options o;
    o.client_id = o.username = d.registration.device.str();
    o.password = passwords->front();
    auto c = MqttClient::connect("127.0.0.1", services.mqtt_port, o, 10s);
    REQUIRE(c);
    return devices[name] = Device{d.registration, std::move(*c)};
  }
  std::string id(const std::string& name) const { return community + "-" + name; }
  std::vector<json> alerts(const std::string& rule) {
    std::vector<json> out;
    if (auto page = stack.get("/api/v1/alerts?limit=1000&rule=" + rule + "&community=" + community)) {
      for (auto& a : (*page)["items"]) out.push_back(a);
    }
    return out;
  }
  // The camera's projection once it has analysed `n` snapshots.
  json camera_after(const std::string& name, std::uint64_t n) {
    std::optional<json> camera;
    REQUIRE_MESSAGE(test::eventually(
                        [&] {
                          camera = stack.get("/api/v1/cameras/" + id(name));
                          return camera && (*camera)["analysed"].get<std::uint64_t>() >= n;
                        },
                        60s),
                    "camera: " << (camera ? camera->dump() : "none") << "\nhub log:\n"
                               << test::read_file(stack.hub().log_path()));
    return *camera;
  }
};

}  // namespace

TEST_SUITE("integration: gate cameras") {
  TEST_CASE("one snapshot with two faces after one granted pass raises exactly one tailgating alert; the image served has no face") {
    Site site;
    auto& gate = site.add("gate", schemas::DeviceKind::Gate, "North gate");
    auto& camera = site.add("cam", schemas::DeviceKind::Camera, "North gate camera");

    gate.publish("telemetry", "gate.pass",
                 {{"credential", "card"}, {"subject", "subj-1"}, {"direction", "in"}, {"decision", "granted"}});
    auto two_people = processors::side_by_side_jpeg({sample("messi5.jpg"), sample("messi5.jpg")});
    REQUIRE(two_people);
    camera.snapshot(site.id("gate"), *two_people);

    auto seen = site.camera_after("cam", 1);
    REQUIRE(seen["recent"].size() == 1);
    const auto& record = seen["recent"][0];
    CHECK(record["faces"] == 2);
    CHECK(record["verdict"] == "tailgating");
    CHECK(record["passes"].size() == 1);
    CHECK(seen["gate"] == site.id("gate"));
    CHECK(seen["location"] == "North gate camera");
    auto tailgating = site.alerts("tailgating");
    REQUIRE(tailgating.size() == 1);
    CHECK(tailgating[0]["severity"] == "major");
    CHECK(tailgating[0]["location"] == "North gate");
    CHECK(tailgating[0]["detail"].get<std::string>().find("2 people, 1 pass(es) granted") != std::string::npos);
    const auto snapshot_id = record["snapshot_id"].get<std::uint64_t>();
    CHECK(tailgating[0]["snapshot_id"] == snapshot_id);

    SUBCASE("the image the hub serves is the snapshot with both faces blurred, and only to staff") {
      const std::string path = "/api/v1/snapshots/" + std::to_string(snapshot_id) + ".jpg";
      auto status = [&](const std::string& target, const std::string& token) {
        auto r = test::http_get("127.0.0.1", site.stack.http_port(), target, token);
        return r ? r->status : 0;
      };
      auto image = test::http_get("127.0.0.1", site.stack.http_port(), path, site.stack.admin_token());
      REQUIRE(image);
      REQUIRE(image->status == 200);
      REQUIRE(schemas::jpeg_info(image->body));
      auto detector = processors::FaceDetector::open({});
      REQUIRE(detector);
      auto scan = (*detector)->scan(image->body);
      REQUIRE(scan);
      CHECK(scan->width == 2 * 548);
      CHECK(scan->faces.empty());
      CHECK(status(path, site.stack.token("staff", site.community)) == 200);
      // Not theirs, so as unknown to them as a snapshot that does not exist.
      CHECK(status(path, site.stack.token("staff", "elsewhere")) == 404);
      CHECK(status(path, site.stack.token("resident", site.community, "b1-0101")) == 404);
      CHECK(status("/api/v1/snapshots/12345", site.stack.admin_token()) == 404);
    }

    SUBCASE("the log holds the snapshot without its image, and what the vision processor saw") {
      std::optional<schemas::Event> logged_snapshot, analysis;
      auto read = read_to_end(site.services.kafka(), site.services.kafka().events_topic, [&](const rd_kafka_message_t& m) {
        auto e = schemas::decode(std::string_view(static_cast<const char*>(m.payload), m.len));
        if (!e || e->community.str() != site.community) return;
        if (std::holds_alternative<schemas::CameraSnapshot>(e->body)) logged_snapshot = *e;
        if (std::holds_alternative<schemas::VisionAnalysis>(e->body)) analysis = *e;
      });
      REQUIRE(read);
      REQUIRE(logged_snapshot);
      const auto& s = std::get<schemas::CameraSnapshot>(logged_snapshot->body);
      CHECK(s.jpeg.empty());
      CHECK(s.image_bytes == two_people->size());
      CHECK(s.image_sha256 == sha256_hex(*two_people));
      CHECK(s.width == 2 * 548);
      CHECK(logged_snapshot->event_id == snapshot_id);
      REQUIRE(analysis);
      CHECK(std::get<schemas::VisionAnalysis>(analysis->body).faces == 2);
      CHECK(analysis->chain_seq > logged_snapshot->chain_seq);  // appended by ingest, in the community's chain
    }

    SUBCASE("the image itself is on the snapshots topic, whose retention is the configured one") {
      auto kafka = site.services.kafka();
      const std::string topic = site.stack.env().at("COURTYARD_KAFKA_SNAPSHOTS_TOPIC");
      std::string image;
      REQUIRE(read_to_end(kafka, topic, [&](const rd_kafka_message_t& m) {
        auto e = schemas::decode(std::string_view(static_cast<const char*>(m.payload), m.len));
        if (e && e->event_id == snapshot_id) image = std::get<schemas::CameraSnapshot>(e->body).jpeg;
      }));
      CHECK(image == *two_people);
      auto configs = describe_topic(kafka, topic);
      REQUIRE(configs);
      auto expected = ingest::snapshot_topic_configs(std::chrono::minutes(hub::Config{}.vision.raw_retention_minutes));
      REQUIRE(expected);
      CHECK(configs->at("retention.ms") == expected->at("retention.ms"));
      CHECK(configs->at("segment.ms") == expected->at("segment.ms"));
      CHECK(configs->at("cleanup.policy") == "delete");
    }
  }

  TEST_CASE("a vehicle snapshot whose plate is not the one the gate let in raises a plate mismatch; a bad image a clear refusal") {
    Site site;
    auto& ramp = site.add("ramp", schemas::DeviceKind::VehicleGate, "Garage ramp");
    auto& camera = site.add("rampcam", schemas::DeviceKind::Camera, "Garage ramp camera");
    // The hub made the plate key on its first start; the gate's plate reader tokenises with the same key.
    auto key = read_secret(site.stack.dir().str("var/secrets/plate-key"));
    REQUIRE(key);

    ramp.publish("telemetry", "vehicle.pass",
                 {{"plate", schemas::plate_token(*key, "AB123CD")}, {"direction", "in"}, {"decision", "granted"}});
    camera.snapshot(site.id("ramp"), processors::render_plate_jpeg("AB123CD"));
    auto first = site.camera_after("rampcam", 1);
    CHECK(first["recent"][0]["verdict"] == "ok");
    CHECK(first["recent"][0]["plate_token"] == schemas::plate_token(*key, "AB123CD"));

    ramp.publish("telemetry", "vehicle.pass",
                 {{"plate", schemas::plate_token(*key, "XY987ZK")}, {"direction", "in"}, {"decision", "granted"}});
    camera.snapshot(site.id("ramp"), processors::render_plate_jpeg("LU456MN"));
    auto second = site.camera_after("rampcam", 2);
    CHECK(second["recent"][1]["verdict"] == "plate_mismatch");
    auto mismatch = site.alerts("plate_mismatch");
    REQUIRE(mismatch.size() == 1);
    CHECK(mismatch[0]["location"] == "Garage ramp");
    CHECK(mismatch[0]["detail"].get<std::string>().find(schemas::plate_token(*key, "LU456MN")) != std::string::npos);
    // No plate's text anywhere in what the hub serves.
    CHECK(site.stack.get("/api/v1/cameras/" + site.id("rampcam"))->dump().find("LU456MN") == std::string::npos);

    // A truncated upload: the camera hears why, the dead letter says so without keeping the image.
    REQUIRE(camera.client->subscribe(schemas::topic_for(CommunityId(site.community), DeviceId(site.id("rampcam")), "errors"),
                                     1, 10s));
    const std::string whole = processors::render_plate_jpeg("SK314JT");
    camera.snapshot(site.id("ramp"), whole.substr(0, whole.size() / 2));
    auto reply = camera.client->next_message(30s);
    REQUIRE(reply);
    auto error = json::parse(reply->payload);
    CHECK(error["reason"] == "malformed");
    CHECK(error["detail"].get<std::string>().find("truncated") != std::string::npos);
    std::vector<test::DeadLetterRecord> letters;
    REQUIRE(test::eventually([&] { return !(letters = test::read_dead_letters(site.services.kafka(), site.id("rampcam"))).empty(); }, 30s));
    CHECK(letters[0].reason == "malformed");
    CHECK(letters[0].payload.empty());
  }

  TEST_CASE("the simulator's gate scenes, real photographs and rendered plates, are each analysed, and its tailgating and wrong plates are alerts") {
    // Scenes a second apart, alternating between a pedestrian and a vehicle gate: windows of half
    // a second keep each scene's pass its own.
    test::TempDir rules;
    std::ofstream(rules.str("rules.toml")) << "[defaults]\ntailgate_window_s = 0.5\nsnapshot_grace_s = 0.2\nplate_window_s = 0.5\n";
    Site site({{"COURTYARD_HUB_RULES_FILE", rules.str("rules.toml")}});
    auto sim_config = site.services.simulator({site.community});
    sim_config.id_prefix = site.community + "-";
    sim_config.devices = 40;  // two cameras: over pedestrian gate 1 and vehicle gate 2
    sim_config.rate = 40;
    sim_config.events = 440;
    sim_config.scenes_per_minute = 60;
    auto key = read_secret(site.stack.dir().str("var/secrets/plate-key"));
    REQUIRE(key);
    sim_config.plate_key = *key;
    devices::Simulator simulator(sim_config);
    REQUIRE(simulator.provision());
    auto report = simulator.run(std::stop_token{});
    REQUIRE_MESSAGE(report, (report ? "" : report.error()));
    REQUIRE(report->scenes >= 8);
    REQUIRE(report->tailgating_scenes >= 1);
    REQUIRE(report->plate_mismatch_scenes >= 1);

    const std::string people = site.community + "-" + site.community + "-camera-001";
    const std::string cars = site.community + "-" + site.community + "-camera-002";
    const auto at_people = report->valid[people]["camera.snapshot"], at_cars = report->valid[cars]["camera.snapshot"];
    CHECK(at_people + at_cars == report->scenes);
    auto pedestrian = site.camera_after(people.substr(site.community.size() + 1), at_people);
    auto vehicle = site.camera_after(cars.substr(site.community.size() + 1), at_cars);
    CHECK(pedestrian["analysed"] == at_people);
    CHECK(pedestrian["verdicts"].value("tailgating", 0u) == report->tailgating_scenes);
    CHECK(pedestrian["verdicts"].value("ok", 0u) == at_people - report->tailgating_scenes);
    for (const auto& r : pedestrian["recent"]) {
      CHECK(r["faces"] == (r["verdict"] == "tailgating" ? 2 : 1));
      CHECK(r["passes"].size() == 1);
    }
    CHECK(vehicle["verdicts"].value("plate_mismatch", 0u) == report->plate_mismatch_scenes);
    CHECK(vehicle["verdicts"].value("ok", 0u) == at_cars - report->plate_mismatch_scenes);
    auto tailgating = site.alerts("tailgating");
    REQUIRE(tailgating.size() == 1);  // one episode per gate, every scene of it counted
    CHECK(tailgating[0]["occurrences"] == report->tailgating_scenes);
    auto mismatch = site.alerts("plate_mismatch");
    REQUIRE(mismatch.size() == 1);
    CHECK(mismatch[0]["occurrences"] == report->plate_mismatch_scenes);
  }
}
