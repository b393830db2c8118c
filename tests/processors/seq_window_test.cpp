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

  TEST_CASE("the window remembers exactly 1,024 seqs") {
    SeqWindow w;
    admit(w, 1, 1);
    admit(w, 1, 1024);  // seq 1 is now 1,023 behind: still inside
    CHECK(admit(w, 1, 1) == Admission::Duplicate);
    admit(w, 1, 1025);  // seq 1 is now 1,024 behind: outside
    CHECK(admit(w, 1, 1) == Admission::Stale);
    CHECK(admit(w, 1, 2) == Admission::Fresh);  // 1,023 behind: still inside, and never seen
  }

  TEST_CASE("a repeat a Mosquitto crash delivers 5 s late, behind 60 newer seqs, is still a duplicate") {
    SeqWindow w;
    for (std::uint64_t s = 1; s <= 40; ++s) admit(w, 1, s);
    for (std::uint64_t s = 41; s <= 100; ++s) admit(w, 1, s);  // sent since the broker's last save
    for (std::uint64_t s = 20; s <= 40; ++s) CHECK(admit(w, 1, s) == Admission::Duplicate);
  }

  TEST_CASE("a jump of more than the window width clears it") {
    SeqWindow w;
    admit(w, 1, 1);
    CHECK(admit(w, 1, 5000) == Admission::Fresh);
    CHECK(w.gaps == 4998);
    CHECK(admit(w, 1, 4999) == Admission::Fresh);
    CHECK(admit(w, 1, 5000) == Admission::Duplicate);
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
    CHECK(courtyard::schemas::to_text(w) == "v2 1 3 100 0 0-97,99-99");
    CHECK_FALSE(courtyard::schemas::seq_window_from_text("").has_value());
    CHECK_FALSE(courtyard::schemas::seq_window_from_text("v2 1 3 100 0 5-4").has_value());
    CHECK_FALSE(courtyard::schemas::seq_window_from_text("v2 1 3 100 0 x").has_value());
    CHECK_FALSE(courtyard::schemas::seq_window_from_text("v2 1 3 100 0").has_value());
    CHECK_FALSE(courtyard::schemas::seq_window_from_text("v2 1 3 100 0 0-5,").has_value());
    CHECK_FALSE(courtyard::schemas::seq_window_from_text("1 2 three").has_value());
    CHECK_FALSE(courtyard::schemas::seq_window_from_text("\xff\xfe").has_value());
  }

  TEST_CASE("a window written in the 64-wide form before is read, its 64 seqs as they were") {
    auto old = courtyard::schemas::seq_window_from_text("1 3 100 5 0");  // seqs 100 and 98 seen
    REQUIRE(old.has_value());
    CHECK(admit(*old, 3, 98) == Admission::Duplicate);
    CHECK(admit(*old, 3, 99) == Admission::Fresh);
  }

  TEST_CASE("a window with nothing unseen is written in a few bytes, however long its history") {
    SeqWindow w;
    for (std::uint64_t s = 0; s <= 5000; ++s) admit(w, 1, s);
    CHECK(courtyard::schemas::to_text(w) == "v2 1 1 5000 0 -");
    CHECK(courtyard::schemas::seq_window_from_text(courtyard::schemas::to_text(w)) == w);
  }

  TEST_CASE("attack: a seq near 2^64 saturates the gaps instead of wrapping them") {
    SeqWindow w;
    admit(w, 1, 5);
    CHECK(admit(w, 1, UINT64_MAX) == Admission::Fresh);
    CHECK(admit(w, 1, 2) == Admission::Stale);
    CHECK(w.gaps == UINT64_MAX - 6);
    SeqWindow v = w;
    v.gaps = UINT64_MAX - 1;
    v.high = 10;
    CHECK(admit(v, 1, 20) == Admission::Fresh);
    CHECK(v.gaps == UINT64_MAX);
    CHECK(courtyard::schemas::seq_window_from_text(courtyard::schemas::to_text(w)) == w);
  }
}
