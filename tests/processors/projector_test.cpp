#include <doctest/doctest.h>

#include <set>
#include <thread>

#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "events.h"
#include "stores.h"
#include "processors/projector.h"
#include "processors/record.h"
#include "processors/store.h"
#include "temp_dir.h"

using namespace courtyard;
using namespace courtyard::processors;

namespace {

std::uint64_t events_of(const Store& store, const std::string& device) {
  auto raw = store.view().get(Projector::device_key(device));
  return raw ? record_json(*raw)["events"].get<std::uint64_t>() : 0;
}

std::vector<LogMessage> messages(const std::string& device, std::uint64_t first_seq, std::uint64_t count,
                                 std::int64_t first_offset) {
  std::vector<LogMessage> out;
  for (std::uint64_t i = 0; i < count; ++i) {
    out.push_back(test::log_message(test::status_event(device, first_seq + i), first_offset + static_cast<std::int64_t>(i)));
  }
  return out;
}

// A small day of community `community` in `partition`: registrations, device events of every
// kind, ticks and an operator action, with one redelivered duplicate. Device ids start with `prefix`.
std::vector<LogMessage> small_day(const std::string& community, const std::string& prefix, std::int32_t partition) {
  std::vector<LogMessage> log;
  std::int64_t t = 1795950000000, offset = 0;
  auto add = [&](const std::string& device, schemas::Body body, std::uint64_t seq) {
    const bool tick = std::holds_alternative<schemas::Tick>(body);
    schemas::Event e;
    e.device = DeviceId(tick || device == "operator" ? device : prefix + device);
    e.community = CommunityId(tick ? "" : community);
    e.seq = seq;
    e.boot = 1;
    t += 7000;
    e.device_time_ms = e.ingest_time_ms = t;
    e.body = std::move(body);
    log.push_back(test::log_message(e, offset++));
  };
  using K = schemas::DeviceKind;
  add("gate-1", schemas::DeviceRegistered{K::Gate, "", "East gate"}, 0);
  add("wear-1", schemas::DeviceRegistered{K::Wearable, "b1-0101", "Building 1, flat 101"}, 0);
  add("meter-1", schemas::DeviceRegistered{K::Meter, "b1-0101", "Building 1, flat 101"}, 0);
  add("smoke-1", schemas::DeviceRegistered{K::HomeSensor, "b1-0101", "Building 1, flat 101"}, 0);
  for (std::uint64_t i = 1; i <= 40; ++i) {
    schemas::GatePass p;
    p.subject = "s" + std::to_string(i % 7);
    p.direction = i % 2 ? schemas::Direction::In : schemas::Direction::Out;
    p.temperature_c = i == 13 ? 38.1 : 36.6;
    add("gate-1", p, i);
    add("meter-1", schemas::MeterReading{schemas::MeterKind::Water, 10.0 + 0.1 * static_cast<double>(i), "m3"}, i);
    schemas::WearableVitals v;
    v.heart_rate_bpm = 60.0 + static_cast<double>(i % 9);
    v.moving = i % 5 == 0;
    add("wear-1", v, i);
    if (i == 20) add("wear-1", schemas::WearableAlarm{schemas::AlarmKind::Fall, false}, 100);
    if (i == 25) add("smoke-1", schemas::HomeSensor{schemas::SensorKind::Smoke, "alarm", {}}, 1);
    if (i == 30) {
      add("operator", schemas::OperatorAction{community + ":smoke:" + prefix + "smoke-1:1", schemas::AlertAction::Acknowledge,
                                              "guard", ""}, 0);
    }
    if (i % 4 == 0) add("courtyard-hub", schemas::Tick{0}, 0);
    if (i == 35) log.push_back(log[log.size() - 3]);  // a redelivered duplicate at a new offset
  }
  for (std::size_t i = 0; i < log.size(); ++i) {
    log[i].offset = static_cast<std::int64_t>(i);
    log[i].partition = partition;
  }
  return log;
}

}  // namespace

