// Camera rules as event sequences: passes at a gate, then what the vision processor saw in a
// snapshot of it. Time is the events' ingest (log) time.
#include <doctest/doctest.h>

#include "processors/alerts_fold.h"
#include "processors/community_folds.h"

using namespace courtyard;
using namespace courtyard::processors;
using namespace schemas;

namespace {

constexpr std::int64_t kT0 = 1'795'950'000'000;

struct Gates {
  AlertRules rules;
  CommunityAlerts state;
  std::vector<Alert> changed;  // of the last event
  std::optional<SnapshotVerdict> verdict;
  std::uint64_t next_id = 0;

  Gates() {
    feed("gate-1", DeviceRegistered{DeviceKind::Gate, "", "East gate"}, 0);
    feed("cam-1", DeviceRegistered{DeviceKind::Camera, "", "East gate camera"}, 0);
    feed("car-1", DeviceRegistered{DeviceKind::VehicleGate, "", "Garage ramp"}, 0);
    feed("cam-2", DeviceRegistered{DeviceKind::Camera, "", "Garage ramp camera"}, 0);
  }

  std::uint64_t feed(const std::string& device, Body body, std::int64_t at_ms) {
    Event e;
    e.event_id = ++next_id;
    e.device = DeviceId(device);
    e.community = CommunityId("c1");
    e.seq = e.event_id;
    e.ingest_time_ms = kT0 + at_ms;
    e.device_time_ms = kT0 + at_ms;
    e.body = std::move(body);
    auto step = apply(std::move(state), e, rules);
    state = std::move(step.state);
    changed = std::move(step.changed);
    verdict = std::move(step.verdict);
    return e.event_id;
  }
  std::uint64_t pass(std::int64_t at, Decision decision = Decision::Granted, const std::string& gate = "gate-1") {
    GatePass g;
    g.subject = "subj-" + std::to_string(at);
    g.decision = decision;
    return feed(gate, g, at);
  }
  std::uint64_t car(const std::string& plate, std::int64_t at) {
    return feed("car-1", VehiclePass{plate, Direction::In, Decision::Granted}, at);
  }
  // The vision processor's report of the snapshot `snapshot_id`, taken at `taken`, appended at `at`.
  void seen(std::uint64_t snapshot_id, int faces, std::int64_t taken, std::int64_t at, const std::string& camera = "cam-1",
            const std::string& gate = "gate-1", std::string plate = "", double confidence = 0) {
    VisionAnalysis a;
    a.snapshot_id = snapshot_id;
    a.gate = gate;
    a.snapshot_time_ms = kT0 + taken;
    a.faces = static_cast<std::uint16_t>(faces);
    a.plate_token = std::move(plate);
    a.plate_confidence = confidence;
    feed(camera, a, at);
  }
  std::vector<Alert> active(const std::string& rule) const {
    std::vector<Alert> out;
    for (const auto& [_, a] : state.active) {
      if (a.rule == rule) out.push_back(a);
    }
    return out;
  }
};

}  // namespace

