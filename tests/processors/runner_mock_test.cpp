// The runner against librdkafka's in-process mock cluster: offsets come from the store across
// restarts. (The real broker is exercised by tests/integration.)
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <thread>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <nlohmann/json.hpp>

#include "common/handles.h"
#include "events.h"
#include "stores.h"
#include "processors/record.h"
#include "mock_kafka.h"
#include "processors/changelog.h"
#include "processors/runner.h"
#include "temp_dir.h"

using namespace courtyard;
using namespace courtyard::processors;

namespace {

// The mock cluster, and ways to put messages in it.
struct MockCluster : test::MockKafka {
  using MockKafka::MockKafka;
  void produce(const std::vector<schemas::Event>& events) {
    auto p = make_producer(config(), {{"acks", "all"}});
    REQUIRE(p);
    for (const auto& e : events) {
      auto value = schemas::encode(e);
      std::string key = e.community.str();
      REQUIRE(rd_kafka_producev(p->get(), RD_KAFKA_V_TOPIC("courtyard.events.v1"), RD_KAFKA_V_KEY(key.data(), key.size()),
                                RD_KAFKA_V_VALUE(value.data(), value.size()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    REQUIRE(rd_kafka_flush(p->get(), 10000) == RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  // One record, as given, in a topic's partition.
  void produce_to(const std::string& topic, std::int32_t partition, const std::string& key, const std::string& value) {
    auto p = make_producer(config(), {{"acks", "all"}});
    REQUIRE(p);
    REQUIRE(rd_kafka_producev(p->get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
                              RD_KAFKA_V_KEY(key.data(), key.size()), RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR_NO_ERROR);
    REQUIRE(rd_kafka_flush(p->get(), 10000) == RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  // Bytes that are no Courtyard event, in the given partition of the events topic.
  void produce_garbage(std::int32_t partition) {
    auto p = make_producer(config(), {{"acks", "all"}});
    REQUIRE(p);
    std::string key = "c1", value = "\xff\x00 not a flatbuffer";
    REQUIRE(rd_kafka_producev(p->get(), RD_KAFKA_V_TOPIC("courtyard.events.v1"), RD_KAFKA_V_PARTITION(partition),
                              RD_KAFKA_V_KEY(key.data(), key.size()), RD_KAFKA_V_VALUE(value.data(), value.size()),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR_NO_ERROR);
    REQUIRE(rd_kafka_flush(p->get(), 10000) == RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  // A dead letter as ingest writes one for a message whose topic it could not parse: no device,
  // in the given partition.
  void produce_unparsable_dead_letter(std::int32_t partition) {
    auto p = make_producer(config(), {{"acks", "all"}});
    REQUIRE(p);
    std::string key = "not/a/courtyard/topic", value = "{}";
    rd_kafka_headers_t* headers = rd_kafka_headers_new(2);
    rd_kafka_header_add(headers, "reason", -1, "wrong_topic", -1);
    rd_kafka_header_add(headers, "detail", -1, "not a courtyard topic", -1);
    REQUIRE(rd_kafka_producev(p->get(), RD_KAFKA_V_TOPIC("courtyard.deadletter.v1"), RD_KAFKA_V_PARTITION(partition),
                              RD_KAFKA_V_KEY(key.data(), key.size()), RD_KAFKA_V_VALUE(value.data(), value.size()),
                              RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR_NO_ERROR);
    REQUIRE(rd_kafka_flush(p->get(), 10000) == RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  // The first record of a topic's partition 0, waiting up to `timeout`.
  std::optional<std::string> first_record(const std::string& topic, std::chrono::milliseconds timeout) {
    auto c = make_consumer(config(), {{"group.id", "reader"}, {"enable.partition.eof", "false"}});
    REQUIRE(c);
    KafkaPartitionsPtr parts(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(parts.get(), topic.c_str(), 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    REQUIRE(rd_kafka_assign(c->get(), parts.get()) == RD_KAFKA_RESP_ERR_NO_ERROR);
    for (auto deadline = std::chrono::steady_clock::now() + timeout; std::chrono::steady_clock::now() < deadline;) {
      KafkaMessagePtr m(rd_kafka_consumer_poll(c->get(), 100));
      if (m && !m->err) return std::string(static_cast<const char*>(m->payload), m->len);
    }
    return std::nullopt;
  }
};

RunnerConfig runner_config(const MockCluster& kafka, const std::string& group) {
  RunnerConfig config;
  config.kafka = kafka.config();
  config.group_id = group;
  config.poll_timeout = std::chrono::milliseconds(20);
  return config;
}

// Runs a runner until it has applied `expected` events (or 30 s pass), then stops it.
RunnerStats run_until(Runner& runner, std::uint64_t expected) {
  std::jthread thread([&](std::stop_token stop) { runner.run(stop); });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (runner.stats().applied + runner.stats().duplicates < expected && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  thread.request_stop();
  thread.join();
  return runner.stats();
}

std::vector<schemas::Event> statuses(const std::string& device, std::uint64_t first, std::uint64_t count) {
  std::vector<schemas::Event> out;
  for (std::uint64_t i = 0; i < count; ++i) out.push_back(test::status_event(device, first + i));
  return out;
}

// Six communities' devices, seqs first..first+count-1 each (the Kafka key is the community, so
// they spread over the partitions).
std::vector<schemas::Event> fleet(std::uint64_t first, std::uint64_t count) {
  std::vector<schemas::Event> out;
  for (int c = 1; c <= 6; ++c) {
    for (std::uint64_t i = first; i < first + count; ++i) {
      auto e = test::status_event("d-" + std::to_string(c), i);
      e.community = CommunityId("c" + std::to_string(c));
      out.push_back(e);
    }
  }
  return out;
}

// Polls `condition` every 50 ms for up to 40 s (groups on the mock cluster settle in seconds).
template <class Condition>
bool eventually(Condition condition) {
  for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(40); std::chrono::steady_clock::now() < deadline;
       std::this_thread::sleep_for(std::chrono::milliseconds(50))) {
    if (condition()) return true;
  }
  return false;
}

}  // namespace

TEST_SUITE("runner (librdkafka mock cluster)") {
  TEST_CASE("a restarted runner resumes from the store's offsets and counts nothing twice") {
    MockCluster kafka;
    test::TempDir dir;
    auto store = test::open_store(dir);
    RunnerConfig config = runner_config(kafka, "runner-test");

    kafka.produce(statuses("d-1", 1, 200));
    {
      Runner runner(config, *store);
      CHECK(run_until(runner, 200).applied == 200);
    }
    kafka.produce(statuses("d-1", 201, 50));
    kafka.produce(statuses("d-1", 230, 10));  // an ingest restart re-sent some
    // A new group has no committed offsets at all: where to start can only come from the store.
    config.group_id = "runner-test-restarted";
    Runner runner(config, *store);
    auto stats = run_until(runner, 60);
    CHECK(stats.applied == 50);
    CHECK(stats.duplicates == 10);
    CHECK(stats.replayed == 0);  // nothing before the stored offsets was applied again
    auto state = processors::record_json(*store->view().get(Projector::device_key("d-1")));
    CHECK(state["events"] == 250);
    CHECK(state["duplicates"] == 10);
  }

  TEST_CASE("two hubs share the partitions through the changelog: each event is folded once, each store holds every "
            "partition, and a hub that leaves has its partitions taken over") {
    MockCluster kafka;
    test::TempDir a_dir, b_dir;
    auto a_store = test::open_store(a_dir), b_store = test::open_store(b_dir);
    auto config = [&](const std::string& instance) {
      auto c = runner_config(kafka, "shared");
      c.instance_id = instance;
      c.changelog = true;
      c.fold_lanes = 2;
      c.session_timeout = std::chrono::milliseconds(6000);
      return c;
    };
    // Every device's record in `store` says `events`.
    auto holds = [](const Store& store, std::uint64_t events) {
      for (int c = 1; c <= 6; ++c) {
        auto raw = store.view().get(Projector::device_key("d-" + std::to_string(c)));
        if (!raw || processors::record_json(*raw)["events"] != events) return false;
      }
      return true;
    };

    kafka.produce(fleet(1, 20));
    Runner a(config("hub-a"), *a_store);
    std::jthread a_thread([&](std::stop_token stop) { a.run(stop); });
    {
      Runner b(config("hub-b"), *b_store);
      std::jthread b_thread([&](std::stop_token stop) { b.run(stop); });
      REQUIRE(eventually([&] { return holds(*a_store, 20) && holds(*b_store, 20); }));
      kafka.produce(fleet(21, 10));
      REQUIRE(eventually([&] { return holds(*a_store, 30) && holds(*b_store, 30); }));
      // Each event was folded once, by one of the two.
      CHECK(a.stats().applied + b.stats().applied == 180);
      CHECK(a.stats().applied > 0);
      CHECK(b.stats().applied > 0);
      CHECK(Projector::counts(a_store->view(), Projector::kEventStatsKey) ==
            Projector::counts(b_store->view(), Projector::kEventStatsKey));
    }
    // b has stopped: once the group gives up on it, a restores b's partitions (it holds them
    // already) and folds what comes next, from where b's changelog says b stopped.
    const auto a_before = a.stats().applied;
    kafka.produce(fleet(31, 10));
    REQUIRE(eventually([&] { return holds(*a_store, 40); }));
    CHECK(a.stats().applied - a_before == 60);
    std::uint64_t counted = 0;
    for (const auto& [type, n] : Projector::counts(a_store->view(), Projector::kEventStatsKey)) counted += n;
    CHECK(counted == 240);  // every partition's counter, whoever folded it
  }

  TEST_CASE("roles: an api hub folds nothing and holds every partition from the changelog; a hub without standbys "
            "holds only what it folds, and restores a partition from the changelog when it is given it") {
    MockCluster kafka;
    test::TempDir a_dir, b_dir, api_dir;
    auto a_store = test::open_store(a_dir), b_store = test::open_store(b_dir), api_store = test::open_store(api_dir);
    auto config = [&](const std::string& instance, bool fold) {
      auto c = runner_config(kafka, "roles");
      c.instance_id = instance;
      c.changelog = true;
      c.fold = fold;
      c.standby = false;  // an api hub holds every partition all the same
      c.session_timeout = std::chrono::milliseconds(6000);
      return c;
    };
    auto events_of = [](const Store& store, int c) -> std::optional<std::uint64_t> {
      auto raw = store.view().get(Projector::device_key("d-" + std::to_string(c)));
      if (!raw) return std::nullopt;
      return processors::record_json(*raw)["events"].get<std::uint64_t>();
    };
    auto holds = [&](const Store& store, std::uint64_t events) {
      for (int c = 1; c <= 6; ++c) {
        if (events_of(store, c) != events) return false;
      }
      return true;
    };
    auto partition_of = [](int c) {
      const std::string key = "c" + std::to_string(c);  // the community: the producer's key
      return rd_kafka_msg_partitioner_consistent_random(nullptr, key.data(), key.size(), 3, nullptr, nullptr);
    };

    kafka.produce(fleet(1, 20));
    Runner a(config("hub-a", true), *a_store);
    std::jthread a_thread([&](std::stop_token stop) { a.run(stop); });
    std::optional<Runner> api;
    std::jthread api_thread;
    {
      Runner b(config("hub-b", true), *b_store);
      std::jthread b_thread([&](std::stop_token stop) { b.run(stop); });
      REQUIRE(eventually([&] { return b.freshness().size() == 3 && a.freshness().size() == 3; }));
      REQUIRE(eventually([&] { return a.stats().applied + b.stats().applied == 120; }));
      // A hub that only serves, started now: once it says it is restored, it holds everything
      // the folders had committed when it started.
      api.emplace(config("hub-api", false), *api_store);
      api_thread = std::jthread([&](std::stop_token stop) { api->run(stop); });
      REQUIRE(eventually([&] { return api->changelog_progress() && api->changelog_progress()->restored; }));
      CHECK(holds(*api_store, 20));
      kafka.produce(fleet(21, 10));
      // The api hub holds every partition, whoever folds it.
      REQUIRE(eventually([&] { return holds(*api_store, 30); }));
      REQUIRE(eventually([&] { return api->changelog_progress()->lag == 0; }));
      CHECK(api->stats().applied == 0);
      CHECK(api->freshness().empty());  // the group never saw it
      REQUIRE(eventually([&] { return a.stats().applied + b.stats().applied == 180; }));
      // Without standbys, each holds what it folds and nothing else: it never read another partition.
      int b_communities = 0;
      for (auto* hub : {&a, &b}) {
        const auto folding = hub->freshness();
        const Store& store = hub == &a ? *a_store : *b_store;
        for (int c = 1; c <= 6; ++c) {
          CAPTURE(c);
          if (folding.contains({"courtyard.events.v1", partition_of(c)})) {
            CHECK(events_of(store, c) == 30u);
            b_communities += hub == &b;
          } else {
            CHECK_FALSE(events_of(store, c).has_value());
          }
        }
      }
      REQUIRE(b_communities > 0);  // so that the take-over below restores something
    }
    // b has stopped: a is given its partitions, restores them from the changelog (it never read
    // them) and folds on from where b stopped: only the new events, none of b's again.
    const auto a_before = a.stats().applied;
    kafka.produce(fleet(31, 10));
    REQUIRE(eventually([&] { return holds(*a_store, 40) && holds(*api_store, 40); }));
    CHECK(a.stats().applied - a_before == 60);
    CHECK(eventually([&] { return a.freshness().size() == 6; }));
    CHECK(Projector::counts(a_store->view(), Projector::kEventStatsKey) ==
          Projector::counts(api_store->view(), Projector::kEventStatsKey));
    std::uint64_t counted = 0;
    for (const auto& [type, n] : Projector::counts(a_store->view(), Projector::kEventStatsKey)) counted += n;
    CHECK(counted == 240);

    // b comes back on its store: it is given a share again and restores it from where its store
    // stopped (its own batches are not read again: the store recorded where they ended).
    const auto a_then = a.stats().applied;
    Runner b(config("hub-b", true), *b_store);
    std::jthread b_thread([&](std::stop_token stop) { b.run(stop); });
    REQUIRE(eventually([&] { return b.freshness().size() == 3 && a.freshness().size() == 3; }));
    kafka.produce(fleet(41, 10));
    REQUIRE(eventually([&] { return holds(*api_store, 50); }));
    REQUIRE(eventually([&] { return a.stats().applied - a_then + b.stats().applied == 60; }));
    const auto b_partitions = b.freshness();
    for (int c = 1; c <= 6; ++c) {
      CAPTURE(c);
      const bool b_folds = b_partitions.contains({"courtyard.events.v1", partition_of(c)});
      CHECK(eventually([&] { return events_of(b_folds ? *b_store : *a_store, c) == 50u; }));
    }
  }

  TEST_CASE("a store a hub folded alone is refused by a hub sharing the partitions: its changelog never had that state") {
    MockCluster kafka;
    test::TempDir dir;
    auto store = test::open_store(dir);
    kafka.produce(statuses("d-1", 1, 20));
    {
      Runner alone(runner_config(kafka, "alone"), *store);
      CHECK(run_until(alone, 20).applied == 20);
    }
    auto config = runner_config(kafka, "shared");
    config.changelog = true;
    Runner shared(config, *store);
    std::string why;
    try {
      shared.run(std::stop_token{});
    } catch (const std::runtime_error& e) {
      why = e.what();
    }
    INFO(why);
    CHECK(why.find("folded by a hub alone") != std::string::npos);
  }

  TEST_CASE("a cluster hub away from the changelog longer than it keeps removals restores its store whole") {
    MockCluster kafka;
    test::TempDir dir;
    auto store = test::open_store(dir);
    // A week and a day since it last applied the changelog; a record whose removal it missed.
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch()).count();
    REQUIRE(store->write({{"meta/cluster", "1"},
                          {kChangelogAppliedAtKey, std::to_string(now - 8 * 24 * 3600 * 1000LL)},
                          {Projector::device_key("removed-long-ago"), "{}"}},
                         {{{"courtyard.events.v1", 0}, 5}}));
    kafka.produce(statuses("d-1", 1, 20));
    auto config = runner_config(kafka, "away");
    config.changelog = true;
    Runner runner(config, *store);
    CHECK(run_until(runner, 20).applied == 20);  // from the log's start: the changelog had nothing
    CHECK_FALSE(store->view().get(Projector::device_key("removed-long-ago")).has_value());
    CHECK(processors::record_json(*store->view().get(Projector::device_key("d-1")))["events"] == 20);
  }

  TEST_CASE("a copy of one partition brought up to date longer ago than the changelog keeps removals restores the store "
            "whole when the changelog has records since; with nothing written since, it is kept") {
    for (bool written_since : {false, true}) {
      CAPTURE(written_since);
      MockCluster kafka;
      test::TempDir dir;
      auto store = test::open_store(dir);
      const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch()).count();
      // Two owners' (empty) batches.
      kafka.produce_to("courtyard.state.v1", 0, "offsets/courtyard.events.v1/0", "0");
      kafka.produce_to("courtyard.state.v1", 0, "offsets/courtyard.events.v1/0", "0");
      // Its copy of changelog partition 0: a week and a day old, at the end or before it.
      REQUIRE(store->write({{"meta/cluster", "1"},
                            {changelog_at_key({"courtyard.state.v1", 0}), std::to_string(now - 8 * 24 * 3600 * 1000LL)},
                            {Projector::device_key("maybe-removed"), "{}"}},
                           {{{"courtyard.state.v1", 0}, written_since ? 0 : 2}}));
      kafka.produce(statuses("d-1", 1, 20));
      auto config = runner_config(kafka, "away-" + std::to_string(written_since));
      config.changelog = true;
      Runner runner(config, *store);
      CHECK(run_until(runner, 20).applied == 20);
      CHECK(store->view().get(Projector::device_key("maybe-removed")).has_value() == !written_since);
      CHECK(processors::record_json(*store->view().get(Projector::device_key("d-1")))["events"] == 20);
    }
  }

  TEST_CASE("a store folded from three partitions refuses an events topic that now has six, and folds nothing") {
    test::TempDir dir;
    auto store = test::open_store(dir);
    {
      MockCluster kafka(3);
      kafka.produce(statuses("d-1", 1, 20));
      Runner runner(runner_config(kafka, "pinned"), *store);
      CHECK(run_until(runner, 20).applied == 20);
      CHECK(store->view().get("meta/partitions/courtyard.events.v1") == "3");
    }
    // The same topic with more partitions: its communities' keys now hash to other partitions, so
    // a community's events would be split between lanes and folded out of order.
    MockCluster grown(6);
    grown.produce(statuses("d-1", 21, 20));
    Runner runner(runner_config(grown, "pinned"), *store);
    std::string why;
    try {
      runner.run(std::stop_token{});
    } catch (const std::runtime_error& e) {
      why = e.what();
    }
    INFO(why);
    CHECK(why.find("has 6 partitions but this store was folded from 3") != std::string::npos);
    CHECK(runner.stats().applied == 0);
    auto state = processors::record_json(*store->view().get(Projector::device_key("d-1")));
    CHECK(state["events"] == 20);
  }

  TEST_CASE("three fold lanes fold a log spread over three partitions: every event once, each key's changes in order") {
    MockCluster kafka;
    test::TempDir dir;
    auto store = test::open_store(dir);
    RunnerConfig config = runner_config(kafka, "runner-lanes-test");
    config.fold_lanes = 3;
    config.max_batch = 37;  // many commits per lane
    std::mutex mu;
    std::map<std::string, std::vector<std::uint64_t>> seen;  // device record -> its "events", as committed
    std::uint64_t commits = 0, highest = 0;
    config.on_commit = [&](std::uint64_t seq, KeyValues changes) {
      std::lock_guard lock(mu);
      ++commits;
      highest = std::max(highest, seq);
      for (const auto& [key, value] : changes) {
        if (key.starts_with("devices/")) seen[key].push_back(record_json(value)["events"].get<std::uint64_t>());
      }
    };
    std::vector<schemas::Event> log;
    for (int c = 1; c <= 6; ++c) {  // keyed by community: spread over the partitions
      for (std::uint64_t seq = 1; seq <= 100; ++seq) {
        auto e = test::status_event("d-" + std::to_string(c), seq);
        e.community = CommunityId("c" + std::to_string(c));
        log.push_back(e);
      }
    }
    kafka.produce(log);
    // Dead letters of unparsable topics, in every partition of theirs: one record counts them all.
    for (int i = 0; i < 30; ++i) kafka.produce_unparsable_dead_letter(i % 3);
    // A message no lane can fold: set aside in its lane, which folds on, as the others do.
    kafka.produce_garbage(1);
    Runner runner(config, *store);
    CHECK(runner.fold_lanes() == 3);
    std::jthread thread([&](std::stop_token stop) { runner.run(stop); });
    for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
         (runner.stats().applied < 600 || runner.stats().dead_letters < 30 || runner.stats().quarantined < 1) &&
         std::chrono::steady_clock::now() < deadline;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    thread.request_stop();
    thread.join();
    auto stats = runner.stats();
    CHECK(stats.applied == 600);
    CHECK(stats.quarantined == 1);
    CHECK_FALSE(store->view().scan("quarantine/courtyard.events.v1/1/", "", 10).empty());
    CHECK(processors::record_json(*store->view().get(Projector::rejection_key("_unknown")))["total"] == 30);
    CHECK(stats.duplicates == 0);
    CHECK(store->view().offsets().size() == 6);  // every partition of both topics: every lane folded
    std::lock_guard lock(mu);
    CHECK(commits == runner.committed());
    CHECK(highest == commits);  // every number given once
    REQUIRE(seen.size() == 6);
    for (const auto& [key, events] : seen) {
      CAPTURE(key);
      CHECK(std::is_sorted(events.begin(), events.end()));
      CHECK(std::adjacent_find(events.begin(), events.end()) == events.end());  // each change once
      CHECK(events.back() == 100);
      CHECK(processors::record_json(*store->view().get(key))["events"] == 100);
    }
  }

  TEST_CASE("an alert Kafka refused is published again on a timer, without waiting for the next alert") {
    MockCluster kafka;
    rd_kafka_mock_topic_create(kafka.cluster, "courtyard.alerts.v1", 1, 1);
    rd_kafka_mock_topic_create(kafka.cluster, "courtyard.commands.v1", 1, 1);
    test::TempDir dir;
    auto store = test::open_store(dir);
    RunnerConfig config = runner_config(kafka, "runner-outbox-test");

    // One smoke alarm, and nothing after it that could carry a retry along.
    schemas::Event registered = test::status_event("smoke-1", 0);
    registered.body = schemas::DeviceRegistered{schemas::DeviceKind::HomeSensor, "b1-0101", "Building 1, flat 101"};
    schemas::Event alarm = test::status_event("smoke-1", 1);
    alarm.body = schemas::HomeSensor{schemas::SensorKind::Smoke, "alarm", {}};
    kafka.produce({registered, alarm});
    // The runner's first produce request fails for good (not one librdkafka retries by itself).
    constexpr std::int16_t kProduceApiKey = 0;  // Kafka protocol API key of Produce
    rd_kafka_mock_push_request_errors(kafka.cluster, kProduceApiKey, 1, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);

    Runner runner(config, *store);
    std::jthread thread([&](std::stop_token stop) { runner.run(stop); });
    auto alert = kafka.first_record("courtyard.alerts.v1", std::chrono::seconds(20));
    REQUIRE_MESSAGE(alert, "the refused alert was never published again");
    CHECK(processors::record_json(*alert)["id"] == "c1:smoke:smoke-1:1");
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (runner.stats().alerts_published == 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    CHECK(runner.stats().alerts_published >= 1);
  }
}