TEST_SUITE("projector") {
  TEST_CASE("a batch is folded and its offsets are stored with the state") {
    test::TempDir dir;
    auto store = test::open_store(dir);
    Projector projector(*store, {});
    auto result = projector.apply(messages("m-1", 1, 10, 0));
    REQUIRE(result);
    CHECK(result->applied == 10);
    CHECK(events_of(*store, "m-1") == 10);
    CHECK(store->view().offsets().at({"courtyard.events.v1", 0}) == 10);
  }

  TEST_CASE("a new store is marked with this build's format; one written before stores were marked reads as format 0") {
    test::TempDir dir;
    auto store = test::open_store(dir);
    CHECK_FALSE(Projector::store_format(store->view()));  // empty: of no format yet
    {
      Projector projector(*store, {});
      CHECK(Projector::store_format(store->view()) == Projector::kStoreFormat);
      REQUIRE(projector.apply(messages("m-1", 1, 3, 0)));
    }
    REQUIRE(store->write({}, {}, {Projector::kStoreFormatKey}));  // as a version before the marker left it
    CHECK(Projector::store_format(store->view()) == 0u);
    Projector again(*store, {});  // a projector marks only an empty store: what it holds is not its to claim
    CHECK(Projector::store_format(store->view()) == 0u);
    REQUIRE(store->write({{Projector::kStoreFormatKey, "two"}}, {}));  // attack: a marker no version wrote
    CHECK(Projector::store_format(store->view()) == 0u);
    REQUIRE(store->write({{Projector::kStoreFormatKey, "99"}}, {}));  // a newer version's
    CHECK(Projector::store_format(store->view()) == 99u);
  }

  TEST_CASE("messages below the stored offset are skipped: a redelivered batch counts nothing twice") {
    test::TempDir dir;
    auto store = test::open_store(dir);
    Projector projector(*store, {});
    auto batch = messages("m-1", 1, 10, 0);
    REQUIRE(projector.apply(batch));
    auto again = projector.apply(batch);
    REQUIRE(again);
    CHECK(again->replayed == 10);
    CHECK(again->applied == 0);
    CHECK(events_of(*store, "m-1") == 10);
  }

  TEST_CASE("a restarted projector resumes from the offsets in the store") {
    test::TempDir dir;
    {
      auto store = test::open_store(dir);
      Projector projector(*store, {});
      REQUIRE(projector.apply(messages("m-1", 1, 10, 0)));
    }
    auto store = test::open_store(dir);
    Projector projector(*store, {});
    CHECK(projector.offsets().at({"courtyard.events.v1", 0}) == 10);
    // The consumer re-reads from an older position (Kafka's committed offset lagged behind).
    auto result = projector.apply(messages("m-1", 6, 10, 5));
    REQUIRE(result);
    CHECK(result->replayed == 5);
    CHECK(result->applied == 5);
    CHECK(events_of(*store, "m-1") == 15);
  }

  TEST_CASE("the same event written twice to the log (an ingest restart) is counted once") {
    test::TempDir dir;
    auto store = test::open_store(dir);
    Projector projector(*store, {});
    REQUIRE(projector.apply(messages("m-1", 1, 5, 0)));
    auto result = projector.apply(messages("m-1", 3, 5, 5));  // seqs 3..7 at new offsets
    REQUIRE(result);
    CHECK(result->duplicates == 3);
    CHECK(result->applied == 2);
    CHECK(events_of(*store, "m-1") == 7);
  }

  TEST_CASE("attack: a message that does not decode is quarantined with its offset and reason, and folding goes on") {
    test::TempDir dir;
    auto store = test::open_store(dir);
    Projector projector(*store, {});
    std::vector<LogMessage> batch = messages("m-1", 1, 2, 0);
    batch.push_back({"courtyard.events.v1", 0, 2, "c1", "garbage", {}});
    batch.push_back(test::log_message(test::status_event("m-1", 3), 3));
    auto result = projector.apply(batch);
    REQUIRE(result);
    CHECK(result->corrupt == 1);
    CHECK(result->quarantined == 1);
    CHECK(events_of(*store, "m-1") == 3);
    CHECK(store->view().offsets().at({"courtyard.events.v1", 0}) == 4);
    auto record = store->view().get(Projector::quarantine_key("courtyard.events.v1", 0, 2));
    REQUIRE(record);
    auto q = record_json(*record);
    CHECK(q["offset"] == 2);
    CHECK(q["bytes"] == 7);
    CHECK(q["reason"].get<std::string>().starts_with("does not decode"));
    CHECK(Projector::is_projection_key(Projector::quarantine_key("courtyard.events.v1", 0, 2)));
  }

  TEST_CASE("an event handed over already decoded (replay's chain check) folds exactly as its bytes decoded here") {
    std::vector<LogMessage> plain;
    for (std::uint64_t i = 0; i < 40; ++i) {
      plain.push_back(test::log_message(test::status_event("m-" + std::to_string(i % 7), 1 + i / 7), static_cast<std::int64_t>(i)));
    }
    auto slash = test::status_event("m-1", 99);
    slash.community = CommunityId("c1/x");  // a decoded event is held to the same rules: not an id, quarantined
    plain.push_back(test::log_message(slash, 40));
    auto handed = plain;
    for (auto& m : handed) m.decoded = std::make_shared<const schemas::Event>(*schemas::decode(m.value));
    test::TempDir a, b;
    auto left = test::open_store(a), right = test::open_store(b);
    Projector decoding(*left, {}), given(*right, {});
    auto one = decoding.apply(plain), two = given.apply(handed);
    REQUIRE(one);
    REQUIRE(two);
    CHECK(two->quarantined == 1);
    CHECK(one->applied == two->applied);
    CHECK(left->view().scan("", "", 100000) == right->view().scan("", "", 100000));
  }

  TEST_CASE("attack: an event with a string that is not UTF-8, appended straight to the log, is quarantined") {
    test::TempDir dir;
    auto store = test::open_store(dir);
    Projector projector(*store, {});
    auto forged = test::status_event("m-1", 1);
    std::get<schemas::DeviceStatus>(forged.body).firmware = "v1\xff\xfe";
    auto result = projector.apply(std::vector{test::log_message(forged, 0), test::log_message(test::status_event("m-1", 2), 1)});
    REQUIRE(result);
    CHECK(result->quarantined == 1);
    CHECK(events_of(*store, "m-1") == 1);
    auto q = record_json(*store->view().get(Projector::quarantine_key("courtyard.events.v1", 0, 0)));
    CHECK(q["reason"] == "does not decode: body.firmware is not valid UTF-8");
  }

  TEST_CASE("attack: an event whose community or device is not an id (a slash: another key's prefix), appended straight to the log, is quarantined") {
    // "c1/x" would put its gate's passes under granted/c1/x/..., inside community c1's prefix,
    // and a device "gate-1/../x" its records under another device's.
    test::TempDir dir;
    auto store = test::open_store(dir);
    Projector projector(*store, {});
    auto pass_of = [](const std::string& community, const std::string& device) {
      auto e = test::status_event(device, 1);
      e.community = CommunityId(community);
      e.body = schemas::GatePass{};
      return e;
    };
    auto result = projector.apply(std::vector{test::log_message(pass_of("c1/x", "g"), 0),
                                              test::log_message(pass_of("c1", "gate-1/../x"), 1),
                                              test::log_message(pass_of("c1", "gate-1"), 2)});
    REQUIRE(result);
    CHECK(result->quarantined == 2);
    CHECK(result->applied == 1);
    CHECK(store->view().scan("granted/", "", 100).size() == 1);
    auto q = record_json(*store->view().get(Projector::quarantine_key("courtyard.events.v1", 0, 0)));
    CHECK(q["reason"] == "does not decode: community is not an id: 1..64 of [A-Za-z0-9_.-]");
    q = record_json(*store->view().get(Projector::quarantine_key("courtyard.events.v1", 0, 1)));
    CHECK(q["reason"] == "does not decode: device is not an id: 1..64 of [A-Za-z0-9_.-]");
  }

  TEST_CASE("attack: a dead letter whose headers are not UTF-8 is folded as printable text, wherever a batch ends") {
    // The review's probe: a FlatBuffers payload whose device_id was not UTF-8 left its raw bytes in
    // the dead letter's detail; the hub's fold threw when that letter ended a batch, and a rebuild
    // stopping right after it failed every time.
    std::vector<LogMessage> log{
        {"courtyard.deadletter.v1", 0, 0, "m-1", "\xff",
         {{"reason", "wrong_topic"}, {"detail", "device_id \"\xff\xfe\" in the buffer"}, {"device", "m-1"},
          {"source_topic", "courtyard/v1/c1/m-1/telemetry\xc0"}, {"seq", "12x"}, {"received_at", "\xff"}}},
        {"courtyard.deadletter.v1", 0, 1, "\xff", "", {{"reason", "\xff\xff"}, {"device", "\xff/../x"}}},
    };
    auto fold = [&](std::size_t batch) {
      auto dir = std::make_unique<test::TempDir>();
      auto store = test::open_store(*dir);
      Projector projector(*store, {});
      for (std::size_t i = 0; i < log.size(); i += batch) {
        auto result = projector.apply(std::span(log).subspan(i, std::min(batch, log.size() - i)));
        REQUIRE(result);
        CHECK(result->quarantined == 0);
      }
      return store->view().scan("", "", 1'000'000);
    };
    auto whole = fold(2);
    CHECK(fold(1) == whole);
    std::map<std::string, std::string> records(whole.begin(), whole.end());
    auto state = record_json(records.at(Projector::rejection_key("m-1")));
    CHECK(state["last"]["detail"] == "device_id \"\\xFF\\xFE\" in the buffer");
    CHECK(state["last"]["seq"].is_null());
    CHECK(records.contains(Projector::rejection_key("_unknown")));  // a device header that is no id
  }

  TEST_CASE("attack: a command whose args are not JSON cannot be folded: it alone is quarantined, the same in any batch") {
    std::vector<LogMessage> log;
    schemas::Event command;
    command.device = DeviceId("operator");
    command.community = CommunityId("c1");
    command.device_time_ms = command.ingest_time_ms = 1795950000000;
    command.body = schemas::Command{"cmd-1", DeviceId("m-1"), "reboot", "{not json", "tok", 0};
    for (std::uint64_t i = 1; i <= 3; ++i) log.push_back(test::log_message(test::status_event("m-1", i), 0));
    log.push_back(test::log_message(command, 0));
    for (std::uint64_t i = 4; i <= 6; ++i) log.push_back(test::log_message(test::status_event("m-1", i), 0));
    for (std::size_t i = 0; i < log.size(); ++i) log[i].offset = static_cast<std::int64_t>(i);
    auto fold = [&](std::size_t batch) {
      auto dir = std::make_unique<test::TempDir>();
      auto store = test::open_store(*dir);
      Projector projector(*store, {});
      std::uint64_t quarantined = 0;
      for (std::size_t i = 0; i < log.size(); i += batch) {
        auto result = projector.apply(std::span(log).subspan(i, std::min(batch, log.size() - i)));
        REQUIRE(result);
        quarantined += result->quarantined;
      }
      CHECK(quarantined == 1);
      CHECK(events_of(*store, "m-1") == 6);
      CHECK(store->view().offsets().at({"courtyard.events.v1", 0}) == 7);
      CHECK(store->view().get(Projector::quarantine_key("courtyard.events.v1", 0, 3)));
      return store->view().scan("", "", 1'000'000);
    };
    auto whole = fold(log.size());
    CHECK(fold(1) == whole);
    CHECK(fold(4) == whole);
  }

  TEST_CASE("partitions keep offsets of their own") {
    test::TempDir dir;
    auto store = test::open_store(dir);
    Projector projector(*store, {});
    std::vector<LogMessage> batch{test::log_message(test::status_event("a", 1), 7, 0),
                                  test::log_message(test::status_event("b", 1), 3, 5)};
    REQUIRE(projector.apply(batch));
    auto offsets = store->view().offsets();
    CHECK(offsets.at({"courtyard.events.v1", 0}) == 8);
    CHECK(offsets.at({"courtyard.events.v1", 5}) == 4);
  }

  TEST_CASE("a batch reaches before_write as one write per source partition, and a refusal applies nothing") {
    auto event_in = [](const std::string& community, const std::string& device, std::uint64_t seq) {
      auto e = test::status_event(device, seq);
      e.community = CommunityId(community);
      return e;
    };
    std::vector<LogMessage> batch;
    for (std::uint64_t i = 1; i <= 3; ++i) {
      batch.push_back(test::log_message(event_in("c1", "a", i), 10 + static_cast<std::int64_t>(i), 0));
      batch.push_back(test::log_message(event_in("c2", "b", i), 20 + static_cast<std::int64_t>(i), 1));
    }
    test::TempDir dir;
    auto store = test::open_store(dir);
    std::vector<PartitionWrite> seen;
    bool refuse = true;
    ProjectorConfig config;
    config.before_write = [&](std::vector<PartitionWrite>& writes) -> std::expected<void, std::string> {
      if (refuse) return std::unexpected("the changelog is away");
      seen = writes;
      return {};
    };
    Projector projector(*store, config);
    auto refused = projector.apply(batch);
    REQUIRE_FALSE(refused);
    CHECK(refused.error() == "the changelog is away");
    CHECK_FALSE(store->view().get(Projector::device_key("a")).has_value());
    CHECK(store->view().offsets().empty());

    refuse = false;
    REQUIRE(projector.apply(batch));
    REQUIRE(seen.size() == 2);
    CHECK(seen[0].partition == 0);
    CHECK(seen[0].next_offset == 14);
    CHECK(seen[1].partition == 1);
    CHECK(seen[1].next_offset == 24);
    // Each partition's write holds its own community's and devices' records, and only those.
    auto keys_of = [](const PartitionWrite& w) {
      std::set<std::string> keys;
      for (const auto& [key, _] : w.puts) keys.insert(key);
      return keys;
    };
    CHECK(keys_of(seen[0]).contains(Projector::device_key("a")));
    CHECK(keys_of(seen[0]).contains(Projector::counter_key(Projector::kEventStatsKey, 0)));
    CHECK_FALSE(keys_of(seen[0]).contains(Projector::device_key("b")));
    CHECK(keys_of(seen[1]).contains(Projector::device_key("b")));
    CHECK_FALSE(keys_of(seen[1]).contains(Projector::counter_key(Projector::kEventStatsKey, 0)));
    // What the store holds is exactly what the writes said, besides the offsets and its format.
    std::set<std::string> written;
    for (const auto& w : seen) written.merge(keys_of(w));
    std::set<std::string> stored;
    for (const auto& [key, _] : store->view().scan("", "", 1'000'000)) {
      if (!key.starts_with("offsets/") && key != Projector::kStoreFormatKey) stored.insert(key);
    }
    CHECK(stored == written);
    CHECK(record_json(*store->view().get(Projector::device_key("a")))["events"] == 3);
  }

  TEST_CASE("dead letters are counted per device and per reason") {
    test::TempDir dir;
    auto store = test::open_store(dir);
    Projector projector(*store, {});
    std::vector<LogMessage> batch;
    for (int i = 0; i < 3; ++i) {
      batch.push_back({"courtyard.deadletter.v1", 0, i, "m-1", "{bad",
                       {{"reason", i ? "malformed" : "out_of_range"}, {"detail", "d"}, {"device", "m-1"}, {"seq", "4"}}});
    }
    auto result = projector.apply(batch);
    REQUIRE(result);
    CHECK(result->dead_letters == 3);
    auto state = record_json(*store->view().get(Projector::rejection_key("m-1")));
    CHECK(state["total"] == 3);
    CHECK(state["by_reason"]["malformed"] == 2);
    auto totals = Projector::counts(store->view(), Projector::kRejectionStatsKey);
    CHECK(totals["out_of_range"] == 1);
    CHECK(totals["malformed"] == 2);
    CHECK(store->view().get(Projector::counter_key(Projector::kRejectionStatsKey, 0)).has_value());  // its partition's
  }

  TEST_CASE("a view is a snapshot: a later write does not change what it reads") {
    test::TempDir dir;
    auto store = test::open_store(dir);
    Projector projector(*store, {});
    REQUIRE(projector.apply(messages("m-1", 1, 1, 0)));
    auto view = store->view();
    REQUIRE(projector.apply(messages("m-1", 2, 1, 1)));
    CHECK(record_json(*view.get(Projector::device_key("m-1")))["events"] == 1);
    CHECK(view.offsets().at({"courtyard.events.v1", 0}) == 1);
  }
}

