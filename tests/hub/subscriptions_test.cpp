#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "processors/devices_fold.h"
#include "subscriptions.h"
#include "temp_dir.h"

using namespace courtyard;
using json = nlohmann::json;

namespace {

// A store with a few records and a commit counter, as the runner would keep them.
struct Feed {
  test::TempDir dir;
  std::unique_ptr<processors::Store> store;
  std::uint64_t committed = 0;
  hub::SubscriptionLimits limits;
  std::unique_ptr<hub::SubscriptionHub> hub;

  explicit Feed(hub::SubscriptionLimits l = {}) : limits(l) {
    processors::StoreConfig config;
    config.dir = dir.str("state");
    store = std::move(*processors::Store::open(config));
    commit({{"alerts/c1:smoke:s1:1", R"({"community":"c1","unit":"b1-101","state":"open"})"},
            {"alerts/c1:smoke:s2:1", R"({"community":"c1","unit":"b1-102","state":"open"})"},
            {"devices/gate-1", R"({"community":"c1","unit":"","kind":"gate"})"}});
    hub = std::make_unique<hub::SubscriptionHub>(*store, [this] { return committed; }, limits);
  }
  // Writes the records, as one commit, and (once the hub exists) publishes them.
  void commit(const processors::KeyValues& changes) {
    REQUIRE(store->write(changes, {}));
    ++committed;
    if (hub) hub->publish(committed, changes);
  }
  static hub::Principal admin() { return {"t", hub::Role::Admin, "", "", ""}; }
  // One client message and its one reply, the snapshot built as the server's workers build it.
  json ask(hub::Subscriber& s, const std::string& message) {
    auto out = hub->on_message(s, message);
    if (out.snapshot) {
      REQUIRE(out.frames.empty());
      CHECK(s.snapshot_pending());
      auto frame = hub->build_snapshot(*out.snapshot);
      hub->snapshot_sent(s);
      return json::parse(frame);
    }
    REQUIRE(out.frames.size() == 1);
    return json::parse(out.frames[0]);
  }
};

}  // namespace

