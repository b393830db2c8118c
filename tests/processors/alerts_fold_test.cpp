// Alert rules as event sequences: each case feeds a community's events through the fold and
// reads the alerts it keeps. Time is the events' ingest time; ticks advance it.
#include <doctest/doctest.h>

#include "processors/alerts_fold.h"
#include "processors/record.h"

using namespace courtyard;
using namespace courtyard::processors;
using namespace schemas;

namespace {

constexpr std::int64_t kT0 = 1'795'950'000'000;

struct Community {
  AlertRules rules;
  CommunityAlerts state;
  std::vector<Alert> changed;  // of the last event
  std::uint64_t seq = 0;
  int utc_offset_min = 0;
  std::vector<Notification> notified;  // every notification decided so far

  Community() {
    add("gate-1", DeviceKind::Gate, "", "East gate", 0);
    add("wear-1", DeviceKind::Wearable, "b3-0402", "Building 3, flat 402", 0);
    add("smoke-1", DeviceKind::HomeSensor, "b3-0402", "Building 3, flat 402 kitchen", 0);
    add("meter-1", DeviceKind::Meter, "b1-0101", "Building 1, flat 101", 0);
  }

  void feed(const std::string& device, Body body, std::int64_t at_ms) {
    Event e;
    e.device = DeviceId(device);
    e.community = CommunityId("c1");
    e.seq = ++seq;
    e.ingest_time_ms = kT0 + at_ms;
    e.device_time_ms = kT0 + at_ms;
    e.body = std::move(body);
    auto step = apply(std::move(state), e, rules, utc_offset_min);
    state = std::move(step.state);
    changed = std::move(step.changed);
    for (auto& n : step.notifications) notified.push_back(std::move(n));
  }
  void add(const std::string& device, DeviceKind kind, std::string unit, std::string location, std::int64_t at) {
    feed(device, DeviceRegistered{kind, std::move(unit), std::move(location)}, at);
  }
  void tick(std::int64_t at_ms) { feed("courtyard-hub", Tick{0}, at_ms); }
  void act(const std::string& id, AlertAction action, std::int64_t at_ms) {
    feed("operator", OperatorAction{id, action, "staff-7", ""}, at_ms);
  }

  void pass(double temperature, std::int64_t at, const std::string& subject = "subj-1") {
    GatePass g;
    g.subject = subject;
    g.temperature_c = temperature;
    feed("gate-1", g, at);
  }
  void alarm(AlarmKind kind, bool cancelled, std::int64_t at) { feed("wear-1", WearableAlarm{kind, cancelled}, at); }
  void sensor(SensorKind kind, const std::string& st, std::int64_t at, const std::string& device = "smoke-1") {
    feed(device, HomeSensor{kind, st, {}}, at);
  }
  void status(std::optional<double> battery, std::optional<bool> tamper, std::int64_t at, const std::string& device = "meter-1") {
    DeviceStatus s;
    s.battery_pct = battery;
    s.tamper = tamper;
    feed(device, s, at);
  }

  const Alert* active(const std::string& rule, const std::string& subject) const {
    auto it = state.active.find(rule + "|" + subject);
    return it == state.active.end() ? nullptr : &it->second;
  }
  const Alert* closed(const std::string& rule, const std::string& subject) const {
    auto it = state.closed.find(rule + "|" + subject);
    return it == state.closed.end() ? nullptr : &it->second;
  }
};

}  // namespace

