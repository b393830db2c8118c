// The way from the spool to the producer: in order, exactly once, with memory that does not grow
// with the backlog (a Kafka outage costs disk, not memory).
#include <doctest/doctest.h>

#include <algorithm>
#include <vector>

#include "spool.h"
#include "spool_pump.h"
#include "temp_dir.h"

using namespace courtyard;
using namespace courtyard::ingest;

namespace {

SpoolRecord record(std::uint64_t i) { return {"courtyard.events.v1", "c1", "event-" + std::to_string(i) + std::string(180, '.'), {}}; }

// Appends as ingest does: into the spool, then to the pump.
void append(Spool& spool, SpoolPump& pump, std::uint64_t i) {
  auto seq = spool.append(record(i));
  REQUIRE(seq);
  pump.appended(*seq, {record(i)});
}

// A producer that takes records while `up`, and the commits of what it took.
struct Producer {
  bool up = true;
  std::vector<std::uint64_t> taken;
  SpoolPump::Produce take() {
    return [this](std::uint64_t seq, const SpoolRecord& r) {
      if (!up) return false;
      CHECK(r.value.starts_with("event-" + std::to_string(seq)));
      taken.push_back(seq);
      return true;
    };
  }
  void confirm_all(SpoolPump& pump) { pump.committed(); }
};

constexpr SpoolPumpLimits kLimits{.max_in_flight = 500, .max_in_flight_bytes = 64 << 10, .cache_bytes = 32 << 10, .chunk = 64};

}  // namespace

TEST_SUITE("ingest spool pump") {
  TEST_CASE("while Kafka is away the backlog stays on disk, and when it returns every record goes out once, in order") {
    test::TempDir dir;
    auto spool = Spool::open(dir.str("spool"));
    REQUIRE(spool);
    SpoolPump pump(**spool, kLimits);
    Producer kafka;
    kafka.up = false;
    constexpr std::uint64_t kBacklog = 20000;  // ~4 MB of records against a 32 KiB cache
    for (std::uint64_t i = 0; i < kBacklog; ++i) {
      append(**spool, pump, i);
      pump.pump(kafka.take());
      REQUIRE(pump.cached_bytes() <= kLimits.cache_bytes);
    }
    CHECK(kafka.taken.empty());
    CHECK(pump.in_flight() == 0);

    kafka.up = true;
    while (kafka.taken.size() < kBacklog) {
      const auto before = kafka.taken.size();
      pump.pump(kafka.take());
      REQUIRE(pump.in_flight() <= kLimits.max_in_flight);
      REQUIRE(kafka.taken.size() > before);  // progress every round
      kafka.confirm_all(pump);
    }
    std::vector<std::uint64_t> expected(kBacklog);
    for (std::uint64_t i = 0; i < kBacklog; ++i) expected[i] = i;
    CHECK(kafka.taken == expected);
  }

  TEST_CASE("records appended while the pump reads the backlog from disk go out once, after it") {
    test::TempDir dir;
    auto spool = Spool::open(dir.str("spool"));
    REQUIRE(spool);
    SpoolPump pump(**spool, kLimits);
    Producer kafka;
    kafka.up = false;
    std::uint64_t n = 0;
    for (; n < 3000; ++n) append(**spool, pump, n);
    kafka.up = true;
    // Kafka is back and devices go on sending: appends and pumps interleave, confirmations lag.
    for (int round = 0; round < 400; ++round) {
      for (int k = 0; k < 7; ++k) append(**spool, pump, n++);
      pump.pump(kafka.take());
      if (round % 3 == 0) kafka.confirm_all(pump);
    }
    while (kafka.taken.size() < n) {
      kafka.confirm_all(pump);
      pump.pump(kafka.take());
    }
    REQUIRE(kafka.taken.size() == n);
    for (std::uint64_t i = 0; i < n; ++i) REQUIRE(kafka.taken[i] == i);
  }

  TEST_CASE("a new run starts with what the previous one spooled and Kafka never confirmed") {
    test::TempDir dir;
    auto spool = Spool::open(dir.str("spool"));
    REQUIRE(spool);
    {
      SpoolPump pump(**spool, kLimits);
      for (std::uint64_t i = 0; i < 100; ++i) append(**spool, pump, i);
    }
    for (std::uint64_t i = 0; i < 40; ++i) REQUIRE((*spool)->remove(i, i + 1));  // confirmed before the crash
    SpoolPump pump(**spool, kLimits);
    CHECK(pump.next_seq() == 40);
    CHECK(pump.cached_bytes() == 0);
    Producer kafka;
    pump.pump(kafka.take());
    REQUIRE(kafka.taken.size() == 60);
    CHECK(kafka.taken.front() == 40);
    CHECK(kafka.taken.back() == 99);
  }

  TEST_CASE("a snapshot larger than the in-flight byte limit still goes out, alone") {
    test::TempDir dir;
    auto spool = Spool::open(dir.str("spool"));
    REQUIRE(spool);
    SpoolPump pump(**spool, kLimits);
    const SpoolRecord big{"courtyard.snapshots.v1", "cam-1", "event-0" + std::string(512 << 10, 'j'), {}};
    auto seq = (*spool)->append(big);
    REQUIRE(seq);
    pump.appended(*seq, {big});
    append(**spool, pump, 1);
    Producer kafka;
    pump.pump(kafka.take());
    CHECK(kafka.taken == std::vector<std::uint64_t>{0});  // the next waits for the big one's confirmation
    pump.committed();
    pump.pump(kafka.take());
    CHECK(kafka.taken == std::vector<std::uint64_t>{0, 1});
  }

  TEST_CASE("an aborted transaction's records are handed over again, in order, before anything after them") {
    test::TempDir dir;
    auto spool = Spool::open(dir.str("spool"));
    REQUIRE(spool);
    SpoolPump pump(**spool, kLimits);
    Producer kafka;
    for (std::uint64_t i = 0; i < 300; ++i) append(**spool, pump, i);
    pump.pump(kafka.take());
    REQUIRE(kafka.taken.size() == 300);
    pump.committed();
    for (std::uint64_t i = 300; i < 500; ++i) append(**spool, pump, i);
    pump.pump(kafka.take());  // 300..499 in a transaction that Kafka then aborts
    REQUIRE(kafka.taken.size() == 500);
    pump.rewind(300);
    CHECK(pump.in_flight() == 0);
    for (std::uint64_t i = 500; i < 550; ++i) append(**spool, pump, i);
    kafka.taken.resize(300);
    pump.pump(kafka.take());
    REQUIRE(kafka.taken.size() == 550);
    for (std::uint64_t i = 0; i < 550; ++i) REQUIRE(kafka.taken[i] == i);
  }

  TEST_CASE("a restart skips what the delivery mark says Kafka holds although the spool still has it") {
    test::TempDir dir;
    auto spool = Spool::open(dir.str("spool"));
    REQUIRE(spool);
    for (std::uint64_t i = 0; i < 100; ++i) REQUIRE((*spool)->append(record(i)));
    SpoolPump pump(**spool, kLimits);
    pump.start_at(64);  // committed up to 64, killed before the spool forgot them
    Producer kafka;
    pump.pump(kafka.take());
    REQUIRE(kafka.taken.size() == 36);
    CHECK(kafka.taken.front() == 64);
  }
}
