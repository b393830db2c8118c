#include <doctest/doctest.h>

#include "processors/devices_fold.h"

#include <limits>

#include "processors/record.h"

using namespace courtyard;
using namespace courtyard::processors;

namespace {

schemas::Event event(std::uint64_t seq, schemas::Body body, std::int64_t ingest_ms = 1000, std::uint32_t boot = 1) {
  schemas::Event e;
  e.device = DeviceId("wear-1");
  e.community = CommunityId("c1");
  e.boot = boot;
  e.seq = seq;
  e.device_time_ms = ingest_ms - 10;
  e.ingest_time_ms = ingest_ms;
  e.body = std::move(body);
  return e;
}

schemas::Event registration(std::int64_t at) {
  schemas::Event e;
  e.device = DeviceId("wear-1");
  e.community = CommunityId("c1");
  e.device_time_ms = at;
  e.ingest_time_ms = at;
  e.body = schemas::DeviceRegistered{schemas::DeviceKind::Wearable, "b3-0402", "Building 3, flat 402"};
  return e;
}

DeviceState fold(const std::vector<schemas::Event>& events) {
  DeviceState s;
  for (const auto& e : events) s = apply(std::move(s), e).state;
  return s;
}

}  // namespace

TEST_SUITE("devices fold") {
  TEST_CASE("a registration sets what the device is and where") {
    auto s = fold({registration(5)});
    CHECK(s.registered);
    CHECK(s.kind == "wearable");
    CHECK(s.unit == "b3-0402");
    CHECK(s.location == "Building 3, flat 402");
    CHECK(s.events == 0);
  }

  TEST_CASE("the same registration delivered twice is recognised") {
    DeviceState s = fold({registration(5)});
    auto step = apply(s, registration(5));
    CHECK(step.admission == Admission::Duplicate);
    CHECK(step.state.counts.at("device.registered") == 1);
  }

  TEST_CASE("each event is counted once per type, and redelivered ones are not counted again") {
    schemas::WearableVitals v;
    v.heart_rate_bpm = 70;
    auto s = fold({event(1, v), event(2, v), event(2, v), event(3, schemas::WearableAlarm{}), event(1, v)});
    CHECK(s.events == 3);
    CHECK(s.counts.at("wearable.vitals") == 2);
    CHECK(s.counts.at("wearable.alarm") == 1);
    CHECK(s.duplicates == 2);
  }

  TEST_CASE("last seen is the log's time, and the latest event of each type is kept") {
    schemas::WearableVitals v1, v2;
    v1.heart_rate_bpm = 70;
    v2.heart_rate_bpm = 90;
    auto s = fold({event(1, v1, 1000), event(2, v2, 2000)});
    CHECK(s.first_seen_ms == 1000);
    CHECK(s.last_seen_ms == 2000);
    CHECK(s.last.at("wearable.vitals")["body"]["heart_rate_bpm"] == 90);
  }

  TEST_CASE("a late event fills its gap but does not replace a newer latest") {
    schemas::WearableVitals v1, v3, v2;
    v1.heart_rate_bpm = 70;
    v3.heart_rate_bpm = 90;
    v2.heart_rate_bpm = 80;
    auto s = fold({event(1, v1, 1000), event(3, v3, 3000), event(2, v2, 2000)});
    CHECK(s.window.gaps == 0);
    CHECK(s.last.at("wearable.vitals")["seq"] == 3);
  }

  TEST_CASE("a camera's telemetry a hundred seqs behind its snapshots (two sessions draining a backlog) is counted, not stale") {
    // One seq counter, two channels: seqs 1..100 went out as status reports and 101..200 as
    // snapshots, and after an outage the snapshots' session delivered its backlog first.
    std::vector<schemas::Event> log;
    for (std::uint64_t seq = 101; seq <= 200; ++seq) log.push_back(event(seq, schemas::CameraSnapshot{"gate-1", "jpeg", "", 0, 0, 0}));
    for (std::uint64_t seq = 1; seq <= 100; ++seq) log.push_back(event(seq, schemas::DeviceStatus{}));
    auto s = fold(log);
    CHECK(s.events == 200);
    CHECK(s.stale == 0);
    CHECK(s.counts.at("device.status") == 100);
    CHECK(s.counts.at("camera.snapshot") == 100);
  }

  TEST_CASE("a message delivered again is a duplicate, whichever channel carried it") {
    auto s = fold({event(1, schemas::DeviceStatus{}), event(2, schemas::CameraSnapshot{"gate-1", "jpeg", "", 0, 0, 0}),
                   event(1, schemas::DeviceStatus{}), event(2, schemas::CameraSnapshot{"gate-1", "jpeg", "", 0, 0, 0})});
    CHECK(s.events == 2);
    CHECK(s.duplicates == 2);
    CHECK(s.window.gaps == 0);
  }

  TEST_CASE("a device stored with the 64-wide window of before keeps recognising its repeats") {
    auto s = fold({event(1, schemas::DeviceStatus{}), event(2, schemas::DeviceStatus{})});
    auto old = to_json(s);
    old["seq"].erase("unseen");
    old["seq"]["window"] = 3;  // seqs 2 and 1 seen
    auto back = device_state_from_json(old);
    back = apply(std::move(back), event(1, schemas::DeviceStatus{})).state;
    CHECK(back.duplicates == 1);
    CHECK(back.events == 2);
  }

  TEST_CASE("the stored form gives back the same state") {
    auto s = fold({event(1, schemas::DeviceStatus{}), event(5, schemas::CameraSnapshot{"gate-1", "jpeg", "", 0, 0, 0})});
    CHECK(device_state_from_json(to_json(s)) == s);
  }

  TEST_CASE("status reports keep the battery, tamper and firmware") {
    schemas::DeviceStatus st;
    st.battery_pct = 14;
    st.tamper = true;
    st.firmware = "2.1";
    auto s = fold({event(1, st)});
    CHECK(s.battery_pct == 14);
    CHECK(s.tamper == true);
    CHECK(s.firmware == "2.1");
  }

  TEST_CASE("state survives its JSON form unchanged") {
    schemas::DeviceStatus st;
    st.battery_pct = 50;
    auto s = fold({registration(1), event(1, st), event(5, schemas::WearableAlarm{})});
    CHECK(device_state_from_json(nlohmann::json::parse(to_json(s).dump())) == s);
  }

  TEST_CASE("the binary record renders as the JSON of the same state, byte for byte, and reads back the same") {
    auto same = [](const DeviceState& s) {
      const auto record = to_record(s);
      CHECK(is_binary_record(record));
      CHECK(record_text(record) == to_json(s).dump());
      CHECK(device_state_from_json(record_json(record)) == s);
      CHECK(record.size() < to_json(s).dump().size());
    };
    same(DeviceState{});
    schemas::DeviceStatus st;
    st.battery_pct = 37.5;
    st.tamper = false;
    st.firmware = "2.1-室";  // not ASCII
    schemas::WearableVitals v;
    v.heart_rate_bpm = 61;
    v.spo2_pct = 97;
    v.lat = 31.2304;
    v.steps = 12;
    v.skin_temp_c = -0.25;
    std::vector<schemas::Event> events{registration(1), event(1, st), event(2, v), event(9, schemas::WearableAlarm{})};
    events.push_back(event(4, v, -5, 7));  // a gap, a negative time, another boot
    DeviceState s;
    for (const auto& e : events) {
      s = apply(std::move(s), e).state;
      same(s);
    }
    s.online = false;
    s.events = std::numeric_limits<std::uint64_t>::max();
    s.registered_at_ms = std::numeric_limits<std::int64_t>::min();
    same(s);
  }

  TEST_CASE("attack: a state holding text that is not UTF-8 has no record: writing it throws, as its JSON did") {
    DeviceState s;
    s.firmware = "v1\xff\xfe";
    CHECK_THROWS(to_record(s));
    CHECK_THROWS((void)to_json(s).dump());
  }

  TEST_CASE("folding the same events again gives the same state: replay is deterministic") {
    std::vector<schemas::Event> events{registration(1)};
    for (std::uint64_t i = 1; i <= 50; ++i) {
      schemas::WearableVitals v;
      v.heart_rate_bpm = 60 + static_cast<double>(i % 30);
      events.push_back(event(i % 7 == 0 ? i - 1 : i, v, static_cast<std::int64_t>(1000 + i)));
    }
    CHECK(to_json(fold(events)).dump() == to_json(fold(events)).dump());
  }
}
