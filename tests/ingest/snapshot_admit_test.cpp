// The snapshot channel: what a gate camera may publish on courtyard/v1/{c}/{camera}/snapshot, and
// the reason it hears when it may not.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "ingest/bridge.h"
#include "common/digest.h"
#include "fixtures.h"
#include "ingest/admit.h"
#include "temp_dir.h"
#include "processors/vision.h"

using namespace courtyard;
using schemas::Rejection;

namespace {

const std::string kTopic = "courtyard/v1/c1/cam-1/snapshot";

std::string snapshot_json(const std::string& jpeg, const std::string& gate = "gate-1") {
  return nlohmann::json{{"seq", 1}, {"ts", 1'795'950'000'000}, {"type", "camera.snapshot"},
                        {"body", {{"gate", gate}, {"jpeg", base64(jpeg)}}}}
      .dump();
}

const std::string& plate_photo() {
  static const std::string jpeg = processors::render_plate_jpeg("CY 2026");
  return jpeg;
}

Rejection refused(std::string_view topic, std::string_view payload, const schemas::Limits& limits = {}) {
  auto event = ingest::admit(topic, payload, test::c1_registry(), limits);
  REQUIRE_FALSE(event.has_value());
  CHECK_FALSE(event.error().detail.empty());
  return event.error();
}

}  // namespace

TEST_SUITE("camera snapshots: admission") {
  TEST_CASE("a camera's JPEG snapshot on its snapshot channel is admitted with the image and its gate") {
    auto event = ingest::admit(kTopic, snapshot_json(plate_photo()), test::c1_registry());
    REQUIRE_MESSAGE(event, (event ? "" : event.error().detail));
    const auto& body = std::get<schemas::CameraSnapshot>(event->body);
    CHECK(body.gate == "gate-1");
    CHECK(body.jpeg == plate_photo());
    auto info = schemas::jpeg_info(body.jpeg);
    REQUIRE(info);
    CHECK(info->width == 640);
    CHECK(info->height == 480);
  }

  TEST_CASE("the FlatBuffers form carries the image as bytes and round-trips") {
    schemas::Event e;
    e.seq = 9;
    e.device_time_ms = 1'795'950'000'000;
    e.body = schemas::CameraSnapshot{"gate-1", plate_photo(), "", 0, 0, 0};
    auto event = ingest::admit(kTopic, schemas::encode(e), test::c1_registry());
    REQUIRE_MESSAGE(event, (event ? "" : event.error().detail));
    CHECK(std::get<schemas::CameraSnapshot>(event->body).jpeg == plate_photo());
  }

  TEST_CASE("images that are not whole JPEGs are refused as malformed, saying why") {
    std::string truncated = plate_photo().substr(0, plate_photo().size() / 2);
    CHECK(refused(kTopic, snapshot_json(truncated)).detail.find("truncated") != std::string::npos);
    CHECK(refused(kTopic, snapshot_json("\x89PNG\r\n\x1a\n not a jpeg")).detail.find("not a JPEG") != std::string::npos);
    auto bad_base64 = nlohmann::json::parse(snapshot_json(plate_photo()));
    bad_base64["body"]["jpeg"] = "***";
    CHECK(refused(kTopic, bad_base64.dump()).code == Rejection::Code::Malformed);
  }

  TEST_CASE("an image wider than the limit is out of range, a payload larger than the snapshot limit too large") {
    schemas::Limits small;
    small.max_image_side_px = 320;
    CHECK(refused(kTopic, snapshot_json(plate_photo()), small).code == Rejection::Code::OutOfRange);
    small = {};
    small.max_snapshot_bytes = 1000;
    auto too_large = refused(kTopic, snapshot_json(plate_photo()), small);
    CHECK(too_large.code == Rejection::Code::TooLarge);
    SUBCASE("while the snapshot limit, not the telemetry one, applies on the snapshot channel") {
      const auto photo = test::read_file(std::filesystem::path(COURTYARD_OPENCV_SAMPLES) / "messi5.jpg");
      REQUIRE(snapshot_json(photo).size() > schemas::Limits{}.max_payload_bytes);
      CHECK(ingest::admit(kTopic, snapshot_json(photo), test::c1_registry()).has_value());
    }
  }

  TEST_CASE("snapshots belong on the snapshot channel, and only snapshots do") {
    CHECK(refused("courtyard/v1/c1/cam-1/telemetry", snapshot_json(plate_photo())).code == Rejection::Code::WrongTopic);
    const std::string status = R"({"seq":1,"ts":1795950000000,"type":"device.status","body":{"battery_pct":80}})";
    CHECK(refused(kTopic, status).code == Rejection::Code::WrongTopic);
    CHECK(refused("courtyard/v1/c1/cam-1/pictures", snapshot_json(plate_photo())).code == Rejection::Code::WrongTopic);
  }

  TEST_CASE("only cameras send snapshots, a snapshot names a gate, and the vision analysis is Courtyard's own") {
    CHECK(refused("courtyard/v1/c1/gate-1/snapshot", snapshot_json(plate_photo())).code ==
          Rejection::Code::TypeNotAllowed);
    CHECK(refused(kTopic, snapshot_json(plate_photo(), "")).code == Rejection::Code::MissingField);
    CHECK(refused(kTopic, snapshot_json(plate_photo(), "gate/1")).code == Rejection::Code::OutOfRange);
    const std::string analysis = R"({"seq":1,"ts":1795950000000,"type":"vision.analysis","body":{}})";
    CHECK(refused("courtyard/v1/c1/cam-1/telemetry", analysis).code == Rejection::Code::TypeNotAllowed);
  }

  TEST_CASE("the snapshots topic keeps an image no longer than the configured retention") {
    auto configs = ingest::snapshot_topic_configs(std::chrono::hours(72));
    REQUIRE(configs);
    const auto retention = std::stoll(configs->at("retention.ms"));
    const auto segment = std::stoll(configs->at("segment.ms"));
    const auto delete_delay = std::stoll(configs->at("file.delete.delay.ms"));
    constexpr std::int64_t kBrokerCheckInterval = 300'000;  // log.retention.check.interval.ms
    // A segment is deleted once its newest record is past retention.ms, at the next check, and
    // its file a delete delay later: the oldest record in it is then at most this old.
    CHECK(retention + segment + kBrokerCheckInterval + delete_delay <= 72 * 3'600'000);
    CHECK(configs->at("cleanup.policy") == "delete");
    CHECK_FALSE(ingest::snapshot_topic_configs(std::chrono::minutes(5)));
  }
}
