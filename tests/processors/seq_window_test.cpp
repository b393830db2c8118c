#include <doctest/doctest.h>

#include "processors/devices_fold.h"

using namespace courtyard::processors;

TEST_SUITE("seq window") {
  TEST_CASE("increasing seqs are fresh and leave no gaps") {
    SeqWindow w;
    for (std::uint64_t s = 1; s <= 100; ++s) CHECK(admit(w, 1, s) == Admission::Fresh);
    CHECK(w.gaps == 0);
    CHECK(w.high == 100);
  }

  TEST_CASE("a repeated seq is a duplicate, however often it comes") {
    SeqWindow w;
    admit(w, 1, 1);
    admit(w, 1, 2);
    CHECK(admit(w, 1, 2) == Admission::Duplicate);
    CHECK(admit(w, 1, 1) == Admission::Duplicate);
    CHECK(admit(w, 1, 2) == Admission::Duplicate);
  }

  TEST_CASE("a skipped seq is a gap until it arrives late") {
    SeqWindow w;
    admit(w, 1, 1);
    CHECK(admit(w, 1, 4) == Admission::Fresh);
    CHECK(w.gaps == 2);
    CHECK(admit(w, 1, 3) == Admission::Fresh);
    CHECK(w.gaps == 1);
    CHECK(admit(w, 1, 3) == Admission::Duplicate);
    CHECK(w.gaps == 1);
  }

  TEST_CASE("the window remembers exactly 64 seqs") {
    SeqWindow w;
    admit(w, 1, 1);
    admit(w, 1, 64);  // seq 1 is now 63 behind: still inside
    CHECK(admit(w, 1, 1) == Admission::Duplicate);
    admit(w, 1, 65);  // seq 1 is now 64 behind: outside
    CHECK(admit(w, 1, 1) == Admission::Stale);
    CHECK(admit(w, 1, 2) == Admission::Fresh);  // 63 behind: still inside, and never seen
  }

  TEST_CASE("a jump of more than the window width clears it") {
    SeqWindow w;
    admit(w, 1, 1);
    CHECK(admit(w, 1, 1000) == Admission::Fresh);
    CHECK(w.gaps == 998);
    CHECK(admit(w, 1, 999) == Admission::Fresh);
    CHECK(admit(w, 1, 1000) == Admission::Duplicate);
  }

  TEST_CASE("a new boot restarts the sequence; an older boot is stale") {
    SeqWindow w;
    admit(w, 1, 500);
    CHECK(admit(w, 2, 1) == Admission::Fresh);
    CHECK(w.boot == 2);
    CHECK(admit(w, 2, 2) == Admission::Fresh);
    CHECK(admit(w, 1, 501) == Admission::Stale);
    CHECK(w.gaps == 0);
  }

  TEST_CASE("a window kept as text (ingest's spool) comes back the same, and anything else is refused") {
    SeqWindow w;
    admit(w, 3, 100);
    admit(w, 3, 98);
    auto back = courtyard::schemas::seq_window_from_text(courtyard::schemas::to_text(w));
    REQUIRE(back.has_value());
    CHECK(*back == w);
    CHECK(admit(*back, 3, 98) == Admission::Duplicate);  // what ingest drops after a restart
    CHECK_FALSE(courtyard::schemas::seq_window_from_text("").has_value());
    CHECK_FALSE(courtyard::schemas::seq_window_from_text("1 2 three").has_value());
    CHECK_FALSE(courtyard::schemas::seq_window_from_text("\xff\xfe").has_value());
  }
}

