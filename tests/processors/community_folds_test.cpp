#include <doctest/doctest.h>

#include "processors/community_folds.h"
#include "processors/record.h"
#include "processors/time_buckets.h"

using namespace courtyard;
using namespace courtyard::processors;
using namespace schemas;

namespace {

// An elder's stored record is binary; served, it is the JSON of the same state, byte for byte.
void binary_record_renders_as_json(const ElderState& e) {
  const auto record = to_record(e);
  CHECK(is_binary_record(record));
  CHECK(record_text(record) == to_json(e).dump());
  CHECK(to_json(elder_state_from_json(record_json(record))) == to_json(e));
}

// 2026-11-29 12:00:00 UTC = 20:00 in UTC+8.
constexpr std::int64_t kNoonUtc = 1'795'953'600'000;
constexpr std::int64_t kHour = 3'600'000;

Event at(const std::string& device, std::int64_t ms, Body body) {
  Event e;
  e.device = DeviceId(device);
  e.community = CommunityId("c1");
  e.device_time_ms = ms;
  e.ingest_time_ms = ms;
  e.body = std::move(body);
  return e;
}

MeterState read(MeterState s, std::int64_t ms, double total, double* consumed = nullptr) {
  MeterReading r{MeterKind::Water, total, "m3"};
  auto step = apply(std::move(s), at("m-1", ms, r), r, FoldContext{});
  if (consumed) *consumed = step.consumed;
  return step.state;
}

}  // namespace

TEST_SUITE("time buckets") {
  TEST_CASE("hours and days are the community's local time") {
    CHECK(hour_key(kNoonUtc, 0) == "2026-11-29T12");
    CHECK(hour_key(kNoonUtc, 480) == "2026-11-29T20");
    CHECK(day_key(kNoonUtc + 5 * kHour, 480) == "2026-11-30");  // 01:00 the next day in Shanghai
    CHECK(day_key(kNoonUtc + 5 * kHour, 0) == "2026-11-29");
  }
}

