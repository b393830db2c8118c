#include <doctest/doctest.h>

#include "common/digest.h"

#include <nlohmann/json.hpp>

#include "schemas/event.h"
#include "schemas/registry.h"

using namespace courtyard;
using schemas::Rejection;

namespace {

schemas::Event sample() {
  schemas::Event e;
  e.event_id = 42;
  e.device = DeviceId("wear-1");
  e.community = CommunityId("c1");
  e.boot = 3;
  e.seq = 9;
  e.device_time_ms = 1795950000000;
  e.ingest_time_ms = 1795950000123;
  schemas::WearableVitals v;
  v.heart_rate_bpm = 71;
  v.spo2_pct = 96.5;
  v.moving = false;
  e.body = v;
  return e;
}

schemas::Topic wear_topic() { return *schemas::parse_topic("courtyard/v1/c1/wear-1/telemetry"); }

}  // namespace

TEST_SUITE("schemas envelope") {
  TEST_CASE("an event encodes to a verified buffer and decodes to the same event") {
    auto bytes = schemas::encode(sample());
    auto back = schemas::decode(bytes);
    REQUIRE(back);
    CHECK(*back == sample());
  }

  TEST_CASE("a truncated buffer fails verification instead of being read") {
    auto bytes = schemas::encode(sample());
    bytes.resize(bytes.size() / 2);
    auto e = schemas::decode_device_payload(wear_topic(), bytes);
    REQUIRE_FALSE(e);
    CHECK(e.error().code == Rejection::Code::FailedVerification);
  }

  TEST_CASE("a buffer whose bytes were flipped never crashes the decoder") {
    auto bytes = schemas::encode(sample());
    for (std::size_t i = 8; i < bytes.size(); ++i) {
      auto copy = bytes;
      copy[i] = static_cast<char>(copy[i] ^ 0xff);
      auto e = schemas::decode_device_payload(wear_topic(), copy);
      if (!e) CHECK_FALSE(e.error().detail.empty());
    }
  }

  TEST_CASE("a buffer naming another device than its topic is on the wrong topic") {
    auto other = sample();
    other.device = DeviceId("wear-2");
    auto e = schemas::decode_device_payload(wear_topic(), schemas::encode(other));
    REQUIRE_FALSE(e);
    CHECK(e.error().code == Rejection::Code::WrongTopic);
  }

  TEST_CASE("what ingest sets is never taken from a device's buffer") {
    auto e = schemas::decode_device_payload(wear_topic(), schemas::encode(sample()));
    REQUIRE(e);
    CHECK(e->event_id == 0);
    CHECK(e->ingest_time_ms == 0);
  }

  TEST_CASE("values are range-checked whichever encoding carried them") {
    auto bad = sample();
    std::get<schemas::WearableVitals>(bad.body).spo2_pct = 120;
    auto e = schemas::decode_device_payload(wear_topic(), schemas::encode(bad));
    REQUIRE_FALSE(e);
    CHECK(e.error().code == Rejection::Code::OutOfRange);
    CHECK(e.error().detail == "body.spo2_pct=120 is outside 50..100");
  }

  TEST_CASE("a registration round-trips through its JSON record and becomes a device.registered event") {
    schemas::Registration r{DeviceId("gate-1"), CommunityId("c1"), schemas::DeviceKind::Gate, "", "East gate", 77};
    auto back = schemas::parse_registration(schemas::to_json_string(r));
    REQUIRE(back);
    CHECK(*back == r);
    auto e = schemas::registered_event(r);
    CHECK(schemas::type_name(e.body) == "device.registered");
    CHECK(e.device_time_ms == 77);
  }

  TEST_CASE("the seq of a rejected payload is recovered when it can be") {
    CHECK(schemas::best_effort_seq(R"({"seq":12,"ts":1})") == 12u);
    CHECK_FALSE(schemas::best_effort_seq("{not json").has_value());
    CHECK(schemas::best_effort_seq(schemas::encode(sample())) == 9u);
  }

  TEST_CASE("device kinds may send only their own event types, and every device may report its status") {
    using K = schemas::DeviceKind;
    CHECK(schemas::allowed_for(K::Meter, schemas::MeterReading{}));
    CHECK_FALSE(schemas::allowed_for(K::Meter, schemas::GatePass{}));
    CHECK(schemas::allowed_for(K::Wearable, schemas::WearableAlarm{}));
    for (auto kind : {K::Gate, K::VehicleGate, K::Door, K::Camera, K::Meter, K::HomeSensor, K::Wearable}) {
      CHECK(schemas::allowed_for(kind, schemas::DeviceStatus{}));
      CHECK_FALSE(schemas::allowed_for(kind, schemas::DeviceRegistered{}));
    }
  }
}

