#include <doctest/doctest.h>

#include <string>
#include <thread>
#include <vector>

#include "common/handoff.h"

using namespace courtyard;

TEST_SUITE("common handoff") {
  TEST_CASE("items come out in the order they went in, then nothing once closed") {
    Handoff<std::string> queue(4);
    CHECK(queue.push("a"));
    CHECK(queue.push("b"));
    queue.close();
    CHECK(queue.pop() == "a");
    CHECK(queue.pop() == "b");
    CHECK_FALSE(queue.pop().has_value());
  }

  TEST_CASE("a closed handoff takes nothing more") {
    Handoff<int> queue(4);
    queue.close();
    CHECK_FALSE(queue.push(1));
    CHECK_FALSE(queue.pop().has_value());
  }

  TEST_CASE("a producer waiting on a full handoff is let go when the consumer closes it") {
    Handoff<int> queue(1);
    REQUIRE(queue.push(1));
    bool taken = true;
    std::thread producer([&] { taken = queue.push(2); });  // full: waits, or finds it closed
    queue.close();
    producer.join();
    CHECK_FALSE(taken);
    CHECK(queue.pop() == 1);  // what was in it is still handed out
    CHECK_FALSE(queue.pop().has_value());
  }

  TEST_CASE("a consumer waiting on an empty handoff gets everything a producer hands over, then the end") {
    Handoff<int> queue(2);  // smaller than what passes through: the producer waits on the consumer
    std::thread producer([&] {
      for (int i = 0; i < 1000; ++i) queue.push(i);
      queue.close();
    });
    std::vector<int> got;
    while (auto item = queue.pop()) got.push_back(*item);
    producer.join();
    REQUIRE(got.size() == 1000);
    for (int i = 0; i < 1000; ++i) CHECK(got[static_cast<std::size_t>(i)] == i);
  }
}

TEST_SUITE("common handoff") {
  TEST_CASE("a push that cannot wait leaves the item with its owner when the handoff is full or closed") {
    Handoff<std::string> queue(1);
    std::string first = "first", second = "second";
    CHECK(queue.push_for(first, std::chrono::milliseconds(0)) == Handoff<std::string>::Pushed::Taken);
    CHECK(queue.push_for(second, std::chrono::milliseconds(0)) == Handoff<std::string>::Pushed::Full);
    CHECK(second == "second");  // still ours, to try again
    CHECK(queue.pop() == "first");
    CHECK(queue.push_for(second, std::chrono::milliseconds(0)) == Handoff<std::string>::Pushed::Taken);
    queue.close();
    std::string third = "third";
    CHECK(queue.push_for(third, std::chrono::milliseconds(0)) == Handoff<std::string>::Pushed::Closed);
    CHECK(third == "third");
    CHECK(queue.pop() == "second");
  }
}
