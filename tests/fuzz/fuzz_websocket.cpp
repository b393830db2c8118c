// Fuzzes WebSocket client messages through the live subscriptions (hub's SubscriptionHub), with
// commits of changes between them, for tokens of every role.
// Input: byte 0 picks the principal; then messages separated by '\n'; a message starting with '!'
// is a commit of a change instead.
// Properties: nothing throws or crashes; every frame sent back is JSON of a known type; a snapshot
// holds only records the principal may read and never more than the limits; the counters return
// to zero when the connection closes.
// Seeds: tests/fuzz/seeds/websocket.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "check.h"
#include "processors/store.h"
#include "subscriptions.h"

using namespace courtyard;
using fuzz::check;
using json = nlohmann::json;

namespace {

struct World {
  std::unique_ptr<processors::Store> store;
  std::uint64_t committed = 0;
  std::unique_ptr<hub::SubscriptionHub> hub;
  hub::SubscriptionLimits limits;

  World() {
    processors::StoreConfig sc;
    sc.dir = "/fuzz-ws";
    sc.in_memory = true;
    store = std::move(*processors::Store::open(sc));
    check(store->write({{"alerts/c1:smoke:s1:1", R"({"community":"c1","unit":"b1-101","state":"open"})"},
                        {"alerts/c1:smoke:s2:1", R"({"community":"c1","unit":"b1-102","state":"open"})"},
                        {"alerts/c2:gas:g1:1", R"({"community":"c2","unit":"b1-101","state":"open"})"},
                        {"devices/gate-1", R"({"community":"c1","unit":"","kind":"gate"})"},
                        {"homes/c1/b1-101", R"({"community":"c1","unit":"b1-101"})"},
                        {"notices/c1/n1", R"({"title":"water off"})"}},
                       {})
              .has_value(),
          "the store is seeded");
    limits.max_snapshot = 3;
    limits.max_pending_keys = 16;
    hub = std::make_unique<hub::SubscriptionHub>(*store, [this] { return committed; }, limits);
  }
};

const hub::Principal kPrincipals[] = {{"t1", hub::Role::Admin, "", "", ""},
                                      {"t2", hub::Role::Staff, "c1", "", ""},
                                      {"t3", hub::Role::Auditor, "", "", ""},
                                      {"t4", hub::Role::Resident, "c1", "b1-101", ""}};

void check_frame(const std::string& frame, const hub::Principal& who, const hub::SubscriptionLimits& limits) {
  auto j = json::parse(frame, nullptr, false);
  check(!j.is_discarded() && j.is_object(), "a frame is a JSON object", frame);
  const std::string type = j.value("type", "");
  check(type == "snapshot" || type == "error" || type == "unsubscribed" || type == "changes", "a frame has a known type", frame);
  if (type == "changes") {
    for (const auto& change : j["changes"]) {
      const std::string key = change["key"];
      check(hub::may_read(who, key, hub::scope_of(key, change["value"])), "changes go only to who may read them", key);
    }
  }
  if (type == "snapshot") {
    check(j["items"].size() <= limits.max_snapshot, "a snapshot keeps to its limit");
    for (const auto& item : j["items"]) {
      const std::string key = item["key"];
      check(hub::may_read(who, key, hub::scope_of(key, item["value"])), "a snapshot holds only readable records", key);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static World world;
  if (size == 0) return 0;
  const auto& who = kPrincipals[data[0] % 4];
  auto s = world.hub->open(who);
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  for (int n = 0; n < 64; ++n) {
    auto newline = rest.find('\n');
    auto message = rest.substr(0, newline);
    if (message.starts_with("!")) {  // a commit: the message is the changed key, the record fixed
      processors::KeyValues changes{{std::string(message.substr(1)), R"({"community":"c1","unit":"b1-102"})"}};
      world.hub->publish(++world.committed, changes);
    } else {
      auto outcome = world.hub->on_message(*s, message);
      for (const auto& frame : outcome.frames) check_frame(frame, who, world.limits);
      if (outcome.snapshot) {
        check_frame(world.hub->build_snapshot(*outcome.snapshot), who, world.limits);
        world.hub->snapshot_sent(*s);
      }
      if (s->has_pending()) check_frame(world.hub->take_frame(*s), who, world.limits);
    }
    if (newline == std::string_view::npos) break;
    rest.remove_prefix(newline + 1);
  }
  world.hub->close(*s);
  check(world.hub->stats().connections == 0 && world.hub->stats().subscriptions == 0, "a closed connection holds nothing");
  return 0;
}
