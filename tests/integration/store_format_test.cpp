// Upgrading the hub over a store another version wrote (decision 0021): the hub rebuilds it from
// the real log up to where the old store stood, serves the same projections, keeps what the old
// store had not yet sent, and sends nothing again.
#include <doctest/doctest.h>

#include <filesystem>
#include <limits>

#include <fmt/format.h>

#include "common/kafka.h"
#include "processors/projector.h"
#include "processors/store.h"
#include "replay/replay.h"
#include "services.h"

using namespace courtyard;
using namespace std::chrono_literals;
using nlohmann::json;
using processors::Projector;

namespace {

// Messages on the alerts topic about `community`'s alerts (their keys are the alert ids).
std::size_t alerts_published(const KafkaConfig& kafka, const std::string& community, std::size_t* with_value = nullptr,
                             const std::string& value = "") {
  std::size_t n = 0, found = 0;
  REQUIRE(read_to_end(kafka, kafka.alerts_topic, [&](const rd_kafka_message_t& m) {
    const std::string key(static_cast<const char*>(m.key), m.key_len);
    if (!key.starts_with(community + ":")) return;
    ++n;
    if (std::string_view(static_cast<const char*>(m.payload), m.len) == value) ++found;
  }));
  if (with_value) *with_value = found;
  return n;
}

// Commands to `community`'s devices and staff (the alerts pushed to homes among them).
std::size_t commands_published(const KafkaConfig& kafka, const std::string& community) {
  std::size_t n = 0;
  const std::string mark = "\"community\":\"" + community + "\"";
  REQUIRE(read_to_end(kafka, kafka.commands_topic, [&](const rd_kafka_message_t& m) {
    if (std::string_view(static_cast<const char*>(m.payload), m.len).find(mark) != std::string_view::npos) ++n;
  }));
  return n;
}

std::unique_ptr<processors::Store> open_store(const std::string& dir, bool read_only) {
  processors::StoreConfig config;
  config.dir = dir;
  config.read_only = read_only;
  auto store = processors::Store::open(config);
  REQUIRE_MESSAGE(store, (store ? "" : store.error()));
  return std::move(*store);
}

}  // namespace