TEST_SUITE("projector: alerts") {
  TEST_CASE("ticks reach every community of their partition and fire its timers") {
    test::TempDir dir;
    auto store = test::open_store(dir);
    ProjectorConfig config;
    config.rules.defaults.heartbeat_ms["meter"] = 1000;
    Projector projector(*store, config);
    schemas::Event reg;
    reg.device = DeviceId("m-1");
    reg.community = CommunityId("c1");
    reg.device_time_ms = 1;
    reg.ingest_time_ms = 1795950000000;
    reg.body = schemas::DeviceRegistered{schemas::DeviceKind::Meter, "b1", "Building 1"};
    schemas::Event tick;
    tick.device = DeviceId("courtyard-hub");
    tick.ingest_time_ms = 1795950010000;
    tick.body = schemas::Tick{0};
    std::vector<LogMessage> batch{test::log_message(reg, 0), test::log_message(test::status_event("m-1", 1), 1),
                                  test::log_message(tick, 2)};
    auto result = projector.apply(batch);
    REQUIRE(result);
    CHECK(result->alerts_changed == 1);
    auto alert = store->view().get(Projector::alert_key("c1:offline:m-1:1"));
    REQUIRE(alert);
    CHECK(record_json(*alert)["location"] == "Building 1");
    // Outbox: the alert, then a command to the community's staff and one to each device of the household.
    auto outbox = store->view().scan(Projector::kOutboxPrefix, "", 10);
    REQUIRE(outbox.size() == 3);
    CHECK(record_json(outbox[0].second)["topic"] == "alerts");
    CHECK(record_json(outbox[1].second)["key"] == "_staff");
    auto command = record_json(outbox[2].second);
    CHECK(command["topic"] == "commands");
    CHECK(command["key"] == "m-1");
    CHECK(record_json(command["value"].get<std::string>())["body"]["rule"] == "offline");
  }
}

