// The changelog (decision 0024) against librdkafka's in-process mock cluster: what one store's
// owner writes through a ChangelogWriter, a ChangelogApplier puts in another store. (Hubs sharing
// the partitions on the real broker are exercised by tests/integration.)
#include <doctest/doctest.h>

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
  config.before_write = [&writer](const std::vector<PartitionWrite>& writes) -> std::expected<void, std::string> {
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
    if (kv.first == Projector::kStoreFormatKey || kv.first == kChangelogAppliedAtKey || kv.first.starts_with(skip_prefix)) continue;
    out.push_back(std::move(kv));
  }
  return out;
}

}  // namespace

TEST_SUITE("changelog (librdkafka mock cluster)") {
  TEST_CASE("what an owner writes through the changelog, another store applies: record for record, offsets included") {
    test::MockKafka mock;
    const auto kafka = mock.config();
    test::TempDir owner_dir, replica_dir;
    auto owner_store = test::open_store(owner_dir), replica_store = test::open_store(replica_dir);
    auto writer = ChangelogWriter::open(kafka, "courtyard-hub-state-test-0");
    REQUIRE(writer);
    Projector owner(*owner_store, writing_through(**writer));
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
    test::MockKafka mock;
    const auto kafka = mock.config();
    test::TempDir owner_dir, replica_dir;
    auto owner_store = test::open_store(owner_dir), replica_store = test::open_store(replica_dir);
    auto writer = ChangelogWriter::open(kafka, "courtyard-hub-state-test-0");
    REQUIRE(writer);
    Projector owner(*owner_store, writing_through(**writer));
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
}
