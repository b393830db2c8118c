#include <doctest/doctest.h>

#include "fixtures.h"
#include <nlohmann/json.hpp>

#include "schemas/event.h"

using namespace courtyard;

TEST_SUITE("schemas mapping") {
  TEST_CASE("every valid JSON payload survives JSON -> FlatBuffers -> event unchanged") {
    for (const auto& c : test::payload_cases("valid")) {
      CAPTURE(c.name);
      auto topic = schemas::parse_topic(c.topic);
      REQUIRE(topic);
      auto from_json = schemas::decode_device_payload(*topic, c.payload);
      REQUIRE_MESSAGE(from_json, (from_json ? "" : from_json.error().detail));
      auto bytes = schemas::encode(*from_json);
      CHECK(schemas::has_flatbuffer_identifier(bytes));
      auto back = schemas::decode(bytes);
      REQUIRE(back);
      CHECK(*back == *from_json);
    }
  }

  TEST_CASE("a device may publish the FlatBuffers envelope instead of JSON and gets the same event") {
    for (const auto& c : test::payload_cases("valid")) {
      CAPTURE(c.name);
      auto topic = schemas::parse_topic(c.topic);
      auto from_json = schemas::decode_device_payload(*topic, c.payload);
      REQUIRE(from_json);
      auto from_fb = schemas::decode_device_payload(*topic, schemas::encode(*from_json));
      REQUIRE_MESSAGE(from_fb, (from_fb ? "" : from_fb.error().detail));
      CHECK(*from_fb == *from_json);
    }
  }

  TEST_CASE("the JSON view of an event names its type and repeats its body") {
    auto topic = schemas::parse_topic("courtyard/v1/c1/meter-1/telemetry");
    auto e = schemas::decode_device_payload(
        *topic, R"({"seq":7,"boot":2,"ts":1795950000000,"type":"meter.reading","body":{"kind":"water","total":12.5,"unit":"m3"}})");
    REQUIRE(e);
    auto j = schemas::to_json(*e);
    CHECK(j["type"] == "meter.reading");
    CHECK(j["device"] == "meter-1");
    CHECK(j["community"] == "c1");
    CHECK(j["boot"] == 2);
    CHECK(j["seq"] == 7);
    CHECK(j["body"]["total"] == 12.5);
    CHECK(j["body"]["kind"] == "water");
  }
}