TEST_SUITE("projector: handhelds") {
  TEST_CASE("the staff member an alert is assigned to is paged on their handheld; a device of another kind with the id is not") {
    test::TempDir dir;
    auto store = test::open_store(dir);
    Projector projector(*store, {});
    std::vector<LogMessage> batch;
    std::int64_t offset = 0, at = 1795950000000;
    auto add = [&](const std::string& device, schemas::Body body) {
      schemas::Event e;
      e.device = DeviceId(device);
      e.community = CommunityId("c1");
      e.device_time_ms = e.ingest_time_ms = at += 1000;
      e.seq = std::holds_alternative<schemas::DeviceRegistered>(body) || device == "courtyard-hub" ? 0 : 1;
      e.body = std::move(body);
      batch.push_back(test::log_message(e, offset++));
    };
    add("smoke-1", schemas::DeviceRegistered{schemas::DeviceKind::HomeSensor, "b1-101", "Building 1, flat 101"});
    add("staff-wang", schemas::DeviceRegistered{schemas::DeviceKind::Handheld, "", "wang's pager"});
    add("staff-li", schemas::DeviceRegistered{schemas::DeviceKind::Gate, "", "a gate that happens to share li's token"});
    auto always = [](const std::string& staff) {
      std::vector<schemas::RosterShift> week;
      for (int day = 0; day < 7; ++day) week.push_back({day, 0, 0, staff});
      return week;
    };
    add("courtyard-hub", schemas::DutyRoster{"all", "grid_worker", always("staff-wang"), {}, "admin"});
    add("courtyard-hub", schemas::DutyRoster{"all", "duty_manager", always("staff-li"), {}, "admin"});
    add("smoke-1", schemas::HomeSensor{schemas::SensorKind::Smoke, "alarm", std::nullopt});
    REQUIRE(projector.apply(batch));
    std::vector<nlohmann::json> pages;
    for (const auto& [key, raw] : store->view().scan(Projector::kOutboxPrefix, "", 100)) {
      auto entry = record_json(raw);
      auto value = nlohmann::json::parse(entry["value"].get<std::string>());
      if (entry["topic"] == "commands" && value["command"] == "notification") pages.push_back(value);
      CHECK(entry["key"] != "staff-li");
    }
    REQUIRE(pages.size() == 1);
    CHECK(pages[0]["device"] == "staff-wang");
    CHECK(pages[0]["body"]["what"] == "assigned");
    CHECK(pages[0]["body"]["rule"] == "smoke");
    CHECK(pages[0]["body"]["unit"] == "b1-101");
    CHECK(pages[0]["body"]["id"] == "c1:smoke:smoke-1:1~1");
    CHECK(pages[0]["issued_at"] == at);
  }
}