TEST_SUITE("hash chain links") {
  constexpr std::string_view kKey = "the deployment's chain key";

  TEST_CASE("attack: without the chain key nobody computes a link: a plain SHA-256 chain or another key's do not match") {
    schemas::Event e;
    e.device = DeviceId("gate-1");
    e.community = CommunityId("c1");
    e.chain_seq = 1;
    e.body = schemas::DeviceStatus{};
    const auto link = schemas::chain_link(kKey, "", e);
    CHECK(link != sha256_hex(schemas::encode(e)));
    CHECK(link != schemas::chain_link("a guess", "", e));
    std::vector<std::pair<std::string, std::string>> headers{{"reason", "malformed"}, {"device", "gate-1"}};
    const auto mac = schemas::dead_letter_mac(kKey, "{", headers);
    CHECK(mac == schemas::dead_letter_mac(kKey, "{", headers));
    CHECK(mac != schemas::dead_letter_mac(kKey, "{x", headers));
    headers[0].second = "out_of_range";
    CHECK(mac != schemas::dead_letter_mac(kKey, "{", headers));
  }

  TEST_CASE("a link depends on the previous link and on every field of the event, and survives the envelope") {
    schemas::Event e;
    e.device = DeviceId("gate-1");
    e.community = CommunityId("c1");
    e.seq = 7;
    e.device_time_ms = 1795950000000;
    e.ingest_time_ms = 1795950000005;
    e.body = schemas::GatePass{schemas::Credential::Face, "subj-1", schemas::Direction::In, schemas::Decision::Granted};
    e.chain_seq = 42;
    const auto link = schemas::chain_link(kKey, "prev", e);
    CHECK(link.size() == 64);
    CHECK(schemas::chain_link(kKey, "prev", e) == link);
    CHECK(schemas::chain_link(kKey, "other", e) != link);
    auto later = e;
    later.device_time_ms += 1;
    CHECK(schemas::chain_link(kKey, "prev", later) != link);
    auto moved = e;
    moved.chain_seq = 43;
    CHECK(schemas::chain_link(kKey, "prev", moved) != link);
    auto with_link = e;
    with_link.chain_link = link;
    CHECK(schemas::chain_link(kKey, "prev", with_link) == link);  // the link itself is not hashed
    auto decoded = schemas::decode(schemas::encode(with_link));
    REQUIRE(decoded);
    CHECK(decoded->chain_seq == 42);
    CHECK(decoded->chain_link == link);
    CHECK(schemas::chain_link(kKey, "prev", *decoded) == link);
  }
}

TEST_SUITE("device FlatBuffers") {
  TEST_CASE("a string that is not UTF-8 is refused as malformed, naming the field, before anything renders it as JSON") {
    schemas::Event e;
    e.seq = 1;
    e.device_time_ms = 1795950000000;
    e.body = schemas::GatePass{schemas::Credential::Face, "subj-\xff\xfe", schemas::Direction::In, schemas::Decision::Granted};
    auto topic = schemas::parse_topic("courtyard/v1/c1/gate-1/telemetry");
    REQUIRE(topic);
    auto admitted = schemas::decode_device_payload(*topic, schemas::encode(e));
    REQUIRE_FALSE(admitted);
    CHECK(admitted.error().code == Rejection::Code::Malformed);
    CHECK(admitted.error().detail == "body.subject is not valid UTF-8");
  }

  TEST_CASE("attack: envelope strings that are not UTF-8 are refused without their bytes in the reason") {
    // The review's probe: a device_id of raw bytes was quoted into the refusal, which went to the
    // dead-letter topic (kept for ever) and threw in every JSON view of it.
    auto topic = schemas::parse_topic("courtyard/v1/c1/gate-1/telemetry");
    REQUIRE(topic);
    for (const char* field : {"device", "community", "link"}) {
      CAPTURE(field);
      schemas::Event e;
      e.seq = 1;
      e.device_time_ms = 1795950000000;
      e.body = schemas::DeviceStatus{};
      const std::string bad = "gate-\xff\xfe\xc0\xaf";
      if (std::string_view(field) == "device") e.device = DeviceId(bad);
      if (std::string_view(field) == "community") e.community = CommunityId(bad);
      if (std::string_view(field) == "link") e.chain_link = bad;
      auto admitted = schemas::decode_device_payload(*topic, schemas::encode(e));
      REQUIRE_FALSE(admitted);
      CHECK(admitted.error().code == Rejection::Code::Malformed);
      CHECK(admitted.error().detail.find('\xff') == std::string::npos);
      CHECK_NOTHROW((void)nlohmann::json(admitted.error().detail).dump());
    }
    schemas::Event other;  // a printable but foreign device id is quoted back as printable text
    other.seq = 1;
    other.device_time_ms = 1795950000000;
    other.body = schemas::DeviceStatus{};
    other.device = DeviceId("gate-2\n\x01");
    auto admitted = schemas::decode_device_payload(*topic, schemas::encode(other));
    REQUIRE_FALSE(admitted);
    CHECK(admitted.error().code == Rejection::Code::WrongTopic);
    CHECK(admitted.error().detail.find("gate-2\\x0A\\x01") != std::string::npos);
  }

  TEST_CASE("attack: a log message with any string that is not UTF-8 does not decode, naming the field") {
    schemas::Event e;
    e.device = DeviceId("operator");
    e.community = CommunityId("c1");
    e.body = schemas::OperatorAction{"c1:smoke:s:1", schemas::AlertAction::Acknowledge, "guard", "note \xff"};
    auto decoded = schemas::decode(schemas::encode(e));
    REQUIRE_FALSE(decoded);
    CHECK(decoded.error() == "body.note is not valid UTF-8");
  }

  TEST_CASE("chain fields a device puts in its buffer are ignored: they are ingest's to set") {
    schemas::Event e;
    e.seq = 1;
    e.device_time_ms = 1795950000000;
    e.body = schemas::DeviceStatus{};
    e.chain_seq = 99;
    e.chain_link = "forged";
    auto topic = schemas::parse_topic("courtyard/v1/c1/gate-1/telemetry");
    REQUIRE(topic);
    auto admitted = schemas::decode_device_payload(*topic, schemas::encode(e));
    REQUIRE(admitted);
    CHECK(admitted->chain_seq == 0);
    CHECK(admitted->chain_link.empty());
  }
}
