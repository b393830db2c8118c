#include <doctest/doctest.h>

#include <filesystem>

#include "spool.h"
#include "temp_dir.h"

using namespace courtyard;
using ingest::Spool;
using ingest::SpoolRecord;

TEST_SUITE("ingest spool") {
  TEST_CASE("records come back in the order they were appended, with their headers") {
    test::TempDir dir;
    auto spool = Spool::open(dir.str("spool"));
    REQUIRE(spool);
    for (int i = 0; i < 5; ++i) {
      auto seq = (*spool)->append({"t", "k" + std::to_string(i), "v" + std::to_string(i), {{"reason", "r"}}});
      REQUIRE(seq);
      CHECK(*seq == static_cast<std::uint64_t>(i));
    }
    auto records = (*spool)->read(0, 100);
    REQUIRE(records.size() == 5);
    CHECK(records[3].second.key == "k3");
    CHECK(records[3].second.headers.at(0).second == "r");
  }

  TEST_CASE("attack: a camera image delivered and removed leaves the spool's files once purged") {
    // The review's probe found a delivered snapshot's raw bytes still in the spool's write-ahead log.
    test::TempDir dir;
    auto spool = Spool::open(dir.str("spool"));
    REQUIRE(spool);
    const std::string image = "\xff\xd8 UNBLURRED-FACES-OF-THE-GATE " + std::string(4096, 'x') + "\xff\xd9";
    auto seq = (*spool)->append({"courtyard.snapshots.v1", "cam-1", image, {}});
    REQUIRE(seq);
    REQUIRE((*spool)->append({"courtyard.events.v1", "c1", "still waiting", {}}));
    REQUIRE((*spool)->remove(*seq, *seq + 1));
    REQUIRE((*spool)->purge());
    for (const auto& f : std::filesystem::recursive_directory_iterator(dir.path() / "spool")) {
      if (!f.is_regular_file()) continue;
      CAPTURE(f.path().string());
      CHECK(test::read_file(f.path()).find("UNBLURRED-FACES-OF-THE-GATE") == std::string::npos);
    }
    auto left = (*spool)->read(0, 10);
    REQUIRE(left.size() == 1);
    CHECK(left[0].second.value == "still waiting");
  }

  TEST_CASE("a record stays until it is removed, and survives reopening") {
    test::TempDir dir;
    {
      auto spool = Spool::open(dir.str("spool"));
      for (int i = 0; i < 3; ++i) REQUIRE((*spool)->append({"t", "k", "v" + std::to_string(i), {}}));
      REQUIRE((*spool)->remove(0, 1));
    }
    auto spool = Spool::open(dir.str("spool"));
    REQUIRE(spool);
    CHECK((*spool)->first_seq() == 1);
    CHECK((*spool)->next_seq() == 3);
    auto records = (*spool)->read((*spool)->first_seq(), 100);
    REQUIRE(records.size() == 2);
    CHECK(records[0].second.value == "v1");
    SUBCASE("and new records continue the sequence instead of reusing one") {
      auto seq = (*spool)->append({"t", "k", "v3", {}});
      REQUIRE(seq);
      CHECK(*seq == 3);
    }
  }

  TEST_CASE("metadata is written in the same batch as the record it accompanies") {
    test::TempDir dir;
    {
      auto spool = Spool::open(dir.str("spool"));
      REQUIRE((*spool)->append({"t", "k", "v", {}}, {{"registry_applied", "12"}}));
    }
    auto spool = Spool::open(dir.str("spool"));
    CHECK((*spool)->meta("registry_applied") == "12");
    CHECK_FALSE((*spool)->meta("missing").has_value());
  }

  TEST_CASE("an empty spool reports nothing pending") {
    test::TempDir dir;
    auto spool = Spool::open(dir.str("spool"));
    CHECK((*spool)->first_seq() == (*spool)->next_seq());
    CHECK((*spool)->read(0, 10).empty());
  }

  TEST_CASE("an emptied spool goes on from its next sequence after reopening, never from 0") {
    // Kafka's delivery mark names sequences: one reused would make a restart skip a new record.
    test::TempDir dir;
    {
      auto spool = Spool::open(dir.str("spool"));
      for (int i = 0; i < 5; ++i) REQUIRE((*spool)->append({"t", "k", "v" + std::to_string(i), {}}));
      REQUIRE((*spool)->remove(0, 5));
    }
    auto spool = Spool::open(dir.str("spool"));
    REQUIRE(spool);
    CHECK((*spool)->next_seq() == 5);
    CHECK((*spool)->first_seq() == 5);
    auto seq = (*spool)->append({"t", "k", "after", {}});
    REQUIRE(seq);
    CHECK(*seq == 5);
  }

  TEST_CASE("a removal retried after a later one does not move the next sequence back") {
    // ingest retries a removal the disk refused (a full disk) after later ones went through.
    test::TempDir dir;
    {
      auto spool = Spool::open(dir.str("spool"));
      for (int i = 0; i < 8; ++i) REQUIRE((*spool)->append({"t", "k", "v" + std::to_string(i), {}}));
      REQUIRE((*spool)->remove(4, 8));
      REQUIRE((*spool)->remove(0, 4));
    }
    auto spool = Spool::open(dir.str("spool"));
    REQUIRE(spool);
    CHECK((*spool)->next_seq() == 8);
  }

  TEST_CASE("records appended after the spool was emptied keep their sequences across reopening") {
    test::TempDir dir;
    {
      auto spool = Spool::open(dir.str("spool"));
      for (int i = 0; i < 3; ++i) REQUIRE((*spool)->append({"t", "k", "v" + std::to_string(i), {}}));
      REQUIRE((*spool)->remove(0, 3));
      REQUIRE((*spool)->append({"t", "k", "later", {}}));
    }
    auto spool = Spool::open(dir.str("spool"));
    REQUIRE(spool);
    CHECK((*spool)->first_seq() == 3);
    CHECK((*spool)->next_seq() == 4);
    auto held = (*spool)->read(3, 10);
    REQUIRE(held.size() == 1);
    CHECK(held[0].second.value == "later");
  }
}