TEST_SUITE("projector: memory and writes do not grow with history") {
  TEST_CASE("with caches bounded to 100 states each, 5,000 devices are folded and no more than that is held") {
    test::TempDir dir;
    auto store = test::open_store(dir);
    ProjectorConfig config;
    config.cache_entries = 100;
    Projector projector(*store, config);
    std::int64_t offset = 0;
    for (int round = 0; round < 2; ++round) {
      for (int d = 0; d < 5000; d += 50) {
        std::vector<LogMessage> batch;
        for (int i = d; i < d + 50; ++i) {
          batch.push_back(test::log_message(test::status_event("m-" + std::to_string(i), 1 + round), offset++));
        }
        REQUIRE(projector.apply(batch));
        CHECK(projector.cached_states() <= 13 * 100);
      }
    }
    CHECK(events_of(*store, "m-0") == 2);  // read back from the store after eviction, and counted on
    CHECK(events_of(*store, "m-4999") == 2);
  }

  TEST_CASE("a tick that changes nothing but the log's time writes the time alone, not the community's record") {
    test::TempDir dir;
    auto store = test::open_store(dir);
    Projector projector(*store, {});
    std::vector<LogMessage> log;
    std::int64_t t = 1795950000000;
    auto add = [&](const std::string& device, schemas::Body body) {
      schemas::Event e;
      e.device = DeviceId(device);
      e.community = CommunityId(device == "courtyard-hub" ? "" : "c1");
      e.device_time_ms = e.ingest_time_ms = (t += 1000);
      e.body = std::move(body);
      log.push_back(test::log_message(e, static_cast<std::int64_t>(log.size())));
    };
    add("gate-1", schemas::DeviceRegistered{schemas::DeviceKind::Gate, "", "East gate"});
    for (int i = 0; i < 200; ++i) {  // a community record of some size: 200 residents
      add("registry", schemas::RegistryEntry{schemas::RegistryKind::Person, "res-" + std::to_string(i),
                                             schemas::PersonRole::Resident, "b1-0101", 0, 0, 0, false});
    }
    add("gate-1", schemas::DeviceStatus{});
    REQUIRE(projector.apply(log));
    const auto record = store->view().get(Projector::alert_state_key("c1"));
    REQUIRE(record);
    // The residents are a record each (decision 0019), so the community's own record stays small.
    CHECK(store->view().scan("alertpart/c1/people/", "", 1000).size() == 200);
    CHECK(record->size() < 1000);
    log.clear();
    add("courtyard-hub", schemas::Tick{0});
    log.back().offset = 203;
    auto tick = projector.apply(log);
    REQUIRE(tick);
    CHECK(tick->bytes_written > 0);   // the community's clock moved
    CHECK(tick->bytes_written < 64);  // and nothing else was written
    CHECK(store->view().get(Projector::alert_state_key("c1")) == record);
    const auto clock = store->view().get("alertclock/c1");
    REQUIRE(clock);
    // A projector started afresh on that store knows the community's time from the clock alone:
    // a tick older than it moves nothing, so nothing is written.
    Projector restarted(*store, {});
    log.clear();
    add("courtyard-hub", schemas::Tick{0});
    log.back().offset = 204;
    log.back().value = [&] {
      schemas::Event older;
      older.device = DeviceId("courtyard-hub");
      older.ingest_time_ms = 1795950000000;  // before every event above
      older.body = schemas::Tick{0};
      return test::log_message(older, 204).value;
    }();
    auto again = restarted.apply(log);
    REQUIRE(again);
    CHECK(again->bytes_written == 0);
    CHECK(store->view().get("alertclock/c1") == clock);
  }

  TEST_CASE("passes granted are kept one record each: a batch adds its passes and deletes the expired, never the window") {
    test::TempDir dir;
    auto store = test::open_store(dir);
    Projector projector(*store, {});
    std::int64_t t = 1795950000000, offset = 0;
    auto pass_at_gate = [&](std::uint64_t seq) {
      schemas::Event e;
      e.device = DeviceId("gate-1");
      e.community = CommunityId("c1");
      e.boot = 1;
      e.seq = seq;
      e.event_id = seq;
      e.device_time_ms = e.ingest_time_ms = (t += 10'000);  // a pass every 10 s
      schemas::GatePass p;
      p.subject = "s" + std::to_string(seq);
      e.body = p;
      return test::log_message(e, offset++);
    };
    auto passes_stored = [&] { return store->view().scan("granted/c1/gate-1/", "", 1000); };
    schemas::Event registered = test::status_event("gate-1", 0);
    registered.body = schemas::DeviceRegistered{schemas::DeviceKind::Gate, "", "East gate"};
    REQUIRE(projector.apply(std::vector{test::log_message(registered, offset++)}));
    for (std::uint64_t seq = 1; seq <= 20; ++seq) REQUIRE(projector.apply(std::vector{pass_at_gate(seq)}));
    // The defaults keep passes 60 s (twice the plate window): the last 7, the newest last.
    auto stored = passes_stored();
    REQUIRE(stored.size() == 7);
    CHECK(record_json(stored.front().second)["event_id"] == 14);
    CHECK(record_json(stored.back().second)["event_id"] == 20);
    // One more pass adds its record and deletes the oldest; the community's record has none.
    auto one = projector.apply(std::vector{pass_at_gate(21)});
    REQUIRE(one);
    CHECK(passes_stored().size() == 7);
    CHECK(record_json(passes_stored().front().second)["event_id"] == 15);
    const auto record = store->view().get(Projector::alert_state_key("c1"));
    REQUIRE(record);
    CHECK(record->find("\"granted\"") == std::string::npos);
    // A projector started afresh reads the window back and carries on from it.
    Projector restarted(*store, {});
    REQUIRE(restarted.apply(std::vector{pass_at_gate(22)}));
    stored = passes_stored();
    REQUIRE(stored.size() == 7);
    CHECK(record_json(stored.front().second)["event_id"] == 16);
    CHECK(record_json(stored.back().second)["seq"] == 22);
  }

  TEST_CASE("a community's record names its open episodes by id; a restarted projector reads them from their alert records") {
    test::TempDir dir;
    auto store = test::open_store(dir);
    std::int64_t t = 1795950000000, offset = 0;
    auto message = [&](const std::string& device, schemas::Body body, std::uint64_t seq) {
      schemas::Event e;
      e.device = DeviceId(device);
      e.community = CommunityId("c1");
      e.boot = 1;
      e.seq = seq;
      e.device_time_ms = e.ingest_time_ms = (t += 1000);
      e.body = std::move(body);
      return std::vector{test::log_message(e, offset++)};
    };
    {
      Projector projector(*store, {});
      REQUIRE(projector.apply(message("smoke-1", schemas::DeviceRegistered{schemas::DeviceKind::HomeSensor, "b1-0101", "flat 101"}, 0)));
      REQUIRE(projector.apply(message("smoke-1", schemas::HomeSensor{schemas::SensorKind::Smoke, "alarm", {}}, 1)));
      REQUIRE(projector.apply(message("smoke-1", schemas::HomeSensor{schemas::SensorKind::Smoke, "alarm", {}}, 2)));
    }
    const auto record = record_json(*store->view().get(Projector::alert_state_key("c1")));
    CHECK(record["active"] == nlohmann::json{{"smoke|smoke-1", "c1:smoke:smoke-1:1"}});
    Projector restarted(*store, {});
    REQUIRE(restarted.apply(message("operator", schemas::OperatorAction{"c1:smoke:smoke-1:1", schemas::AlertAction::Acknowledge, "guard", "on my way"}, 0)));
    const auto alert = record_json(*store->view().get(Projector::alert_key("c1:smoke:smoke-1:1")));
    CHECK(alert["state"] == "acknowledged");
    CHECK(alert["occurrences"] == 2);  // what the restarted projector read back, carried on
    REQUIRE(alert["timeline"].size() == 2);
    CHECK(alert["timeline"][0]["what"] == "opened");
    CHECK(alert["timeline"][1]["what"] == "acknowledged");
  }
}

TEST_SUITE("projector: replay") {
  TEST_CASE("the same log folded in one batch or in batches of any size gives the same store, byte for byte") {
    const auto log = small_day("c1", "", 0);

    auto fold = [&](std::size_t batch, std::size_t cache_entries = 20'000) {
      auto dir = std::make_unique<test::TempDir>();
      auto store = test::open_store(*dir);
      ProjectorConfig config;
      config.rules.defaults.fall_escalate_ms = 20'000;
      config.cache_entries = cache_entries;
      Projector projector(*store, config);
      for (std::size_t i = 0; i < log.size(); i += batch) {
        REQUIRE(projector.apply(std::span(log).subspan(i, std::min(batch, log.size() - i))));
      }
      KeyValues all = store->view().scan("", "", 1'000'000);
      return all;
    };
    auto one = fold(log.size());
    CHECK(one.size() > 10);
    CHECK(fold(1) == one);
    CHECK(fold(7) == one);
    // Caches that forget almost everything between batches change nothing either.
    CHECK(fold(1, 0) == one);
    CHECK(fold(7, 1) == one);
    bool escalated_fall = false;
    for (const auto& [k, v] : one) {
      if (k.starts_with("alerts/c1:fall")) escalated_fall = record_json(v)["severity"] == "critical";
    }
    CHECK(escalated_fall);
  }

  TEST_CASE("two fold lanes, each folding its own partitions on a thread of its own, write the store one projector writes, key for key") {
    auto c1 = small_day("c1", "", 0), c2 = small_day("c2", "two-", 1);
    ProjectorConfig config;
    config.rules.defaults.fall_escalate_ms = 20'000;

    test::TempDir one_dir, two_dir;
    auto one_store = test::open_store(one_dir);
    {
      Projector projector(*one_store, config);
      std::vector<LogMessage> interleaved;
      for (std::size_t i = 0; i < std::max(c1.size(), c2.size()); ++i) {
        if (i < c1.size()) interleaved.push_back(c1[i]);
        if (i < c2.size()) interleaved.push_back(c2[i]);
      }
      REQUIRE(projector.apply(interleaved));
    }
    auto two_store = test::open_store(two_dir);
    {
      auto lane = [&](const std::vector<LogMessage>& log) {
        Projector projector(*two_store, config);
        for (std::size_t i = 0; i < log.size(); i += 7) {
          if (!projector.apply(std::span(log).subspan(i, std::min<std::size_t>(7, log.size() - i)))) return false;
        }
        return true;
      };
      bool first = false, second = false;
      std::thread a([&] { first = lane(c1); }), b([&] { second = lane(c2); });
      a.join();
      b.join();
      REQUIRE(first);
      REQUIRE(second);
    }
    // Every key belongs to one source partition (decision 0024): its community's state and
    // outbox, its counters, its offset. So however the partitions are split between writers, the
    // store is the same, outbox numbers and counters included.
    const auto one = one_store->view().scan("", "", 1'000'000), two = two_store->view().scan("", "", 1'000'000);
    std::size_t projections = 0, outbox = 0;
    for (const auto& [key, _] : one) {
      projections += Projector::is_projection_key(key);
      outbox += key.starts_with(Projector::kOutboxPrefix);
    }
    CHECK(projections > 20);
    CHECK(outbox > 0);
    CHECK(two == one);
    CHECK(two_store->view().get(Projector::counter_key(Projector::kEventStatsKey, 1)).has_value());
    CHECK(Projector::counts(two_store->view(), Projector::kEventStatsKey) ==
          Projector::counts(one_store->view(), Projector::kEventStatsKey));
  }
}

TEST_SUITE("projector: registry") {
  TEST_CASE("a registry change is projected and sent to the community's gates as an access update") {
    test::TempDir dir;
    auto store = test::open_store(dir);
    Projector projector(*store, {});
    schemas::Event reg;
    reg.device = DeviceId("gate-1");
    reg.community = CommunityId("c1");
    reg.device_time_ms = reg.ingest_time_ms = 1795950000000;
    reg.body = schemas::DeviceRegistered{schemas::DeviceKind::Gate, "", "North gate"};
    schemas::Event meter = reg;
    meter.device = DeviceId("meter-1");
    meter.body = schemas::DeviceRegistered{schemas::DeviceKind::Meter, "b1", ""};
    schemas::Event person = reg;
    person.device = DeviceId("registry");
    person.body = schemas::RegistryEntry{schemas::RegistryKind::Person, "tok-1", schemas::PersonRole::Staff, "", 0, 0, 0, false};
    auto result = projector.apply(std::vector<LogMessage>{test::log_message(reg, 0), test::log_message(meter, 1),
                                                          test::log_message(person, 2)});
    REQUIRE(result);
    CHECK(result->outbox_entries == 1);  // the gate only: meters do not admit people
    auto entry = store->view().get(Projector::registry_key("c1", "person", "tok-1"));
    REQUIRE(entry);
    CHECK(record_json(*entry)["role"] == "staff");
    auto command = record_json(store->view().scan(Projector::kOutboxPrefix, "", 10).at(0).second);
    CHECK(command["key"] == "gate-1");
    CHECK(record_json(command["value"].get<std::string>())["command"] == "access_update");
  }

  TEST_CASE("a store written before the maps were records of their own is read as it is and rewritten piece by piece") {
    test::TempDir dir;
    auto store = test::open_store(dir);
    // The community's record and its presence as a hub before decision 0019 wrote them: whole.
    nlohmann::json old_state{{"community", "c1"}, {"now", 1795950000000}, {"active", nlohmann::json::object()},
                             {"closed", nlohmann::json::object()},
                             {"people", {{"res-1", {{"role", "resident"}, {"unit", "b1-0101"}}}}},
                             {"denials", {{"gate-1", {1795949990000}}}}, {"unit_activity", {{"b1-0101", 1795949990000}}}};
    nlohmann::json old_presence{{"people_inside", {"subj-old"}}, {"vehicles_inside", {{"plate-old", 1795949990000}}},
                                {"people_entries", 1}, {"vehicle_entries", 1}};
    REQUIRE(store->write({{Projector::alert_state_key("c1"), old_state.dump()},
                          {Projector::community_key("c1", "presence"), old_presence.dump()}},
                         {}));
    Projector projector(*store, {});
    schemas::Event reg;
    reg.device = DeviceId("gate-1");
    reg.community = CommunityId("c1");
    reg.device_time_ms = reg.ingest_time_ms = 1795950001000;
    reg.body = schemas::DeviceRegistered{schemas::DeviceKind::Gate, "", "North gate"};
    auto pass = test::status_event("gate-1", 1);
    pass.ingest_time_ms = 1795950002000;
    pass.body = schemas::GatePass{schemas::Credential::Face, "res-1", schemas::Direction::In, schemas::Decision::Granted};
    REQUIRE(projector.apply(std::vector{test::log_message(reg, 0), test::log_message(pass, 1)}));
    auto view = store->view();
    CHECK(view.get("alertpart/c1/people/res-1"));
    CHECK(view.get("alertpart/c1/denials/gate-1"));
    const auto record = record_json(*view.get(Projector::alert_state_key("c1")));
    CHECK_FALSE(record.contains("people"));
    CHECK(record.value("people_registered", false));
    const std::string presence_key = Projector::community_key("c1", "presence");
    auto presence = record_json(Projector::served_record(view, presence_key, *view.get(presence_key)));
    CHECK(presence["people_inside"] == nlohmann::json::array({"res-1", "subj-old"}));
    CHECK(presence["vehicles_inside"] == nlohmann::json{{"plate-old", 1795949990000}});
    auto gate = record_json(*view.get(Projector::gate_key("gate-1")));
    CHECK(gate["by_subject_kind"]["resident"] == 1);  // the registry of the old record is the one folded
  }

  TEST_CASE("who is inside is a record per person, served with the presence; the occupancy record dashboards watch carries counts only") {
    test::TempDir dir;
    auto store = test::open_store(dir);
    Projector projector(*store, {});
    schemas::Event reg;
    reg.device = DeviceId("gate-1");
    reg.community = CommunityId("c1");
    reg.device_time_ms = 1;
    reg.ingest_time_ms = 1795950000000;
    reg.body = schemas::DeviceRegistered{schemas::DeviceKind::Gate, "", "North gate"};
    auto pass = test::status_event("gate-1", 1);
    pass.body = schemas::GatePass{schemas::Credential::Face, "subj-1", schemas::Direction::In, schemas::Decision::Granted};
    auto result = projector.apply(std::vector{test::log_message(reg, 0), test::log_message(pass, 1)});
    REQUIRE(result);
    auto occupancy = record_json(*store->view().get(Projector::community_key("c1", "occupancy")));
    const std::string presence_key = Projector::community_key("c1", "presence");
    auto served = [&] {
      auto view = store->view();
      return record_json(Projector::served_record(view, presence_key, *view.get(presence_key)));
    };
    auto presence = served();
    CHECK(occupancy["people_now"] == 1);
    CHECK_FALSE(occupancy.contains("people_inside"));
    CHECK(presence["people_inside"] == nlohmann::json::array({"subj-1"}));
    std::set<std::string> changed;
    for (const auto& [key, _] : result->changes) changed.insert(key);
    CHECK(changed.contains("communities/c1/occupancy"));
    CHECK(changed.contains("communities/c1/presence"));
    CHECK(store->view().get("inside/c1/people/subj-1"));
    CHECK_FALSE(record_json(*store->view().get(presence_key)).contains("people_inside"));  // stored without
    {  // Served, it is byte for byte what a hub before decision 0019 stored: digests published then still verify.
      auto view = store->view();
      const auto text = Projector::served_record(view, presence_key, *view.get(presence_key));
      CHECK(text == to_json(occupancy_from_json(record_json(text))).dump());
    }

    SUBCASE("the one who leaves is deleted, and a restarted projector knows who is still inside") {
      auto second = test::status_event("gate-1", 2);
      second.body = schemas::GatePass{schemas::Credential::Face, "subj-2", schemas::Direction::In, schemas::Decision::Granted};
      auto out = test::status_event("gate-1", 3);
      out.body = schemas::GatePass{schemas::Credential::Face, "subj-1", schemas::Direction::Out, schemas::Decision::Granted};
      REQUIRE(projector.apply(std::vector{test::log_message(second, 2), test::log_message(out, 3)}));
      CHECK_FALSE(store->view().get("inside/c1/people/subj-1"));
      CHECK(served()["people_inside"] == nlohmann::json::array({"subj-2"}));
      Projector restarted(*store, {});
      auto third = test::status_event("gate-1", 4);
      third.body = schemas::GatePass{schemas::Credential::Face, "subj-3", schemas::Direction::In, schemas::Decision::Granted};
      REQUIRE(restarted.apply(std::vector{test::log_message(third, 4)}));
      CHECK(served()["people_inside"] == nlohmann::json::array({"subj-2", "subj-3"}));
      CHECK(served()["people_now"] == 2);
    }
  }
}