TEST_SUITE("alert rules") {
  TEST_CASE("fever: 37.3 °C at a gate raises a major alert there, 37.2 does not") {
    Community c;
    c.pass(37.2, 1000);
    CHECK(c.state.active.empty());
    c.pass(37.3, 2000);
    const Alert* a = c.active("fever", "subj-1");
    REQUIRE(a);
    CHECK(a->severity == "major");
    CHECK(a->state == "open");
    CHECK(a->device == "gate-1");
    CHECK(a->location == "East gate");
    CHECK(a->id == "c1:fever:subj-1:1");
    CHECK(a->detail == "37.3 °C at East gate");
    CHECK(c.changed.size() == 1);
  }

  TEST_CASE("a re-trigger updates the open episode instead of opening another") {
    Community c;
    c.pass(38.0, 1000);
    c.pass(38.4, 5000);
    REQUIRE(c.state.active.size() == 1);
    const Alert* a = c.active("fever", "subj-1");
    CHECK(a->occurrences == 2);
    CHECK(a->detail == "38.4 °C at East gate");
    CHECK(a->id == "c1:fever:subj-1:1");
  }

  TEST_CASE("SOS is critical at once and the wearer's cancel resolves it") {
    Community c;
    c.alarm(AlarmKind::Sos, false, 1000);
    REQUIRE(c.active("sos", "wear-1"));
    CHECK(c.active("sos", "wear-1")->severity == "critical");
    CHECK(c.active("sos", "wear-1")->unit == "b3-0402");
    c.alarm(AlarmKind::Sos, true, 2000);
    CHECK_FALSE(c.active("sos", "wear-1"));
    REQUIRE(c.closed("sos", "wear-1"));
    CHECK(c.closed("sos", "wear-1")->state == "resolved");
    CHECK(c.closed("sos", "wear-1")->timeline.back().note == "cancelled by the wearer");
  }

  TEST_CASE("a fall not cancelled within 60 s escalates to critical on the first tick after, not before") {
    Community c;
    c.alarm(AlarmKind::Fall, false, 1000);
    CHECK(c.active("fall", "wear-1")->severity == "major");
    c.tick(60'999);
    CHECK(c.active("fall", "wear-1")->severity == "major");
    c.tick(61'000);
    const Alert* a = c.active("fall", "wear-1");
    CHECK(a->severity == "critical");
    CHECK(a->state == "escalated");
    CHECK(a->timeline.back().what == "escalated");
  }

  TEST_CASE("a fall cancelled within 60 s is resolved and never escalates") {
    Community c;
    c.alarm(AlarmKind::Fall, false, 1000);
    c.alarm(AlarmKind::Fall, true, 30'000);
    c.tick(120'000);
    CHECK_FALSE(c.active("fall", "wear-1"));
    CHECK(c.closed("fall", "wear-1")->severity == "major");
  }

  TEST_CASE("an acknowledged fall still turns critical if the wearer never cancels, but stays acknowledged") {
    Community c;
    c.alarm(AlarmKind::Fall, false, 1000);
    c.act("c1:fall:wear-1:1", AlertAction::Acknowledge, 5000);
    c.tick(61'000);
    CHECK(c.active("fall", "wear-1")->severity == "critical");
    CHECK(c.active("fall", "wear-1")->state == "acknowledged");
  }

  TEST_CASE("an unacknowledged critical alert escalates after the configured delay; an acknowledged one does not") {
    Community c;
    c.rules.critical_ack_timeout_ms = 10'000;
    c.sensor(SensorKind::Smoke, "alarm", 1000);
    c.tick(10'999);
    CHECK(c.active("smoke", "smoke-1")->state == "open");
    c.tick(11'000);
    CHECK(c.active("smoke", "smoke-1")->state == "escalated");

    Community d;
    d.rules.critical_ack_timeout_ms = 10'000;
    d.sensor(SensorKind::Smoke, "alarm", 1000);
    d.act("c1:smoke:smoke-1:1", AlertAction::Acknowledge, 2000);
    d.tick(60'000);
    CHECK(d.active("smoke", "smoke-1")->state == "acknowledged");
  }

  TEST_CASE("operator actions are idempotent and an unknown alert id changes nothing") {
    Community c;
    c.sensor(SensorKind::WaterLeak, "leak", 1000);
    CHECK(c.active("water_leak", "smoke-1")->severity == "major");
    c.act("c1:water_leak:smoke-1:1", AlertAction::Acknowledge, 2000);
    CHECK(c.changed.size() == 1);
    c.act("c1:water_leak:smoke-1:1", AlertAction::Acknowledge, 3000);
    CHECK(c.changed.empty());
    c.act("c1:nothing:here:1", AlertAction::Resolve, 4000);
    CHECK(c.changed.empty());
    c.act("c1:water_leak:smoke-1:1", AlertAction::Resolve, 5000);
    CHECK(c.closed("water_leak", "smoke-1")->timeline.back().by == "staff-7");
    c.act("c1:water_leak:smoke-1:1", AlertAction::Resolve, 6000);
    CHECK(c.changed.empty());
  }

  TEST_CASE("flapping: a re-trigger within the flap window reopens the same episode, later ones open a new one") {
    Community c;
    c.rules.flap_window_ms = 60'000;
    c.sensor(SensorKind::Smoke, "alarm", 1000);
    c.sensor(SensorKind::Smoke, "ok", 2000);
    c.sensor(SensorKind::Smoke, "alarm", 3000);
    CHECK(c.active("smoke", "smoke-1")->id == "c1:smoke:smoke-1:1");
    CHECK(c.active("smoke", "smoke-1")->timeline.back().what == "reopened");
    c.sensor(SensorKind::Smoke, "ok", 4000);
    c.sensor(SensorKind::Smoke, "alarm", 70'000);
    CHECK(c.active("smoke", "smoke-1")->id == "c1:smoke:smoke-1:2");
  }

  TEST_CASE("a device silent for more than three heartbeat intervals goes offline, and its next event brings it back") {
    Community c;
    c.rules.heartbeat_ms["meter"] = 10'000;
    c.status(80, {}, 1000);
    c.tick(31'000);  // exactly 3 intervals: not yet
    CHECK_FALSE(c.active("offline", "meter-1"));
    c.tick(31'001);
    REQUIRE(c.active("offline", "meter-1"));
    CHECK(c.active("offline", "meter-1")->severity == "major");
    c.tick(40'000);  // still silent: the same episode, no new timeline noise
    CHECK(c.active("offline", "meter-1")->timeline.size() == 1);
    c.status(80, {}, 41'000);
    CHECK_FALSE(c.active("offline", "meter-1"));
    CHECK(c.closed("offline", "meter-1")->timeline.back().note == "back online");
  }

  TEST_CASE("a device that never reports after its registration goes offline three intervals later") {
    Community c;
    c.rules.heartbeat_ms = {{"meter", 10'000}};
    c.tick(30'000);
    CHECK(c.state.active.empty());
    c.tick(30'001);
    CHECK(c.active("offline", "meter-1"));
    CHECK(c.state.active.size() == 1);  // kinds with no interval are not watched
  }

  TEST_CASE("low battery warns once a day at most") {
    Community c;
    c.status(15, {}, 1000);
    CHECK(c.active("low_battery", "meter-1")->severity == "warning");
    c.status(90, {}, 2000);  // replaced
    CHECK_FALSE(c.active("low_battery", "meter-1"));
    c.status(12, {}, 3000);  // a flaky reading the same day
    CHECK_FALSE(c.active("low_battery", "meter-1"));
    c.status(12, {}, 2000 + 86'400'000);
    CHECK(c.active("low_battery", "meter-1"));
  }

  TEST_CASE("tamper opens a major alert and closing the case resolves it") {
    Community c;
    c.status({}, true, 1000);
    CHECK(c.active("tamper", "meter-1")->severity == "major");
    c.status({}, false, 2000);
    CHECK_FALSE(c.active("tamper", "meter-1"));
  }

  TEST_CASE("a home door left open longer than the limit raises a minor alert") {
    Community c;
    c.rules.door_open_limit_ms = 60'000;
    c.sensor(SensorKind::Door, "open", 1000);
    c.tick(61'000);
    CHECK_FALSE(c.active("door_open", "smoke-1"));
    c.tick(61'001);
    CHECK(c.active("door_open", "smoke-1")->severity == "minor");
    c.sensor(SensorKind::Door, "closed", 70'000);
    CHECK_FALSE(c.active("door_open", "smoke-1"));
  }

  TEST_CASE("SpO2 at or below 92 is critical") {
    Community c;
    WearableVitals v;
    v.spo2_pct = 93;
    c.feed("wear-1", v, 1000);
    CHECK(c.state.active.empty());
    v.spo2_pct = 92;
    c.feed("wear-1", v, 2000);
    CHECK(c.active("spo2_low", "wear-1")->severity == "critical");
  }

  TEST_CASE("an event that arrives with an older time does not move the clock back") {
    Community c;
    c.pass(38, 50'000);
    c.pass(38, 10'000);
    CHECK(c.state.now_ms == kT0 + 50'000);
    CHECK(c.active("fever", "subj-1")->updated_at_ms == kT0 + 50'000);
  }

  TEST_CASE("the same sequence folded twice gives the same alerts, byte for byte") {
    auto run = [] {
      Community c;
      c.rules.heartbeat_ms["meter"] = 10'000;
      c.status(80, {}, 1000);
      c.pass(38.2, 2000);
      c.alarm(AlarmKind::Fall, false, 3000);
      c.sensor(SensorKind::Smoke, "alarm", 4000);
      c.act("c1:smoke:smoke-1:1", AlertAction::Acknowledge, 5000);
      for (std::int64_t t = 10'000; t < 200'000; t += 5000) c.tick(t);
      return to_json(c.state).dump();
    };
    CHECK(run() == run());
  }

  TEST_CASE("state and alerts survive their JSON form unchanged") {
    Community c;
    c.pass(38.2, 2000);
    c.alarm(AlarmKind::Fall, false, 3000);
    c.sensor(SensorKind::Smoke, "alarm", 4000);
    c.sensor(SensorKind::Smoke, "ok", 5000);
    CHECK(community_alerts_from_json(nlohmann::json::parse(to_json(c.state).dump())) == c.state);
  }

  TEST_CASE("a watched device's binary record renders as its JSON, byte for byte, and reads back the same") {
    Community c;
    c.pass(38.2, 2000);
    c.alarm(AlarmKind::Fall, false, 3000);
    c.sensor(SensorKind::Smoke, "alarm", 4000);
    WatchedDevice meter;
    meter.kind = "meter";
    meter.location = "Building 3, flat 402 \u53a8\u623f";
    meter.last_total = 12.0;  // integral: still a real number
    meter.rate_baseline = 0.125;
    meter.rate_samples = -1;
    meter.flow_mask = 0xffffffffu;
    meter.door_open_since_ms = -7;
    c.state.devices["meter-1"] = meter;
    REQUIRE(c.state.devices.size() >= 3);
    for (const auto& [id, device] : c.state.devices) {
      const auto record = to_record(device);
      CHECK(is_binary_record(record));
      CHECK(record_text(record) == to_json(device).dump());
      CHECK(watched_device_from_json(record_json(record)) == device);
    }
  }
}

TEST_SUITE("alert rules: living alone") {
  TEST_CASE("a wearer's home with no movement, door or water use for 12 h raises inactivity; a sign of life clears it") {
    Community c;
    c.add("water-1", DeviceKind::Meter, "b3-0402", "Building 3, flat 402", 0);
    c.add("door-9", DeviceKind::HomeSensor, "b3-0402", "Building 3, flat 402 door", 0);
    c.rules.heartbeat_ms = {};  // only inactivity is under test
    WearableVitals moving;
    moving.moving = true;
    c.feed("wear-1", moving, 1000);
    c.feed("water-1", MeterReading{MeterKind::Water, 10, "m3"}, 2000);
    c.feed("water-1", MeterReading{MeterKind::Water, 10.2, "m3"}, 3000);  // water used: a sign of life at 3 s
    c.tick(3000 + 43'200'000);
    CHECK_FALSE(c.active("inactivity", "wear-1"));
    c.tick(3001 + 43'200'000);
    REQUIRE(c.active("inactivity", "wear-1"));
    CHECK(c.active("inactivity", "wear-1")->unit == "b3-0402");
    c.feed("water-1", MeterReading{MeterKind::Water, 10.2, "m3"}, 43'300'000);  // no use: not a sign
    CHECK(c.active("inactivity", "wear-1"));
    c.feed("door-9", HomeSensor{SensorKind::Door, "open", {}}, 43'400'000);
    CHECK_FALSE(c.active("inactivity", "wear-1"));
  }
}

TEST_SUITE("alert rules: sustained vitals and meters") {
  TEST_CASE("SpO2 of 93-94 is major only once it lasts five minutes; a normal reading restarts the count") {
    Community c;
    auto spo2 = [&](double pct, std::int64_t at) {
      WearableVitals v;
      v.spo2_pct = pct;
      c.feed("wear-1", v, at);
    };
    spo2(94, 0);
    spo2(93, 200'000);
    spo2(96, 250'000);
    spo2(94, 260'000);
    spo2(94, 559'999);
    CHECK_FALSE(c.active("spo2_low", "wear-1"));
    spo2(93, 560'000);
    REQUIRE(c.active("spo2_low", "wear-1"));
    CHECK(c.active("spo2_low", "wear-1")->severity == "major");
  }

  TEST_CASE("a heart rate over the limit for ten minutes at rest is major; moving resets it") {
    Community c;
    auto hr = [&](double bpm, bool moving, std::int64_t at) {
      WearableVitals v;
      v.heart_rate_bpm = bpm;
      v.moving = moving;
      c.feed("wear-1", v, at);
    };
    hr(130, false, 0);
    hr(135, true, 300'000);  // exercising: not a concern
    hr(130, false, 310'000);
    hr(128, false, 909'999);
    CHECK_FALSE(c.active("heart_rate_high", "wear-1"));
    hr(131, false, 910'000);
    CHECK(c.active("heart_rate_high", "wear-1"));
    Community d;
    d.rules.heart_rate_limit_bpm = 140;  // a community (or later a wearer) with its own limit
    WearableVitals v;
    v.heart_rate_bpm = 130;
    d.feed("wear-1", v, 0);
    d.feed("wear-1", v, 700'000);
    CHECK_FALSE(d.active("heart_rate_high", "wear-1"));
  }

  TEST_CASE("a watch taken off with no movement at home for 15 minutes is major; wearing it again clears it") {
    Community c;
    c.rules.heartbeat_ms = {};
    c.alarm(AlarmKind::Removed, false, 1000);
    c.tick(901'000);
    CHECK_FALSE(c.active("watch_removed", "wear-1"));
    c.tick(901'001);
    REQUIRE(c.active("watch_removed", "wear-1"));
    WearableVitals v;
    v.heart_rate_bpm = 70;
    c.feed("wear-1", v, 950'000);
    CHECK_FALSE(c.active("watch_removed", "wear-1"));
  }

  TEST_CASE("a watch taken off while someone moves about at home is no concern") {
    Community c;
    c.rules.heartbeat_ms = {};
    c.add("door-9", DeviceKind::HomeSensor, "b3-0402", "Building 3, flat 402 door", 0);
    c.alarm(AlarmKind::Removed, false, 1000);
    c.sensor(SensorKind::Door, "open", 60'000, "door-9");
    c.tick(2'000'000);
    CHECK_FALSE(c.active("watch_removed", "wear-1"));
  }

  TEST_CASE("water used in every hour of 24 hours raises a suspected leak; 23 hours do not") {
    Community c;
    c.rules.heartbeat_ms = {};
    const std::int64_t hour = 3'600'000;
    double total = 100;
    const std::int64_t start = ((kT0 / hour) + 1) * hour - kT0;  // the next whole hour
    c.feed("meter-1", MeterReading{MeterKind::Water, total, "m3"}, start - 60'000);  // the baseline
    for (int h = 0; h < 23; ++h) {
      c.feed("meter-1", MeterReading{MeterKind::Water, total += 0.01, "m3"}, start + h * hour + 60'000);
    }
    CHECK_FALSE(c.active("continuous_flow", "meter-1"));
    c.feed("meter-1", MeterReading{MeterKind::Water, total += 0.01, "m3"}, start + 23 * hour + 60'000);
    CHECK(c.active("continuous_flow", "meter-1"));
  }

  TEST_CASE("a consumption rate far above the meter's own baseline is a spike, but only once it has a baseline") {
    Community c;
    c.rules.heartbeat_ms = {};
    double total = 0;
    c.feed("meter-1", MeterReading{MeterKind::Electricity, total, "kWh"}, 0);
    for (int i = 1; i <= 2; ++i) c.feed("meter-1", MeterReading{MeterKind::Electricity, total += i * 40, "kWh"}, i * 3'600'000);
    CHECK_FALSE(c.active("consumption_spike", "meter-1"));  // no baseline yet: a jump is not a spike
    for (int i = 3; i <= 20; ++i) c.feed("meter-1", MeterReading{MeterKind::Electricity, total += 1, "kWh"}, i * 3'600'000);
    CHECK_FALSE(c.active("consumption_spike", "meter-1"));
    c.feed("meter-1", MeterReading{MeterKind::Electricity, total += 40, "kWh"}, 21 * 3'600'000);
    CHECK(c.active("consumption_spike", "meter-1"));
  }
}

TEST_SUITE("alert rules: access") {
  static void register_person(Community& c, const std::string& token, PersonRole role, std::int64_t from, std::int64_t to, std::int64_t at) {
    c.feed("registry", RegistryEntry{RegistryKind::Person, token, role, "b3-0402", from, to, 0, false}, at);
  }

  TEST_CASE("what a subject is follows the registry and a visitor's invitation window") {
    Community c;
    register_person(c, "res-1", PersonRole::Resident, 0, 0, 100);
    register_person(c, "vis-1", PersonRole::Visitor, kT0 + 1000, kT0 + 5000, 100);
    CHECK(subject_kind(c.state, "res-1", kT0) == "resident");
    CHECK(subject_kind(c.state, "vis-1", kT0 + 999) == "unknown");
    CHECK(subject_kind(c.state, "vis-1", kT0 + 3000) == "visitor");
    CHECK(subject_kind(c.state, "vis-1", kT0 + 5001) == "unknown");
    CHECK(subject_kind(c.state, "nobody", kT0) == "unknown");
    c.feed("registry", RegistryEntry{RegistryKind::Person, "res-1", PersonRole::Resident, "", 0, 0, 0, true}, 200);
    CHECK(subject_kind(c.state, "res-1", kT0) == "unknown");
  }

  TEST_CASE("a refused pass by an unknown subject raises a minor alert; a refused resident does not") {
    Community c;
    register_person(c, "res-1", PersonRole::Resident, 0, 0, 100);
    GatePass p;
    p.subject = "res-1";
    p.decision = Decision::Denied;
    c.feed("gate-1", p, 1000);
    CHECK(c.state.active.empty());
    p.subject = "stranger";
    c.feed("gate-1", p, 2000);
    REQUIRE(c.active("unknown_subject", "stranger"));
    CHECK(c.active("unknown_subject", "stranger")->location == "East gate");
  }

  TEST_CASE("five refusals at one gate within ten minutes raise a major alert; four do not") {
    Community c;
    register_person(c, "res-1", PersonRole::Resident, 0, 0, 100);
    GatePass p;
    p.subject = "res-1";
    p.decision = Decision::Denied;
    c.feed("gate-1", p, 0);  // too long ago to count
    for (int i = 0; i < 4; ++i) c.feed("gate-1", p, 700'000 + i * 1000);
    CHECK_FALSE(c.active("repeated_denials", "gate-1"));
    c.feed("gate-1", p, 705'000);
    REQUIRE(c.active("repeated_denials", "gate-1"));
    CHECK(c.active("repeated_denials", "gate-1")->severity == "major");
  }

  TEST_CASE("an unregistered vehicle inside is minor; a visitor's car over its allowance is minor; leaving clears both") {
    Community c;
    c.rules.heartbeat_ms = {};
    c.feed("registry", RegistryEntry{RegistryKind::Vehicle, "plate-v", PersonRole::Visitor, "b3-0402", 0, 0, 3600, false}, 0);
    c.feed("vgate", VehiclePass{"plate-x", Direction::In, Decision::Granted}, 1000);
    CHECK(c.active("unknown_vehicle", "plate-x"));
    c.feed("vgate", VehiclePass{"plate-v", Direction::In, Decision::Granted}, 2000);
    CHECK_FALSE(c.active("unknown_vehicle", "plate-v"));
    c.tick(2000 + 3'600'000);
    CHECK_FALSE(c.active("vehicle_overstay", "plate-v"));
    c.tick(2001 + 3'600'000);
    CHECK(c.active("vehicle_overstay", "plate-v"));
    c.feed("vgate", VehiclePass{"plate-v", Direction::Out, Decision::Granted}, 4'000'000);
    c.feed("vgate", VehiclePass{"plate-x", Direction::Out, Decision::Granted}, 4'000'000);
    CHECK(c.state.active.empty());
  }
}

TEST_SUITE("alert rules: state does not grow with history") {
  TEST_CASE("an invitation a day past its end, and a car inside that no rule watches, are forgotten at a tick") {
    Community c;
    c.rules.heartbeat_ms = {};
    const std::int64_t day = 86'400'000;
    c.feed("registry", RegistryEntry{RegistryKind::Person, "visitor-1", PersonRole::Visitor, "b3-0402", 0, kT0 + 1000, 0, false}, 0);
    c.feed("registry", RegistryEntry{RegistryKind::Person, "res-1", PersonRole::Resident, "b3-0402", 0, 0, 0, false}, 0);
    c.feed("registry", RegistryEntry{RegistryKind::Vehicle, "plate-v", PersonRole::Visitor, "b3-0402", 0, 0, 3600, false}, 0);
    c.feed("vgate", VehiclePass{"plate-x", Direction::In, Decision::Granted}, 1000);  // a car nobody registered
    c.feed("vgate", VehiclePass{"plate-v", Direction::In, Decision::Granted}, 1000);  // a visitor's car
    c.tick(1000 + day);
    CHECK(c.state.people.contains("visitor-1"));  // a day has not yet passed
    CHECK(c.state.vehicles_inside.contains("plate-x"));
    c.tick(1001 + day);
    CHECK_FALSE(c.state.people.contains("visitor-1"));
    CHECK(c.state.people.contains("res-1"));              // no end: never forgotten
    CHECK_FALSE(c.state.vehicles_inside.contains("plate-x"));
    CHECK(c.state.vehicles_inside.contains("plate-v"));  // its allowance is still watched
    CHECK(c.active("unknown_vehicle", "plate-x"));        // what was raised stays raised until someone acts
    CHECK(c.active("vehicle_overstay", "plate-v"));
    c.feed("vgate", VehiclePass{"plate-x", Direction::Out, Decision::Granted}, 2 * day);
    CHECK_FALSE(c.active("unknown_vehicle", "plate-x"));  // leaving still clears it
    // The registry is still the community's: with every registration gone, a stranger is unknown.
    c.feed("registry", RegistryEntry{RegistryKind::Person, "res-1", PersonRole::Resident, "", 0, 0, 0, true}, 2 * day);
    c.feed("registry", RegistryEntry{RegistryKind::Vehicle, "plate-v", PersonRole::Visitor, "", 0, 0, 0, true}, 2 * day);
    REQUIRE(c.state.people.empty());
    REQUIRE(c.state.vehicles.empty());
    c.feed("vgate", VehiclePass{"plate-y", Direction::In, Decision::Granted}, 2 * day + 1000);
    CHECK(c.active("unknown_vehicle", "plate-y"));
  }
}

TEST_SUITE("alert rules: hush") {
  TEST_CASE("a hushed smoke alarm is quiet for ten minutes, then reported again if it still alarms") {
    Community c;
    c.rules.critical_ack_timeout_ms = 3'600'000;
    c.rules.heartbeat_ms = {};
    c.sensor(SensorKind::Smoke, "alarm", 1000);
    c.feed("operator", OperatorAction{"c1:smoke:smoke-1:1", AlertAction::Hush, "resident", "burnt toast"}, 2000);
    CHECK(c.active("smoke", "smoke-1")->hushed_until_ms == kT0 + 602'000);
    CHECK(c.changed.at(0).timeline.back().what == "hushed");
    c.tick(601'999);
    CHECK(c.changed.empty());
    c.tick(602'000);
    REQUIRE(c.changed.size() == 1);
    CHECK(c.changed[0].timeline.back().what == "hush_ended");
  }

  TEST_CASE("only alarms with a sounder can be hushed") {
    Community c;
    c.sensor(SensorKind::WaterLeak, "leak", 1000);
    c.feed("operator", OperatorAction{"c1:water_leak:smoke-1:1", AlertAction::Hush, "resident", ""}, 2000);
    CHECK(c.changed.empty());
    CHECK(c.active("water_leak", "smoke-1")->hushed_until_ms == 0);
  }
}

TEST_SUITE("alert rules: access without a registry") {
  TEST_CASE("a community that keeps no registry gets no stranger or unknown-vehicle alerts") {
    Community c;
    GatePass p;
    p.subject = "anyone";
    p.decision = Decision::Denied;
    c.feed("gate-1", p, 1000);
    c.feed("vgate", VehiclePass{"plate-x", Direction::In, Decision::Granted}, 2000);
    CHECK_FALSE(c.active("unknown_subject", "anyone"));
    CHECK_FALSE(c.active("unknown_vehicle", "plate-x"));
  }

  TEST_CASE("meter readings seconds apart are pooled into quarter-hour rates before any spike is judged") {
    Community c;
    c.rules.heartbeat_ms = {};
    double total = 0;
    for (int i = 0; i <= 40; ++i) {
      c.feed("meter-1", MeterReading{MeterKind::Electricity, total += 0.01, "kWh"}, i * 60'000);
    }
    c.feed("meter-1", MeterReading{MeterKind::Electricity, total += 0.05, "kWh"}, 40 * 60'000 + 500);  // 0.5 s later
    CHECK_FALSE(c.active("consumption_spike", "meter-1"));
  }
}

namespace {

// Sunday 19:00 in China (UTC+8) is kT0: the night shift has it.
constexpr std::int64_t kMin = 60'000;

// A compound of two grids: grid-a has building b3 (flat b3-0402, its door door-b3) and the east
// gate; grid-b has building b1. Nights (18:00-06:00) grid-a's worker is "wang", grid-b's "zhao";
// days "li". The duty manager "chen" and security "sun" cover the whole compound (grid "all").
struct Compound : Community {
  Compound() {
    utc_offset_min = 480;
    add("door-b3", DeviceKind::Door, "", "Building 3, door", 0);
    site(SiteKind::Building, "b3", {"b3-0402", "door-b3"});
    site(SiteKind::Building, "b1", {"b1-0101"});
    site(SiteKind::Grid, "grid-a", {"b3", "gate-1"});
    site(SiteKind::Grid, "grid-b", {"b1"});
    roster("grid-a", "grid_worker", "wang", "li");
    roster("grid-b", "grid_worker", "zhao", "li");
    roster("all", "duty_manager", "chen", "chen");
    roster("all", "security", "sun", "sun");
  }
  void site(SiteKind kind, const std::string& id, std::vector<std::string> members) {
    SiteEntry e;
    e.kind = kind;
    e.id = id;
    e.members = std::move(members);
    feed("courtyard-hub", e, 0);
  }
  // Every day: `night` 18:00-06:00, `day` 06:00-18:00.
  void roster(const std::string& grid, const std::string& role, const std::string& night, const std::string& day) {
    DutyRoster r{grid, role, {}, {}, "admin"};
    for (int d = 0; d < 7; ++d) {
      r.week.push_back({d, 18 * 60, 6 * 60, night});
      r.week.push_back({d, 6 * 60, 18 * 60, day});
    }
    feed("courtyard-hub", r, 0);
  }
  void respond(const std::string& id, AlertAction action, std::int64_t at, const std::string& to = "") {
    feed("operator", OperatorAction{id, action, "staff-7", "", to}, at);
  }
  void staff_pass(const std::string& token, const std::string& gate, std::int64_t at) {
    GatePass g;
    g.subject = token;
    feed(gate, g, at);
  }
  const Alert& fall() const { return *active("fall", "wear-1"); }
  std::vector<std::string> told() const {  // the dispatch's timeline: what, to whom
    std::vector<std::string> out;
    for (const auto& t : fall().timeline) {
      if (t.by == "dispatch") out.push_back(t.what + ": " + t.note);
    }
    return out;
  }
};

}  // namespace

TEST_SUITE("dispatch") {
  TEST_CASE("a community without duty rosters assigns nobody") {
    Community c;
    c.alarm(AlarmKind::Fall, false, 1000);
    CHECK(c.active("fall", "wear-1")->assignee.empty());
    CHECK(c.active("fall", "wear-1")->timeline.size() == 1);
  }

  TEST_CASE("a fall in grid A at night goes to grid A's night worker, with its building and grid") {
    Compound c;
    c.alarm(AlarmKind::Fall, false, 1000);
    const Alert& a = c.fall();
    CHECK(a.building == "b3");
    CHECK(a.grid == "grid-a");
    CHECK(a.assignee == "wang");
    CHECK(a.assignee_role == "grid_worker");
    CHECK(a.assigned_at_ms == kT0 + 1000);
    CHECK(a.dispatch_at_ms == kT0 + 1000 + 300'000);  // major: five minutes to acknowledge
    CHECK(c.told() == std::vector<std::string>{"assigned: grid_worker wang"});
  }

  TEST_CASE("the same fall by day goes to the day worker: the roster is read at the alert's log time") {
    Compound c;
    c.alarm(AlarmKind::Fall, false, 11 * 60 * kMin + 1000);  // Monday 06:00:01
    CHECK(c.fall().assignee == "li");
  }

  TEST_CASE("unacknowledged, it escalates to the duty manager at the first tick past the target, then to security") {
    Compound c;
    c.alarm(AlarmKind::Fall, false, 1000);
    c.tick(300'000);
    CHECK(c.fall().assignee == "wang");  // not yet: 299 s
    c.tick(302'000);
    CHECK(c.fall().assignee == "chen");
    CHECK(c.fall().assignee_role == "duty_manager");
    CHECK(c.fall().chain_step == 1);
    // The fall turned critical at 60 s: the duty manager has two minutes.
    CHECK(c.fall().dispatch_at_ms == kT0 + 302'000 + 120'000);
    c.tick(430'000);
    CHECK(c.fall().assignee == "sun");
    c.tick(560'000);
    CHECK(c.fall().assignee == "sun");
    CHECK(c.fall().dispatch_at_ms == 0);
    CHECK(c.told() == std::vector<std::string>{
                          "assigned: grid_worker wang",
                          "escalated: wang did not acknowledge within 300 s; now duty_manager chen",
                          "escalated: chen did not acknowledge within 120 s; now security sun",
                          "unanswered: sun did not acknowledge within 120 s; nobody further in the chain is on duty"});
  }

  TEST_CASE("acknowledged in time, it stays with the one told") {
    Compound c;
    c.alarm(AlarmKind::Fall, false, 1000);
    c.act("c1:fall:wear-1:1", AlertAction::Acknowledge, 200'000);
    c.tick(1'000'000);
    CHECK(c.fall().assignee == "wang");
    CHECK(c.fall().dispatch_at_ms == 0);
    CHECK(c.told().size() == 1);
  }

  TEST_CASE("a role with nobody on duty is skipped; nobody at all leaves the alert unassigned") {
    Compound c;
    DutyRoster leave{"grid-a", "grid_worker", {{6, 18 * 60, 6 * 60, "wang"}}, {{kT0, kT0 + 3'600'000, ""}}, "admin"};
    c.feed("courtyard-hub", leave, 0);  // wang is on leave for the hour
    c.alarm(AlarmKind::Fall, false, 1000);
    CHECK(c.fall().assignee == "chen");
    CHECK(c.fall().chain_step == 1);

    Community lone;  // rosters, but none that covers a grid worker, duty manager or security
    lone.feed("courtyard-hub", DutyRoster{"all", "maintenance", {{0, 0, 0, "fix"}}, {}, "admin"}, 0);
    lone.alarm(AlarmKind::Fall, false, 1000);
    CHECK(lone.active("fall", "wear-1")->assignee.empty());
    CHECK(lone.active("fall", "wear-1")->timeline.back().what == "unassigned");
  }

  TEST_CASE("a fever at a gate goes to security; a device rule to maintenance, or the next on duty, untimed if a warning") {
    Compound c;
    c.pass(38.0, 1000);
    CHECK(c.active("fever", "subj-1")->assignee == "sun");
    CHECK(c.active("fever", "subj-1")->grid == "grid-a");  // the gate is grid-a's
    c.status(10, {}, 2000);                               // meter-1 of flat b1-0101, in b1, in grid-b
    const Alert* battery = c.active("low_battery", "meter-1");
    CHECK(battery->grid == "grid-b");
    CHECK(battery->assignee == "chen");  // nobody rostered for maintenance: the duty manager
    CHECK(battery->dispatch_at_ms == 0);
  }

  TEST_CASE("the assignee's own pass at the building's door is their arrival; another's pass or another gate is not") {
    Compound c;
    c.alarm(AlarmKind::Fall, false, 1000);
    c.staff_pass("li", "door-b3", 60'000);  // not the assignee
    CHECK(c.fall().response.empty());
    c.staff_pass("wang", "gate-1", 90'000);  // the assignee, at the compound's gate: on the way, not there
    CHECK(c.fall().response.empty());
    c.staff_pass("wang", "door-b3", 120'000);
    CHECK(c.fall().response == "arrived");
    CHECK(c.fall().arrived_at_ms == kT0 + 120'000);
    CHECK(c.fall().state == "acknowledged");  // arriving acknowledges
    CHECK(c.fall().timeline.back().by == "gate");
    c.tick(1'000'000);
    CHECK(c.fall().assignee == "wang");  // and stops the escalation
  }

  TEST_CASE("a responder's steps go forward only, and reassigning restarts the clock for the new one") {
    Compound c;
    c.alarm(AlarmKind::Fall, false, 1000);
    const std::string id = "c1:fall:wear-1:1";
    c.respond(id, AlertAction::OnMyWay, 10'000);
    CHECK(c.fall().response == "on_my_way");
    CHECK(c.fall().acknowledged_at_ms == kT0 + 10'000);
    c.respond(id, AlertAction::Arrived, 20'000);
    c.respond(id, AlertAction::OnMyWay, 30'000);  // a step back: nothing
    CHECK(c.fall().response == "arrived");
    CHECK(c.fall().arrived_at_ms == kT0 + 20'000);
    c.respond(id, AlertAction::HandedOver, 40'000);
    CHECK(c.fall().response == "handed_over");

    Compound d;
    d.alarm(AlarmKind::Fall, false, 1000);
    d.respond(id, AlertAction::Reassign, 50'000, "li");
    CHECK(d.fall().assignee == "li");
    CHECK(d.fall().dispatch_at_ms == kT0 + 50'000 + 300'000);
    CHECK(d.fall().timeline.back().what == "reassigned");
    d.respond(id, AlertAction::Reassign, 60'000, "../../etc");  // not an id: nothing
    CHECK(d.fall().assignee == "li");
  }

  TEST_CASE("a household's acknowledgement says it has seen the alert, but the dispatch goes on until staff answer") {
    Compound c;
    c.alarm(AlarmKind::Fall, false, 1000);
    c.feed("operator", OperatorAction{"c1:fall:wear-1:1", AlertAction::Acknowledge, "tok (b3-0402)", "", "", "resident"}, 5000);
    CHECK(c.fall().state == "acknowledged");
    CHECK(c.fall().acknowledged_at_ms == 0);  // no staff answer yet
    c.tick(302'000);
    CHECK(c.fall().assignee == "chen");  // wang never answered: escalated all the same
    c.feed("operator", OperatorAction{"c1:fall:wear-1:1", AlertAction::Acknowledge, "desk", "", "", "staff"}, 303'000);
    CHECK(c.fall().acknowledged_at_ms == kT0 + 303'000);
    CHECK(c.fall().dispatch_at_ms == 0);
  }

  TEST_CASE("a fall raised again within the flap window is a new episode to answer: dispatched afresh, the family not told twice") {
    Compound c;
    c.alarm(AlarmKind::Fall, false, 1000);
    c.staff_pass("wang", "door-b3", 60'000);
    c.alarm(AlarmKind::Fall, true, 70'000);  // cancelled by the wearer: resolved
    c.alarm(AlarmKind::Fall, false, 80'000);  // and again
    CHECK(c.fall().id == "c1:fall:wear-1:1");  // the same episode, reopened
    CHECK(c.fall().response.empty());
    CHECK(c.fall().arrived_at_ms == 0);
    CHECK(c.fall().acknowledged_at_ms == 0);
    CHECK(c.fall().assignee == "wang");
    CHECK(c.fall().assigned_at_ms == kT0 + 80'000);
    int alerts_told = 0;
    for (const auto& n : c.notified) alerts_told += n.to == "family" && n.what == "alert";
    CHECK(alerts_told == 1);
  }

  TEST_CASE("hostile structure from the log: a grid sharing a building's id, a roster key with a separator, oversized member lists") {
    Compound c;
    c.site(SiteKind::Grid, "b3", {"gate-1"});  // a grid named like building b3: both stand
    CHECK(c.state.site.contains("building/b3"));
    CHECK(c.state.site.contains("grid/b3"));
    c.feed("courtyard-hub", DutyRoster{"grid-a|x", "grid_worker", {{0, 0, 0, "mallory"}}, {}, "admin"}, 0);
    c.feed("courtyard-hub", DutyRoster{"grid-a", "grid_worker|x", {{0, 0, 0, "mallory"}}, {}, "admin"}, 0);
    CHECK(c.state.rosters.size() == 4);  // neither was kept
    std::vector<std::string> many(501, "m");
    c.site(SiteKind::Building, "b9", many);
    CHECK_FALSE(c.state.site.contains("building/b9"));
    c.alarm(AlarmKind::Fall, false, 1000);
    CHECK(c.fall().building == "b3");
    CHECK(c.fall().grid == "grid-a");
  }

  TEST_CASE("rosters and the site survive the state's JSON form; a removed grid and an emptied roster leave it") {
    Compound c;
    c.alarm(AlarmKind::Fall, false, 1000);
    CHECK(community_alerts_from_json(nlohmann::json::parse(to_json(c.state).dump())) == c.state);
    SiteEntry gone;
    gone.kind = SiteKind::Grid;
    gone.id = "grid-b";
    gone.removed = true;
    c.feed("courtyard-hub", gone, 2000);
    c.feed("courtyard-hub", DutyRoster{"grid-b", "grid_worker", {}, {}, "admin"}, 2000);
    CHECK_FALSE(c.state.site.contains("grid/grid-b"));
    CHECK(c.state.site.contains("building/b1"));
    CHECK_FALSE(c.state.rosters.contains("grid-b|grid_worker"));
  }
}

TEST_SUITE("dispatch: notifications") {
  // "to what (staff)" for each notification of an alert decided, in order.
  std::vector<std::string> told(const Community& c, const std::string& alert = "") {
    std::vector<std::string> out;
    for (const auto& n : c.notified) {
      if (alert.empty() || n.alert_id == alert) out.push_back(n.to + " " + n.what + (n.staff.empty() ? "" : " " + n.staff));
    }
    return out;
  }

  TEST_CASE("an elder's fall tells the family and the assignee, then whoever it escalates to (and the one relieved), then the "
            "family of arrival, and the assignee and the family of resolution") {
    Compound c;
    c.alarm(AlarmKind::Fall, false, 1000);
    CHECK(told(c) == std::vector<std::string>{"family alert", "staff assigned wang", "family staff_assigned"});
    c.tick(302'000);
    c.staff_pass("chen", "door-b3", 320'000);
    c.act("c1:fall:wear-1:1", AlertAction::Resolve, 400'000);
    CHECK(told(c, "c1:fall:wear-1:1") == std::vector<std::string>{"family alert", "staff assigned wang", "family staff_assigned",
                                                                  "staff escalated chen", "staff relieved wang",
                                                                  "family staff_arrived", "staff resolved chen", "family resolved"});
    // Ids count up per alert, so a replay names them the same; each says where and when.
    CHECK(c.notified[0].id == "c1:fall:wear-1:1~1");
    CHECK(c.notified.back().id == "c1:fall:wear-1:1~8");
    CHECK(c.notified[5].id == "c1:offline:gate-1:1~1");  // meanwhile the gate went quiet: the duty manager is told
    CHECK(c.notified[3].at_ms == kT0 + 302'000);
    CHECK(c.notified[0].unit == "b3-0402");
    CHECK(c.notified[0].severity == "major");
  }

  TEST_CASE("reassigned, the one it was taken from is told to stand down; reassigned to the same person, nobody is told again") {
    Compound c;
    c.sensor(SensorKind::Smoke, "alarm", 1000);
    const std::string id = "c1:smoke:smoke-1:1";
    c.respond(id, AlertAction::Reassign, 5000, "li");
    c.respond(id, AlertAction::Reassign, 6000, "li");
    CHECK(told(c, id) == std::vector<std::string>{"staff assigned wang", "staff reassigned li", "staff relieved wang"});
  }

  TEST_CASE("a smoke alarm tells its assignee but not the family; without rosters only families are told") {
    Compound c;
    c.sensor(SensorKind::Smoke, "alarm", 1000);
    CHECK(told(c) == std::vector<std::string>{"staff assigned wang"});
    Community plain;
    plain.alarm(AlarmKind::Sos, false, 1000);
    plain.alarm(AlarmKind::Sos, true, 2000);
    CHECK(told(plain) == std::vector<std::string>{"family alert", "family resolved"});
  }
}
