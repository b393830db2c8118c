// The changelog (decision 0024) against librdkafka's in-process mock cluster: what one store's
// owner writes through a ChangelogWriter, a ChangelogApplier puts in another store. (Hubs sharing
// the partitions on the real broker are exercised by tests/integration.)
#include <doctest/doctest.h>

#include <cstring>
#include <thread>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "common/handles.h"
#include "events.h"
#include "mock_kafka.h"
#include "processors/changelog.h"
#include "processors/record.h"
#include "stores.h"
#include "temp_dir.h"

using namespace courtyard;
using namespace courtyard::processors;

namespace {

// An owner's projector config: every batch through `writer` to the changelog first.
ProjectorConfig writing_through(ChangelogWriter& writer) {
  ProjectorConfig config;
  config.before_write = [&writer](std::vector<PartitionWrite>& writes) -> std::expected<void, std::string> {
    auto ok = writer.write(writes, nullptr);
    if (!ok) return std::unexpected(ok.error().message);
    return {};
  };
  return config;
}

schemas::Event event_in(const std::string& community, const std::string& device, std::uint64_t seq) {
  auto e = test::status_event(device, seq);
  e.community = CommunityId(community);
  return e;
}

// Two communities' events, c1's in partition 0 and c2's in partition 1, and a dead letter.
std::vector<LogMessage> two_communities(std::uint64_t first, std::uint64_t count) {
  std::vector<LogMessage> log;
  for (std::uint64_t i = first; i < first + count; ++i) {
    log.push_back(test::log_message(event_in("c1", "a", i), static_cast<std::int64_t>(i), 0));
    log.push_back(test::log_message(event_in("c2", "b", i), static_cast<std::int64_t>(i), 1));
  }
  log.push_back({"courtyard.deadletter.v1", 2, static_cast<std::int64_t>(first), "m-1", "{bad",
                 {{"reason", "malformed"}, {"detail", "d"}, {"device", "m-1"}}});
  return log;
}

// Every record of the store but its own bookkeeping (format, changelog positions).
KeyValues records(const Store& store, const std::string& skip_prefix = "offsets/courtyard.state") {
  KeyValues out;
  for (auto& kv : store.view().scan("", "", 1'000'000)) {
    if (kv.first == Projector::kStoreFormatKey || kv.first == kChangelogAppliedAtKey || kv.first.starts_with(skip_prefix) ||
        kv.first.starts_with(kChangelogAtPrefix)) {
      continue;
    }
    out.push_back(std::move(kv));
  }
  return out;
}

// An owner writing through the changelog into its store, and a replica's store.
struct OwnerAndReplica {
  test::MockKafka mock;
  KafkaConfig kafka = mock.config();
  test::TempDir owner_dir, replica_dir;
  std::unique_ptr<Store> owner_store = test::open_store(owner_dir), replica_store = test::open_store(replica_dir);
  std::unique_ptr<ChangelogWriter> writer = open_writer(kafka);
  Projector owner{*owner_store, writing_through(*writer)};
  static std::unique_ptr<ChangelogWriter> open_writer(const KafkaConfig& kafka) {
    auto w = ChangelogWriter::open(kafka, "courtyard-hub-state-test-0");
    REQUIRE_MESSAGE(w, (w ? "" : w.error()));
    return std::move(*w);
  }
};

// A record put on a changelog topic by hand (not through a writer): `format` set, an end record's header.
void put_record(const KafkaConfig& kafka, std::int32_t partition, const char* key, const char* value,
                const char* format = nullptr) {
  auto p = make_producer(kafka, {{"acks", "all"}});
  REQUIRE(p);
  rd_kafka_headers_t* headers = rd_kafka_headers_new(1);
  if (format) rd_kafka_header_add(headers, "format", -1, format, -1);
  REQUIRE(rd_kafka_producev(p->get(), RD_KAFKA_V_TOPIC("courtyard.state.v1"), RD_KAFKA_V_PARTITION(partition),
                            RD_KAFKA_V_KEY(key, key ? std::strlen(key) : 0),
                            RD_KAFKA_V_VALUE(const_cast<char*>(value), value ? std::strlen(value) : 0),
                            RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR_NO_ERROR);
  REQUIRE(rd_kafka_flush(p->get(), 10000) == RD_KAFKA_RESP_ERR_NO_ERROR);
}

}  // namespace

TEST_SUITE("changelog (librdkafka mock cluster)") {
  TEST_CASE("what an owner writes through the changelog, another store applies: record for record, offsets included") {
    OwnerAndReplica f;
    auto& [mock, kafka, owner_dir, replica_dir, owner_store, replica_store, writer, owner] = f;
    REQUIRE(owner.apply(two_communities(1, 5)));
    REQUIRE(owner.apply(two_communities(6, 5)));

    std::atomic<int> applied_changes{0};
    ChangelogApplier replica({kafka, {"courtyard.events.v1", "courtyard.deadletter.v1"},
                              [&](KeyValues changes) { applied_changes += static_cast<int>(changes.size()); }},
                             *replica_store);
    std::jthread thread([&](std::stop_token stop) { replica.run(stop); });
    for (std::int32_t p : {0, 1}) REQUIRE(replica.catch_up({"courtyard.events.v1", p}, std::chrono::seconds(20)));
    REQUIRE(replica.catch_up({"courtyard.deadletter.v1", 2}, std::chrono::seconds(20)));
    CHECK(records(*replica_store) == records(*owner_store));
    CHECK(record_json(*replica_store->view().get(Projector::device_key("b")))["events"] == 10);
    CHECK(replica.batches_applied() == 6);  // two batches, each of three source partitions
    CHECK(applied_changes > 0);             // a live subscription on the replica hears of them
  }

  TEST_CASE("an owned partition's records are skipped: its owner writes them to the store itself") {
    OwnerAndReplica f;
    auto& [mock, kafka, owner_dir, replica_dir, owner_store, replica_store, writer, owner] = f;
    REQUIRE(owner.apply(two_communities(1, 5)));
    ChangelogApplier replica({kafka, {"courtyard.events.v1", "courtyard.deadletter.v1"}, {}}, *replica_store);
    replica.own({"courtyard.events.v1", 0});
    std::jthread thread([&](std::stop_token stop) { replica.run(stop); });
    for (std::int32_t p : {0, 1}) REQUIRE(replica.catch_up({"courtyard.events.v1", p}, std::chrono::seconds(20)));
    CHECK_FALSE(replica_store->view().get(Projector::device_key("a")).has_value());
    CHECK(replica_store->view().get(Projector::device_key("b")).has_value());
    CHECK_FALSE(replica_store->view().offsets().contains({"courtyard.events.v1", 0}));
    CHECK(replica_store->view().offsets().at({"courtyard.events.v1", 1}) == 6);
  }

  TEST_CASE("hostile changelog records: one with no key is skipped, an end that is no number moves no source offset, "
            "the store's own bookkeeping is never taken from it, and a batch of another store format stops the applier "
            "with the reason") {
    test::MockKafka mock;
    const auto kafka = mock.config();
    test::TempDir dir;
    auto store = test::open_store(dir);
    put_record(kafka, 0, nullptr, "no key at all");
    put_record(kafka, 0, "devices/first", "{}");
    const std::string current = std::to_string(Projector::kStoreFormat);
    put_record(kafka, 0, "offsets/courtyard.events.v1/0", "\xff not a number", current.c_str());
    put_record(kafka, 0, "devices/second", "{}");
    // Records forged to reach the store's own bookkeeping: a whole restore at the next start, an
    // unreadable copy time, another format.
    put_record(kafka, 0, kRestoreWholeKey, "1");
    put_record(kafka, 0, "meta/changelog_at/x", "not a time");
    put_record(kafka, 0, "meta/format", "1");
    put_record(kafka, 0, "offsets/courtyard.events.v1/0", "7", current.c_str());
    ChangelogApplier replica({kafka, {"courtyard.events.v1", "courtyard.deadletter.v1"}, {}}, *store);
    std::string stopped_because;
    std::jthread thread([&](std::stop_token stop) {
      try {
        replica.run(stop);
      } catch (const std::exception& e) {
        stopped_because = e.what();
      }
    });
    REQUIRE(replica.catch_up({"courtyard.events.v1", 0}, std::chrono::seconds(20)));
    CHECK(store->view().get("devices/first").has_value());
    CHECK(store->view().get("devices/second").has_value());
    CHECK(store->view().offsets().at({"courtyard.events.v1", 0}) == 7);  // the garbled end moved nothing
    CHECK_FALSE(store->view().get(kRestoreWholeKey).has_value());
    CHECK_FALSE(store->view().get("meta/changelog_at/x").has_value());
    CHECK(store->view().get("meta/format") != std::optional<std::string>("1"));

    put_record(kafka, 1, "devices/from-the-future", "{}");
    put_record(kafka, 1, "offsets/courtyard.events.v1/1", "3", "99");
    CHECK_FALSE(replica.catch_up({"courtyard.events.v1", 1}, std::chrono::seconds(20)));
    thread.join();
    CHECK(stopped_because.find("store format 99") != std::string::npos);
    CHECK_FALSE(store->view().get("devices/from-the-future").has_value());
  }

  TEST_CASE("an owner's store records where the changelog stands after its batch, so a restore of its partitions reads "
            "only what came after") {
    OwnerAndReplica f;
    auto& [mock, kafka, owner_dir, replica_dir, owner_store, replica_store, writer, owner] = f;
    REQUIRE(owner.apply(two_communities(1, 5)));
    const auto offsets = owner_store->view().offsets();
    // Each partition's one batch ends with its end record, the changelog's last: the store is past it.
    auto reader = make_consumer(kafka, {{"group.id", "ends"}});
    REQUIRE(reader);
    for (const auto& [topic, p] : {std::pair<std::string, int>{"courtyard.state.v1", 0}, {"courtyard.state.v1", 1},
                                   {"courtyard.state.deadletter.v1", 2}}) {
      CAPTURE(p);
      auto end = query_high_watermark(reader->get(), topic, p, std::chrono::seconds(10));
      REQUIRE(end);
      CHECK(*end > 1);
      CHECK(offsets.at({topic, p}) >= *end - 1);  // past the end record; the end may count the commit's marker
      CHECK(offsets.at({topic, p}) <= *end);
    }
    CHECK(owner_store->view().get(changelog_at_key({"courtyard.state.v1", 0})).has_value());
  }

  TEST_CASE("a copy brought up to date longer ago than the changelog keeps removals is not restored from its position "
            "when records came since: the store is marked to be restored whole") {
    OwnerAndReplica f;
    auto& [mock, kafka, owner_dir, replica_dir, owner_store, replica_store, writer, owner] = f;
    REQUIRE(owner.apply(two_communities(1, 5)));
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch()).count();
    const auto long_ago = std::to_string(now - 8 * 24 * 3600 * 1000LL);
    // The replica held partition 0 eight days ago, up to before the owner's batch; partition 1
    // just as long ago, but up to its end: nothing was written since, nothing can have been missed.
    auto reader = make_consumer(kafka, {{"group.id", "ends"}});
    REQUIRE(reader);
    auto end_1 = query_high_watermark(reader->get(), "courtyard.state.v1", 1, std::chrono::seconds(10));
    REQUIRE(end_1);
    REQUIRE(replica_store->write({{changelog_at_key({"courtyard.state.v1", 0}), long_ago},
                                  {changelog_at_key({"courtyard.state.v1", 1}), long_ago}},
                                 {{{"courtyard.state.v1", 0}, 0}, {{"courtyard.state.v1", 1}, *end_1}}));
    ChangelogApplier replica({kafka, {"courtyard.events.v1", "courtyard.deadletter.v1"}, {}, false}, *replica_store);
    std::jthread thread([&](std::stop_token stop) { replica.run(stop); });
    REQUIRE(replica.catch_up({"courtyard.events.v1", 1}, std::chrono::seconds(20)));
    auto refused = replica.catch_up({"courtyard.events.v1", 0}, std::chrono::seconds(20));
    REQUIRE_FALSE(refused);
    CHECK(refused.error().find("older than the changelog keeps removals") != std::string::npos);
    CHECK(replica_store->view().get(kRestoreWholeKey).has_value());
    CHECK_FALSE(replica_store->view().get(Projector::device_key("a")).has_value());  // nothing applied from there
  }
}
