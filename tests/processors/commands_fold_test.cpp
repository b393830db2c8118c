#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "events.h"
#include "processors/commands_fold.h"
#include "processors/projector.h"
#include "processors/record.h"
#include "temp_dir.h"

using namespace courtyard;
using namespace courtyard::processors;
using json = nlohmann::json;

namespace {

constexpr std::int64_t kT0 = 1795950000000;

schemas::Event at(std::int64_t ms, const std::string& device, schemas::Body body, std::uint64_t seq = 0) {
  schemas::Event e;
  e.device = DeviceId(device);
  e.community = CommunityId("c1");
  e.seq = seq;
  e.boot = 1;
  e.device_time_ms = ms;
  e.ingest_time_ms = ms;
  e.body = std::move(body);
  return e;
}

// A valve in household b1-101 and the projector folding a command's life.
struct Valve {
  test::TempDir dir;
  std::unique_ptr<Store> store;
  std::unique_ptr<Projector> projector;
  std::int64_t offset = 0;

  Valve() {
    StoreConfig config;
    config.dir = dir.str("state");
    store = std::move(*Store::open(config));
    projector = std::make_unique<Projector>(*store, ProjectorConfig{});
    fold(at(kT0, "valve-1", schemas::DeviceRegistered{schemas::DeviceKind::HomeSensor, "b1-101", "kitchen"}));
    fold(at(kT0 + 1000, "operator",
            schemas::Command{"cmd-1", DeviceId("valve-1"), "close_valve", R"({"why":"gas"})", "tok_1", kT0 + 60000}));
  }
  BatchResult fold(const schemas::Event& e) {
    auto result = projector->apply(std::vector{test::log_message(e, offset++)});
    REQUIRE(result);
    return std::move(*result);
  }
  json record() {
    auto raw = store->view().get(Projector::command_key("cmd-1"));
    REQUIRE(raw);
    return record_json(*raw);
  }
  schemas::Event tick(std::int64_t ms) { return at(ms, "courtyard-hub", schemas::Tick{0}); }
};

}  // namespace

TEST_SUITE("commands and notices") {
  TEST_CASE("a command is sent: recorded with its household and handed to the device through the outbox") {
    Valve v;
    auto r = v.record();
    CHECK(r["state"] == "sent");
    CHECK(r["unit"] == "b1-101");
    CHECK(r["args"]["why"] == "gas");
    auto outbox = v.store->view().scan(Projector::kOutboxPrefix, "", 10);
    REQUIRE(outbox.size() == 1);
    auto entry = record_json(outbox[0].second);
    CHECK(entry["key"] == "valve-1");
    auto message = record_json(entry["value"].get<std::string>());
    CHECK(message["command"] == "close_valve");
    CHECK(message["command_id"] == "cmd-1");
    CHECK(message["expires_at"] == kT0 + 60000);
  }

  TEST_CASE("delivered, then acknowledged by the device: each step is in the record") {
    Valve v;
    v.fold(at(kT0 + 1100, "valve-1", schemas::CommandDelivered{"cmd-1"}));
    CHECK(v.record()["state"] == "delivered");
    auto changes = v.fold(at(kT0 + 1500, "valve-1", schemas::CommandAck{"cmd-1", schemas::CommandResult::Ok, "closed"}, 1)).changes;
    CHECK(v.record()["state"] == "acknowledged");
    CHECK(v.record()["detail"] == "closed");
    CHECK(v.record()["answered_at"] == kT0 + 1500);
    bool published = false;
    for (const auto& [key, _] : changes) published |= key == Projector::command_key("cmd-1");
    CHECK(published);
    // a tick after the expiry changes nothing any more
    v.fold(v.tick(kT0 + 120000));
    CHECK(v.record()["state"] == "acknowledged");
  }

  TEST_CASE("an answer from another device, or for an unknown command, changes nothing") {
    Valve v;
    v.fold(at(kT0, "valve-2", schemas::DeviceRegistered{schemas::DeviceKind::HomeSensor, "b1-102", "kitchen"}));
    v.fold(at(kT0 + 1500, "valve-2", schemas::CommandAck{"cmd-1", schemas::CommandResult::Ok, ""}, 1));
    v.fold(at(kT0 + 1600, "valve-1", schemas::CommandAck{"cmd-nope", schemas::CommandResult::Ok, ""}, 1));
    CHECK(v.record()["state"] == "sent");
    CHECK_FALSE(v.store->view().get(Projector::command_key("cmd-nope")));
  }

  TEST_CASE("a command not answered by its expiry expires on the log's clock, not before") {
    Valve v;
    v.fold(at(kT0 + 1100, "valve-1", schemas::CommandDelivered{"cmd-1"}));
    v.fold(v.tick(kT0 + 59999));
    CHECK(v.record()["state"] == "delivered");
    v.fold(v.tick(kT0 + 60000));
    CHECK(v.record()["state"] == "expired");
    CHECK(v.record()["detail"] == "delivered but not answered in time");
    v.fold(at(kT0 + 61000, "valve-1", schemas::CommandAck{"cmd-1", schemas::CommandResult::Ok, ""}, 1));
    CHECK(v.record()["state"] == "expired");  // too late: the record keeps what happened
  }

  TEST_CASE("a failed command says why") {
    Valve v;
    v.fold(at(kT0 + 1500, "valve-1", schemas::CommandAck{"cmd-1", schemas::CommandResult::Failed, "valve stuck"}, 1));
    CHECK(v.record()["state"] == "failed");
    CHECK(v.record()["detail"] == "valve stuck");
  }

  TEST_CASE("a notice is a record of its community and goes to the home panels") {
    Valve v;
    v.fold(at(kT0 + 2000, "operator",
              schemas::Notice{"n-1", "Water off", "Tuesday 9-12", schemas::NoticeSeverity::Warning, "", "tok_1", 0}));
    auto raw = v.store->view().get(Projector::notice_key("c1", "n-1"));
    REQUIRE(raw);
    CHECK(record_json(*raw)["severity"] == "warning");
    auto outbox = v.store->view().scan(Projector::kOutboxPrefix, "", 10);
    REQUIRE(outbox.size() == 2);
    CHECK(record_json(outbox[1].second)["key"] == Projector::kNoticesTarget);
  }
}