TEST_SUITE("hub subscriptions") {
  TEST_CASE("a subscription starts with a snapshot, then gets the changes of later commits in order") {
    Feed f;
    auto s = f.hub->open(Feed::admin());
    int woken = 0;
    s->wake = [&] { ++woken; };
    auto snapshot = f.ask(*s, R"({"op":"subscribe","id":"a","stream":"alerts"})");
    CHECK(snapshot["type"] == "snapshot");
    CHECK(snapshot["seq"] == 1);
    CHECK(snapshot["items"].size() == 2);
    f.commit({{"alerts/c1:smoke:s1:1", R"({"community":"c1","unit":"b1-101","state":"acknowledged"})"}});
    f.commit({{"devices/gate-1", R"({"community":"c1","kind":"gate","online":false})"},
              {"alerts/c1:gas:g1:1", R"({"community":"c1","unit":"b1-103","state":"open"})"}});
    CHECK(woken == 2);
    auto frame = json::parse(f.hub->take_frame(*s));
    CHECK(frame["seq"] == 3);
    REQUIRE(frame["changes"].size() == 2);  // devices/ is not subscribed
    CHECK(frame["changes"][0]["key"] == "alerts/c1:smoke:s1:1");
    CHECK(frame["changes"][0]["value"]["state"] == "acknowledged");
    CHECK(frame["changes"][0]["subs"] == json::array({"a"}));
    CHECK(frame["changes"][1]["key"] == "alerts/c1:gas:g1:1");
    CHECK_FALSE(s->has_pending());
  }

  TEST_CASE("a binary record (a device's) reaches subscribers as its JSON, in snapshots and in changes, scoped as JSON") {
    Feed f;
    processors::DeviceState device;
    device.registered = true;
    device.community = "c1";
    device.unit = "b1-101";
    device.kind = "smoke";
    device.battery_pct = 80.0;
    f.commit({{"devices/smoke-1", processors::to_record(device)}});
    auto admin = f.hub->open(Feed::admin());
    auto snapshot = f.ask(*admin, R"({"op":"subscribe","id":"d","key":"devices/smoke-1"})");
    REQUIRE(snapshot["items"].size() == 1);
    CHECK(snapshot["items"][0]["value"] == processors::to_json(device));
    // A resident of the unit sees the change; a resident of another unit does not.
    auto home = f.hub->open({"r", hub::Role::Resident, "c1", "b1-101", ""});
    auto neighbour = f.hub->open({"n", hub::Role::Resident, "c1", "b1-102", ""});
    CHECK(f.ask(*home, R"({"op":"subscribe","id":"h","key":"devices/smoke-1"})")["items"].size() == 1);
    CHECK(f.ask(*neighbour, R"({"op":"subscribe","id":"n","key":"devices/smoke-1"})")["items"].empty());
    device.battery_pct = 79.5;
    f.commit({{"devices/smoke-1", processors::to_record(device)}});
    for (auto* s : {admin.get(), home.get()}) {
      auto frame = json::parse(f.hub->take_frame(*s));
      REQUIRE(frame["changes"].size() == 1);
      CHECK(frame["changes"][0]["value"] == processors::to_json(device));
      CHECK(frame["changes"][0]["value"].dump() == processors::to_json(device).dump());
    }
    CHECK_FALSE(neighbour->has_pending());
  }

  TEST_CASE("a household's live alert names no staff member: the assignee's token stays with staff") {
    Feed f;
    const std::string assigned =
        R"({"community":"c1","unit":"b1-101","state":"open","assignee":"staff-wang","assignee_role":"grid_worker",)"
        R"("timeline":[{"at":1,"what":"assigned","by":"dispatch","note":"grid_worker staff-wang"}]})";
    f.commit({{"alerts/c1:fall:w1:1", assigned}});
    auto home = f.hub->open({"r", hub::Role::Resident, "c1", "b1-101", ""});
    auto staff = f.hub->open({"s", hub::Role::Staff, "c1", "", ""});
    auto snapshot = f.ask(*home, R"({"op":"subscribe","id":"a","key":"alerts/c1:fall:w1:1"})");
    REQUIRE(snapshot["items"].size() == 1);
    CHECK(snapshot["items"][0]["value"]["assignee"] == "");
    CHECK(snapshot["items"][0]["value"]["assignee_role"] == "grid_worker");
    f.ask(*staff, R"({"op":"subscribe","id":"a","key":"alerts/c1:fall:w1:1"})");
    f.commit({{"alerts/c1:fall:w1:1", assigned}});
    const std::string household = f.hub->take_frame(*home), office = f.hub->take_frame(*staff);
    CHECK(household.find("staff-wang") == std::string::npos);
    CHECK(json::parse(household)["changes"][0]["value"]["timeline"][0]["what"] == "assigned");
    CHECK(json::parse(office)["changes"][0]["value"]["assignee"] == "staff-wang");
  }

  TEST_CASE("changes a snapshot already holds are not sent again") {
    Feed f;
    auto s = f.hub->open(Feed::admin());
    f.ask(*s, R"({"op":"subscribe","id":"a","key":"devices/gate-1"})");
    f.hub->publish(1, {{"devices/gate-1", R"({"old":true})"}});  // commit 1, reaching the hub late
    CHECK_FALSE(s->has_pending());
    f.commit({{"devices/gate-1", R"({"community":"c1","new":true})"}});
    CHECK(s->has_pending());
  }

  TEST_CASE("commits of two fold lanes arriving out of order: every change is sent, and the frame's seq never goes back") {
    Feed f;
    auto s = f.hub->open(Feed::admin());
    f.ask(*s, R"({"op":"subscribe","id":"d","prefix":"devices/"})");  // at commit 1
    f.hub->publish(3, {{"devices/gate-2", R"({"community":"c2","lane":1})"}});  // lane 1's commit, numbered later
    f.hub->publish(2, {{"devices/gate-1", R"({"community":"c1","lane":0})"}});  // lane 0's, arriving after it
    auto frame = json::parse(f.hub->take_frame(*s));
    CHECK(frame["seq"] == 3);
    REQUIRE(frame["changes"].size() == 2);
    CHECK(frame["changes"][0]["key"] == "devices/gate-2");
    CHECK(frame["changes"][1]["key"] == "devices/gate-1");
  }

  TEST_CASE("a slow subscriber gets the latest value per key, coalesced") {
    Feed f;
    auto s = f.hub->open(Feed::admin());
    f.ask(*s, R"({"op":"subscribe","id":"d","prefix":"devices/"})");
    for (int i = 0; i < 100; ++i) f.commit({{"devices/gate-1", json{{"community", "c1"}, {"n", i}}.dump()}});
    auto frame = json::parse(f.hub->take_frame(*s));
    REQUIRE(frame["changes"].size() == 1);
    CHECK(frame["changes"][0]["value"]["n"] == 99);
    CHECK(f.hub->stats().coalesced == 99);
    CHECK(f.hub->stats().updates_sent == 1);
  }

  TEST_CASE("a subscriber too far behind is marked overflowed, woken to be closed, and its backlog dropped") {
    hub::SubscriptionLimits limits;
    limits.max_pending_keys = 3;
    Feed f(limits);
    auto s = f.hub->open(Feed::admin());
    bool woken = false;
    s->wake = [&] { woken = true; };
    f.ask(*s, R"({"op":"subscribe","id":"d","prefix":"devices/"})");
    for (int i = 0; i < 5; ++i) f.commit({{"devices/d" + std::to_string(i), "{}"}});
    CHECK(s->overflowed());
    CHECK(woken);
    CHECK_FALSE(s->has_pending());
    CHECK(f.hub->stats().disconnected_slow == 1);
    CHECK(f.hub->stats().dropped == 4);
  }

  TEST_CASE("a resident's subscription carries only their household's records, snapshot and changes") {
    Feed f;
    auto s = f.hub->open({"t", hub::Role::Resident, "c1", "b1-101", ""});
    auto snapshot = f.ask(*s, R"({"op":"subscribe","id":"a","stream":"alerts"})");
    REQUIRE(snapshot["items"].size() == 1);
    CHECK(snapshot["items"][0]["value"]["unit"] == "b1-101");
    f.commit({{"alerts/c1:smoke:s2:1", R"({"community":"c1","unit":"b1-102","state":"resolved"})"},
              {"alerts/c2:smoke:s9:1", R"({"community":"c2","unit":"b1-101","state":"open"})"}});
    CHECK_FALSE(s->has_pending());
    f.commit({{"alerts/c1:smoke:s1:1", R"({"community":"c1","unit":"b1-101","state":"resolved"})"}});
    CHECK(s->has_pending());
  }

  TEST_CASE("bad messages get an error frame and the connection goes on") {
    Feed f;
    auto s = f.hub->open(Feed::admin());
    CHECK(f.ask(*s, "not json")["error"] == "bad_request");
    CHECK(f.ask(*s, R"({"op":"subscribe","id":"a","prefix":"outbox/"})")["error"] == "bad_request");
    CHECK(f.ask(*s, R"({"op":"subscribe","id":"a"})")["error"] == "bad_request");
    CHECK(f.ask(*s, R"({"op":"unsubscribe","id":"zz"})")["error"] == "not_found");
    CHECK(f.ask(*s, R"({"op":"subscribe","id":"a","stream":"alerts"})")["type"] == "snapshot");
    CHECK(f.ask(*s, R"({"op":"subscribe","id":"a","stream":"alerts"})")["error"] == "conflict");
    CHECK(f.ask(*s, R"({"op":"unsubscribe","id":"a"})")["type"] == "unsubscribed");
  }

  TEST_CASE("attack: messages with fields of the wrong type, or not UTF-8, are refused and the hub goes on") {
    Feed f;
    auto s = f.hub->open(Feed::admin());
    // The review's probe: a numeric id threw inside the subscription code and stopped the API's loop.
    for (const char* hostile : {R"({"op":"subscribe","id":7,"stream":"alerts"})",
                                R"({"op":"subscribe","id":["a"],"stream":"alerts"})",
                                R"({"op":1,"id":"a","stream":"alerts"})",
                                R"({"op":"subscribe","id":"a","key":42})",
                                R"({"op":"subscribe","id":"a","prefix":null})",
                                R"({"op":"subscribe","id":"a","stream":{"x":1}})",
                                R"({"op":"unsubscribe","id":false})",
                                "[1,2,3]", "\"subscribe\"", "{\"op\":\"subscribe\",\"id\":\"\xff\xfe\"}"}) {
      CAPTURE(hostile);
      auto reply = f.ask(*s, hostile);
      CHECK(reply["type"] == "error");
      CHECK(reply["error"] == "bad_request");
    }
    CHECK(f.ask(*s, R"({"op":"subscribe","id":"a","stream":"alerts"})")["type"] == "snapshot");
  }

  TEST_CASE("a snapshot is bounded in records, bytes and records examined, and says it was cut") {
    hub::SubscriptionLimits limits;
    limits.max_snapshot_bytes = 100;
    Feed f(limits);
    auto s = f.hub->open(Feed::admin());
    auto snapshot = f.ask(*s, R"({"op":"subscribe","id":"a","stream":"alerts"})");
    CHECK(snapshot["items"].size() == 1);
    CHECK(snapshot["truncated"] == true);
    hub::SubscriptionLimits scanning;
    scanning.max_snapshot_scanned = 1;
    Feed g(scanning);
    auto t = g.hub->open(Feed::admin());
    snapshot = g.ask(*t, R"({"op":"subscribe","id":"a","stream":"alerts"})");
    CHECK(snapshot["items"].size() == 1);
    CHECK(snapshot["truncated"] == true);
  }

  TEST_CASE("changes of a subscription wait behind its snapshot") {
    Feed f;
    auto s = f.hub->open(Feed::admin());
    auto out = f.hub->on_message(*s, R"({"op":"subscribe","id":"a","stream":"alerts"})");
    REQUIRE(out.snapshot);
    f.commit({{"alerts/c1:smoke:s1:1", R"({"community":"c1","unit":"b1-101","state":"acknowledged"})"}});
    CHECK(s->has_pending());
    CHECK(s->snapshot_pending());  // the server sends nothing of s's changes while this holds
    f.hub->snapshot_sent(*s);
    CHECK_FALSE(s->snapshot_pending());
  }

  TEST_CASE("thousands of open, subscribe, close cycles leave nothing behind") {
    Feed f;
    for (int i = 0; i < 5000; ++i) {
      auto s = f.hub->open(Feed::admin());
      f.hub->on_message(*s, R"({"op":"subscribe","id":"a","stream":"alerts"})");
      f.hub->on_message(*s, json{{"op", "subscribe"}, {"id", "b"}, {"key", "devices/d" + std::to_string(i)}}.dump());
      if (i % 2) f.commit({{"alerts/c1:x:" + std::to_string(i), "{}"}});
      f.hub->close(*s);
    }
    CHECK(f.hub->stats().connections == 0);
    CHECK(f.hub->stats().subscriptions == 0);
    CHECK(f.hub->stats().connections_total == 5000);
    // Nothing routes anywhere any more: a commit wakes nobody and costs no lookups.
    auto s = f.hub->open(Feed::admin());
    f.commit({{"alerts/c1:x:last", "{}"}});
    CHECK_FALSE(s->has_pending());
  }
}