TEST_SUITE("integration: store format") {
  TEST_CASE("a hub finding its store in another version's format rebuilds it from the log: the same projections, "
            "its unsent alerts kept, nothing sent twice") {
    auto services = test::services();
    const std::string community = test::unique_name("sf");
    test::Stack stack({community});
    stack.start_ingest();
    stack.start_hub();
    auto sim = services.simulator({community});
    sim.devices = 30;
    sim.rate = 300;
    sim.events = 900;
    sim.anomalies = {"fever", "fall", "sos"};
    devices::Simulator simulator(sim);
    REQUIRE(simulator.provision());
    auto report = simulator.run(std::stop_token{});
    REQUIRE_MESSAGE(report, (report ? "" : report.error()));
    REQUIRE(test::eventually([&] { return test::projections_match(stack, *report); }, 60s));
    // The log stops moving (no more ticks), and the hub folds to its end and sends its outbox.
    CHECK(stack.ingest().terminate() == 0);
    REQUIRE(test::eventually([&] { auto h = stack.get("/healthz"); return h && (*h)["lag_total"] == 0; }, 30s));
    const auto kafka = services.kafka();
    REQUIRE(test::eventually([&] {
      auto alerts = stack.get("/api/v1/alerts?community=" + community);
      return alerts && !(*alerts)["items"].empty() && alerts_published(kafka, community) >= (*alerts)["items"].size();
    }, 30s));
    CHECK(stack.hub().terminate() == 0);
    // With the hub stopped, what is on the topics stays as it is; what it had not seen confirmed
    // is in its outbox (and will be sent once).
    const std::size_t sent = alerts_published(kafka, community), commanded = commands_published(kafka, community);
    REQUIRE(commanded > 0);

    // What the old store holds, and what it has not sent yet: one alert change whose publish a
    // crash interrupted. Then it is made a store of a version before stores were marked.
    const std::string state = stack.dir().str("var") + "/hub/state";
    replay::Digests before;
    std::size_t pending_alerts = 0, pending_commands = 0;
    processors::Offsets reached;
    const std::string unsent = json{{"id", community + ":smoke:unsent:1"}, {"community", community}, {"state", "active"}}.dump();
    {
      auto store = open_store(state, false);
      REQUIRE(Projector::store_format(store->view()) == Projector::kStoreFormat);
      before = replay::digest(store->view());
      reached = store->view().offsets();
      const std::uint64_t next = std::stoull(store->view().get(Projector::kOutboxNextKey).value_or("0"));
      for (const auto& [entry_key, raw] : store->view().scan(Projector::kOutboxPrefix, "", 100000)) {
        const auto entry = json::parse(raw);  // counted as the topics are: this community's only
        const std::string key = entry["key"], value = entry["value"];
        if (entry["topic"] == "alerts" && key.starts_with(community + ":")) ++pending_alerts;
        if (entry["topic"] == "commands" && value.find("\"community\":\"" + community + "\"") != std::string::npos) {
          ++pending_commands;
        }
      }
      const std::string entry = std::string(Projector::kOutboxPrefix) + fmt::format("{:020}", next);
      REQUIRE(store->write({{entry, json{{"topic", "alerts"}, {"key", community + ":smoke:unsent:1"}, {"value", unsent}}.dump()},
                            {Projector::kOutboxNextKey, std::to_string(next + 1)}},
                           {}, {Projector::kStoreFormatKey}));
      REQUIRE(Projector::store_format(store->view()) == 0u);
    }
    REQUIRE(before.at("devices").records >= 30);
    REQUIRE(before.at("alerts").records >= 1);

    // The hub starts, sees the format, rebuilds, and goes on.
    stack.start_hub();
    CHECK(stack.hub().wait_for_log("the store was of format 0: rebuilt as format", 120s));
    REQUIRE(test::eventually([&] { auto h = stack.get("/healthz"); return h && (*h)["lag_total"] == 0; }, 60s));
    std::size_t unsent_published = 0;
    REQUIRE(test::eventually([&] {
      alerts_published(kafka, community, &unsent_published, unsent);
      return unsent_published == 1;
    }, 30s));
    // Only what the old store had not sent: none of the alerts and commands the rebuild met along the way.
    REQUIRE(test::eventually([&] { return commands_published(kafka, community) == commanded + pending_commands; }, 30s));
    CHECK(alerts_published(kafka, community) == sent + pending_alerts + 1);
    auto devices = stack.devices();
    CHECK(devices.size() == 30);
    CHECK(stack.hub().terminate() == 0);
    {
      auto store = open_store(state, true);
      CHECK(Projector::store_format(store->view()) == Projector::kStoreFormat);
      CHECK(replay::digest(store->view()) == before);
      CHECK(store->view().offsets() == reached);
      CHECK(store->view().scan(Projector::kOutboxPrefix, "", 10).empty());  // sent, and confirmed
    }
    CHECK_FALSE(std::filesystem::exists(state + ".rebuilding"));
    CHECK_FALSE(std::filesystem::exists(state + ".previous"));

    // A crash between moving the old store aside and putting the new one in place: the next
    // start puts the old one back and drops the half-made one. (Here the one put back is already
    // of this format, so nothing is rebuilt again.)
    replay::RebuildConfig config;
    config.kafka = kafka;
    config.dir = state;
    std::filesystem::rename(state, state + ".previous");
    std::filesystem::create_directories(state + ".rebuilding/junk");
    auto again = replay::ensure_store_format(config);
    REQUIRE_MESSAGE(again, (again ? "" : again.error()));
    CHECK_FALSE(*again);
    CHECK(std::filesystem::exists(state + "/CURRENT"));
    CHECK_FALSE(std::filesystem::exists(state + ".rebuilding"));
    CHECK_FALSE(std::filesystem::exists(state + ".previous"));
    {
      auto store = open_store(state, true);
      CHECK(replay::digest(store->view()) == before);
    }

    // An as-of read never continues a checkpoint of another format: it starts from the log's start.
    const std::string checkpoints = stack.dir().str("checkpoints");
    std::filesystem::create_directories(checkpoints);
    {
      auto store = open_store(state, false);
      REQUIRE(store->write({}, {}, {Projector::kStoreFormatKey}));
      REQUIRE(store->checkpoint(checkpoints + "/1"));
    }
    config.dir = stack.dir().str("as-of");
    auto as_of = replay::build_as_of(config, checkpoints, std::numeric_limits<std::int64_t>::max() / 2);
    REQUIRE_MESSAGE(as_of, (as_of ? "" : as_of.error()));
    CHECK_FALSE(as_of->checkpoint_ms);
    config.dir = checkpoints + "/1";
    config.resume = true;
    auto resumed = replay::rebuild(config);
    REQUIRE_FALSE(resumed);
    CHECK(resumed.error().find("holds a store of format 0") != std::string::npos);
  }
}
