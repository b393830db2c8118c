#include <doctest/doctest.h>

#include <set>

#include "fixtures.h"
#include "ingest/admit.h"

using namespace courtyard;

TEST_SUITE("ingest admission") {
  TEST_CASE("every valid payload vector is admitted") {
    auto cases = test::payload_cases("valid");
    REQUIRE(cases.size() >= 10);
    for (const auto& c : cases) {
      CAPTURE(c.name);
      auto event = ingest::admit(c.topic, c.payload, test::c1_registry());
      CHECK_MESSAGE(event.has_value(), (event ? "" : event.error().detail));
    }
  }

  TEST_CASE("every invalid payload vector is rejected with its directory's reason and a detail") {
    auto cases = test::payload_cases("invalid");
    REQUIRE(cases.size() >= 30);
    std::set<std::string> reasons_seen;
    for (const auto& c : cases) {
      CAPTURE(c.name);
      auto event = ingest::admit(c.topic, c.payload, test::c1_registry());
      REQUIRE_FALSE(event.has_value());
      CHECK(schemas::to_string(event.error().code) == c.reason);
      CHECK_FALSE(event.error().detail.empty());
      reasons_seen.insert(c.reason);
    }
    SUBCASE("and the vectors cover every reason a device payload can earn") {
      for (auto code : {schemas::Rejection::Code::Malformed, schemas::Rejection::Code::FailedVerification,
                        schemas::Rejection::Code::MissingField,
                        schemas::Rejection::Code::OutOfRange, schemas::Rejection::Code::UnknownType,
                        schemas::Rejection::Code::TooLarge, schemas::Rejection::Code::UnknownDevice,
                        schemas::Rejection::Code::WrongTopic, schemas::Rejection::Code::TypeNotAllowed}) {
        CHECK(reasons_seen.contains(std::string(schemas::to_string(code))));
      }
    }
  }

  TEST_CASE("the detail names the offending field and its allowed range") {
    auto event = ingest::admit("courtyard/v1/c1/wear-1/telemetry",
                               R"({"seq":1,"ts":1795950000000,"type":"wearable.vitals","body":{"heart_rate_bpm":912}})",
                               test::c1_registry());
    REQUIRE_FALSE(event.has_value());
    CHECK(event.error().detail == "body.heart_rate_bpm=912 is outside 20..250");
  }

  TEST_CASE("a payload on a channel other than telemetry is on the wrong topic") {
    auto event = ingest::admit("courtyard/v1/c1/gate-1/cmd", "{}", test::c1_registry());
    REQUIRE_FALSE(event.has_value());
    CHECK(event.error().code == schemas::Rejection::Code::WrongTopic);
  }

  TEST_CASE("an oversized payload is refused before it is parsed, whoever sent it") {
    std::string big(20000, '{');
    auto event = ingest::admit("courtyard/v1/c1/ghost/telemetry", big, test::c1_registry());
    REQUIRE_FALSE(event.has_value());
    CHECK(event.error().code == schemas::Rejection::Code::TooLarge);
  }

  TEST_CASE("the size limit is configurable") {
    std::string payload = R"({"seq":1,"ts":1795950000000,"type":"device.status","body":{"battery_pct":50}})";
    schemas::Limits tight;
    tight.max_payload_bytes = 10;
    CHECK(ingest::admit("courtyard/v1/c1/cam-1/telemetry", payload, test::c1_registry()).has_value());
    CHECK(ingest::admit("courtyard/v1/c1/cam-1/telemetry", payload, test::c1_registry(), tight).error().code ==
          schemas::Rejection::Code::TooLarge);
  }

  TEST_CASE("malformed topics are refused with a reason") {
    for (const char* topic : {"other/v1/c1/gate-1/telemetry", "courtyard/v1/c1/telemetry",
                              "courtyard/v1/c1/gate-1/telemetry/extra", "courtyard/v1/c 1/gate-1/telemetry",
                              "courtyard/v1//gate-1/telemetry"}) {
      CAPTURE(topic);
      auto event = ingest::admit(topic, "{}", test::c1_registry());
      REQUIRE_FALSE(event.has_value());
      CHECK(event.error().code == schemas::Rejection::Code::WrongTopic);
    }
  }
}