TEST_SUITE("meters fold") {
  TEST_CASE("consumption is the difference of cumulative totals, in the reading's hour and day") {
    double used = -1;
    MeterState s = read({}, kNoonUtc, 100, &used);
    CHECK(used == 0);  // the first reading only sets the baseline
    s = read(std::move(s), kNoonUtc + 10 * 60'000, 100.5, &used);
    CHECK(used == doctest::Approx(0.5));
    s = read(std::move(s), kNoonUtc + kHour, 101.25);
    CHECK(s.hourly.at("2026-11-29T20") == doctest::Approx(0.5));
    CHECK(s.hourly.at("2026-11-29T21") == doctest::Approx(0.75));
    CHECK(s.daily.at("2026-11-29") == doctest::Approx(1.25));
  }

  TEST_CASE("a total lower than the last is a reset: the new total is what was used since") {
    double used = 0;
    MeterState s = read({}, kNoonUtc, 9999.5);
    s = read(std::move(s), kNoonUtc + 60'000, 0.7, &used);
    CHECK(used == doctest::Approx(0.7));
    CHECK(s.resets == 1);
    CHECK(s.last_total == 0.7);
  }

  TEST_CASE("a reading older than the last applied one is counted and ignored") {
    double used = 0;
    MeterState s = read({}, kNoonUtc, 10);
    s = read(std::move(s), kNoonUtc + 120'000, 12);
    s = read(std::move(s), kNoonUtc + 60'000, 11, &used);
    CHECK(used == 0);
    CHECK(s.out_of_order == 1);
    CHECK(s.last_total == 12);
    CHECK(s.daily.at("2026-11-29") == doctest::Approx(2));
  }

  TEST_CASE("community totals add up by kind and by building") {
    MeterState m;
    m.kind = "water";
    m.unit = "b3-0402";
    auto t = add_consumption({}, m, "2026-11-29", 1.5);
    t = add_consumption(std::move(t), m, "2026-11-29", 0.5);
    CHECK(t.daily_by_kind.at("water").at("2026-11-29") == 2);
    CHECK(t.daily_by_building.at("b3").at("water").at("2026-11-29") == 2);
  }
}

TEST_SUITE("gates and occupancy folds") {
  TEST_CASE("a gate counts passes by direction, credential and decision, denials by reason, and fevers") {
    GateState g;
    auto pass = [&](Direction dir, Decision dec, double temp, const std::string& reason = "") {
      GatePass p;
      p.credential = Credential::Face;
      p.subject = "s";
      p.direction = dir;
      p.decision = dec;
      p.reason = reason;
      p.temperature_c = temp;
      g = apply(std::move(g), at("gate-1", kNoonUtc, p), p, 37.3, dec == Decision::Denied ? "unknown" : "resident",
                FoldContext{});
    };
    pass(Direction::In, Decision::Granted, 36.5);
    pass(Direction::Out, Decision::Granted, 36.6);
    pass(Direction::In, Decision::Denied, 37.3, "no_invitation");
    CHECK(g.passes == 3);
    CHECK(g.in == 2);
    CHECK(g.denied == 1);
    CHECK(g.denials_by_reason.at("no_invitation") == 1);
    CHECK(g.fevers == 1);
    CHECK(g.by_credential.at("face") == 3);
    CHECK(g.by_subject_kind.at("resident") == 2);
    CHECK(g.by_subject_kind.at("unknown") == 1);
    CHECK(g.hourly.at("2026-11-29T20") == 3);
  }

  TEST_CASE("occupancy follows granted entries and exits; a denied pass changes nothing") {
    Occupancy o;
    auto person = [&](const std::string& who, Direction dir, Decision dec = Decision::Granted) {
      GatePass p;
      p.subject = who;
      p.direction = dir;
      p.decision = dec;
      o = apply(std::move(o), at("gate-1", kNoonUtc, p), FoldContext{});
    };
    person("a", Direction::In);
    person("b", Direction::In);
    person("c", Direction::In, Decision::Denied);
    person("a", Direction::Out);
    person("z", Direction::Out);  // entered before Courtyard was watching
    CHECK(o.people_inside == std::set<std::string>{"b"});
    CHECK(o.unknown_exits == 1);
    CHECK(o.entries_per_hour.at("2026-11-29T20") == 2);
    CHECK(o.exits_per_hour.at("2026-11-29T20") == 2);
    o = apply(std::move(o), at("vg-1", kNoonUtc, VehiclePass{"plate-1", Direction::In, Decision::Granted}), FoldContext{});
    CHECK(o.vehicles_inside.at("plate-1") == kNoonUtc);
    CHECK(to_json(o)["people_now"] == 1);
    // The summary dashboards watch is the whole record without the lists, byte for byte.
    auto whole = to_json(o);
    whole.erase("people_inside");
    whole.erase("vehicles_inside");
    CHECK(occupancy_summary(o).dump() == whole.dump());
  }
}

TEST_SUITE("homes and elders folds") {
  TEST_CASE("a household keeps the latest state of each sensor, never replaced by an older report") {
    HomeState h;
    h = apply(std::move(h), at("smoke-1", 2000, HomeSensor{SensorKind::Smoke, "alarm", {}}), HomeSensor{SensorKind::Smoke, "alarm", {}});
    h = apply(std::move(h), at("smoke-1", 1000, HomeSensor{SensorKind::Smoke, "ok", {}}), HomeSensor{SensorKind::Smoke, "ok", {}});
    CHECK(h.sensors.at("smoke-1").state == "alarm");
    h = apply(std::move(h), at("t-1", 3000, HomeSensor{SensorKind::Temperature, "", 21.5}), HomeSensor{SensorKind::Temperature, "", 21.5});
    CHECK(h.sensors.at("t-1").value == 21.5);
  }

  TEST_CASE("an elder's projection keeps the latest vitals, rolling statistics, last movement and alarm history") {
    ElderState e;
    for (int i = 0; i < 70; ++i) {
      WearableVitals v;
      v.heart_rate_bpm = 60 + i % 10;
      v.moving = i == 5;
      e = apply(std::move(e), at("w-1", 1000 + i, v), FoldContext{});
    }
    CHECK(e.heart_rates.size() == 60);
    binary_record_renders_as_json(e);
    CHECK(e.last_movement_ms == 1005);
    CHECK(to_json(e)["heart_rate_stats"]["max"] == 69);
    e = apply(std::move(e), at("w-1", 5000, WearableAlarm{AlarmKind::Fall, false}), FoldContext{});
    CHECK(e.alarms.back()["kind"] == "fall");
    CHECK(wellbeing(e) == "ok");
    e.open_alerts["c1:inactivity:w-1:1"] = "major";
    CHECK(wellbeing(e) == "attention");
    e.open_alerts["c1:fall:w-1:1"] = "critical";
    CHECK(wellbeing(e) == "alert");
    CHECK(wellbeing(ElderState{}) == "unknown");
    binary_record_renders_as_json(e);
    binary_record_renders_as_json(ElderState{});
    WearableVitals fractional;
    fractional.spo2_pct = 93.5;
    fractional.skin_temp_c = -1.0;
    binary_record_renders_as_json(apply(std::move(e), at("w-1", 6000, fractional), FoldContext{}));
  }

  TEST_CASE("every binary record renders as its state's JSON, byte for byte, and reads back the same") {
    auto same = [](const auto& state, auto from_json) {
      const auto record = to_record(state);
      CHECK(is_binary_record(record));
      CHECK(record_text(record) == to_json(state).dump());
      CHECK(to_json(from_json(record_json(record))) == to_json(state));
    };
    same(MeterState{}, &meter_state_from_json);
    MeterState m = read({}, kNoonUtc, 10);
    m = read(std::move(m), kNoonUtc + kHour, 11.25);
    m.last_total = -3.0;  // integral and negative: still a real number
    same(m, &meter_state_from_json);
    CommunityMeters totals;
    same(totals, &community_meters_from_json);
    totals = add_consumption(std::move(totals), m, "2026-11-29", 1.5);
    totals.daily_by_building["b3"]["water"]["2026-11-29"] = 2.0;
    same(totals, &community_meters_from_json);
    GateState g;
    same(g, &gate_state_from_json);
    g.community = "c1";
    g.location = "Pedestrian gate 1, \u4e1c\u95e8";
    g.passes = 3;
    g.by_credential = {{"face", 2}, {"card", 1}};
    g.hourly["2026-11-29T20"] = 3;
    g.last_temperature_c = 37.0;
    g.last_pass_ms = -1;
    same(g, &gate_state_from_json);
    HomeState h;
    same(h, &home_state_from_json);
    h.community = "c1";
    h.unit = "b3-0402";
    h.sensors["smoke-1"] = SensorReading{"smoke", "alarm", 0, false, 5};
    h.sensors["temp-1"] = SensorReading{"temperature", "ok", 21.0, true, 6};
    h.open_alerts["c1:smoke:smoke-1:1"] = "critical";
    h.people_inside = {"tok-a", "tok-b"};
    same(h, &home_state_from_json);
    CameraState c;
    same(c, &camera_state_from_json);
    c.community = "c1";
    c.gate = "gate-1";
    c.verdicts = {{"ok", 4}, {"tailgating", 1}};
    SnapshotRecord r;
    r.snapshot_id = 7;
    r.faces = 2;
    r.plate_confidence = 0.5;
    r.passes = {11, 12};
    c.recent.push_back(r);
    c.recent.push_back(SnapshotRecord{});
    same(c, &camera_state_from_json);
  }

  TEST_CASE("every projection survives its JSON form") {
    MeterState m = read({}, kNoonUtc, 10);
    m = read(std::move(m), kNoonUtc + kHour, 11);
    CHECK(to_json(meter_state_from_json(to_json(m))) == to_json(m));
    Occupancy o;
    o.people_inside = {"a"};
    o.vehicles_inside = {{"p", 5}};
    CHECK(to_json(occupancy_from_json(to_json(o))) == to_json(o));
  }
}