TEST_SUITE("camera rules") {
  TEST_CASE("two faces in a snapshot after one granted pass is one tailgating alert, with the snapshot on it") {
    Gates g;
    auto granted = g.pass(1'000);
    g.seen(1001, 2, 1'500, 2'300);
    REQUIRE(g.verdict);
    CHECK(g.verdict->verdict == "tailgating");
    CHECK(g.verdict->passes == std::vector<std::uint64_t>{granted});
    auto alerts = g.active("tailgating");
    REQUIRE(alerts.size() == 1);
    CHECK(alerts[0].severity == "major");
    CHECK(alerts[0].device == "gate-1");
    CHECK(alerts[0].location == "East gate");
    CHECK(alerts[0].snapshot_id == 1001);
    CHECK(alerts[0].detail.find("2 people, 1 pass(es) granted") != std::string::npos);
  }

  TEST_CASE("as many faces as granted passes is no alert") {
    Gates g;
    g.pass(1'000);
    g.pass(1'200);
    g.seen(1001, 2, 1'500, 2'000);
    CHECK(g.verdict->verdict == "ok");
    CHECK(g.active("tailgating").empty());
  }

  TEST_CASE("a denied pass does not let anyone in, and a gate nobody passed has nobody to tailgate") {
    Gates g;
    g.pass(1'000, Decision::Denied);
    g.seen(1001, 2, 1'500, 2'000);
    CHECK(g.verdict->verdict == "no_pass");
    CHECK(g.active("tailgating").empty());
  }

  TEST_CASE("passes outside the window around the snapshot do not count for it") {
    Gates g;
    g.pass(1'000);                     // 20 s before: another passage
    g.pass(21'000);
    g.seen(1001, 2, 21'500, 22'000);   // one pass in the window, two faces
    CHECK(g.verdict->verdict == "tailgating");
    CHECK(g.verdict->passes.size() == 1);
  }

  TEST_CASE("the same snapshot analysed twice, or a second snapshot of the same passage, adds no alert") {
    Gates g;
    g.pass(1'000);
    g.seen(1001, 2, 1'500, 2'000);
    REQUIRE(g.active("tailgating").size() == 1);
    g.seen(1001, 2, 1'500, 2'500);  // the worker's at-least-once delivery
    CHECK(g.verdict->verdict == "repeat");
    CHECK(g.changed.empty());
    g.seen(1002, 3, 1'800, 2'900);  // the camera fired again during the same passage
    CHECK(g.verdict->verdict == "tailgating");
    CHECK(g.changed.empty());
    CHECK(g.active("tailgating")[0].occurrences == 1);
  }

  TEST_CASE("a later passage with tailgating again updates the gate's open alert") {
    Gates g;
    g.pass(1'000);
    g.seen(1001, 2, 1'500, 2'000);
    g.pass(60'000);
    g.seen(1002, 2, 60'500, 61'000);
    REQUIRE(g.active("tailgating").size() == 1);
    CHECK(g.active("tailgating")[0].occurrences == 2);
    CHECK(g.active("tailgating")[0].snapshot_id == 1002);
  }

  TEST_CASE("a snapshot that could not be read is counted, never an alert") {
    Gates g;
    g.pass(1'000);
    VisionAnalysis a;
    a.snapshot_id = 7;
    a.gate = "gate-1";
    a.snapshot_time_ms = kT0 + 1'500;
    a.error = "not a decodable image";
    g.feed("cam-1", a, 2'000);
    CHECK(g.verdict->verdict == "unreadable");
    CHECK(g.state.active.empty());
  }

  TEST_CASE("a legible plate that is not the one the vehicle gate let in is a plate mismatch") {
    Gates g;
    g.car("plate-aaaa", 1'000);
    g.seen(1001, 0, 1'400, 2'000, "cam-2", "car-1", "plate-bbbb", 0.9);
    CHECK(g.verdict->verdict == "plate_mismatch");
    auto alerts = g.active("plate_mismatch");
    REQUIRE(alerts.size() == 1);
    CHECK(alerts[0].location == "Garage ramp");
    CHECK(alerts[0].detail.find("plate-bbbb") != std::string::npos);
    CHECK(alerts[0].detail.find("plate-aaaa") != std::string::npos);
  }

  TEST_CASE("the plate the gate let in, or one read without confidence, is no alert") {
    Gates g;
    g.car("plate-aaaa", 1'000);
    g.seen(1001, 0, 1'400, 2'000, "cam-2", "car-1", "plate-aaaa", 0.9);
    CHECK(g.verdict->verdict == "ok");
    g.car("plate-cccc", 40'000);
    g.seen(1002, 0, 40'400, 41'000, "cam-2", "car-1", "plate-dddd", 0.3);
    CHECK(g.verdict->verdict == "plate_unread");
    CHECK(g.state.active.empty());
  }

  TEST_CASE("the camera's projection keeps its recent snapshots with their verdicts") {
    Gates g;
    g.pass(1'000);
    g.seen(1001, 2, 1'500, 2'000);
    CameraState camera;
    VisionAnalysis a;
    a.snapshot_id = 1001;
    a.faces = 2;
    camera = apply(std::move(camera), a, *g.verdict);
    camera = apply(std::move(camera), a, SnapshotVerdict{"repeat", {}, ""});
    CHECK(camera.analysed == 1);
    CHECK(camera.verdicts == std::map<std::string, std::uint64_t>{{"tailgating", 1}});
    REQUIRE(camera.recent.size() == 1);
    CHECK(camera.recent[0].faces == 2);
    CHECK(camera_state_from_json(to_json(camera)).recent[0].verdict == "tailgating");
  }

  TEST_CASE("the state with its passes and analysed snapshots survives its JSON form") {
    Gates g;
    g.pass(1'000);
    g.car("plate-aaaa", 1'100);
    g.seen(1001, 2, 1'500, 2'000);
    auto round = community_alerts_from_json(to_json(g.state));
    CHECK(round.granted == g.state.granted);
    CHECK(round.analysed == g.state.analysed);
    CHECK(round.tailgated == g.state.tailgated);
    CHECK(round.active.begin()->second.snapshot_id == 1001);
  }
}
