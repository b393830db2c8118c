#include <doctest/doctest.h>

#include <atomic>
#include <stdexcept>

#include "loops.h"

using namespace courtyard;

TEST_SUITE("hub loops") {
  TEST_CASE("a loop that throws stops every other loop, and its failure is the one rethrown") {
    std::stop_source stopping;
    hub::Loops loops(stopping);
    std::atomic<bool> other_stopped{false};
    auto other = loops.start("the other loop", [&] {
      while (!stopping.stop_requested()) std::this_thread::yield();
      other_stopped = true;
    });
    auto failing = loops.start("the failing loop", [] { throw std::runtime_error("the store cannot be written"); });
    failing.join();
    other.join();
    CHECK(other_stopped);
    CHECK_THROWS_WITH(loops.rethrow_first(), "the store cannot be written");
  }

  TEST_CASE("a loop that returns stops the others too, and nothing is rethrown") {
    std::stop_source stopping;
    hub::Loops loops(stopping);
    auto other = loops.start("waiting", [&] {
      while (!stopping.stop_requested()) std::this_thread::yield();
    });
    auto done = [] {};
    loops.guard("a loop that ended", done);
    other.join();
    CHECK(stopping.stop_requested());
    CHECK_NOTHROW(loops.rethrow_first());
  }
}
