// The hub's memory of answers to keyed POSTs: what it replays, what it refuses, and its bounds.
#include <doctest/doctest.h>

#include "idempotency.h"

using namespace courtyard;
using hub::IdempotencyCache;

namespace {

hub::HttpResponse answer(int status, const std::string& body) { return {status, "application/json", body, {}}; }

}  // namespace

TEST_SUITE("hub idempotency cache") {
  TEST_CASE("a settled answer is replayed to the same token for the same request, and to no other token") {
    IdempotencyCache cache;
    REQUIRE(cache.claim("tok-a", "k", "POST /x\nabc", 0).outcome == IdempotencyCache::Outcome::Fresh);
    CHECK(cache.claim("tok-a", "k", "POST /x\nabc", 1).outcome == IdempotencyCache::Outcome::InProgress);
    cache.complete("tok-a", "k", answer(202, "first"));
    auto again = cache.claim("tok-a", "k", "POST /x\nabc", 2);
    REQUIRE(again.outcome == IdempotencyCache::Outcome::Replay);
    CHECK(again.response->body == "first");
    CHECK(cache.claim("tok-a", "k", "POST /x\nother", 3).outcome == IdempotencyCache::Outcome::OtherRequest);
    CHECK(cache.claim("tok-b", "k", "POST /x\nabc", 4).outcome == IdempotencyCache::Outcome::Fresh);  // keys are per token
  }

  TEST_CASE("answers expire after the time to live, and the oldest settled ones go first past the bound") {
    IdempotencyCache cache({.max_entries = 3, .ttl = std::chrono::milliseconds(1000)});
    for (int i = 0; i < 3; ++i) {
      REQUIRE(cache.claim("t", "k" + std::to_string(i), "f", i).outcome == IdempotencyCache::Outcome::Fresh);
      cache.complete("t", "k" + std::to_string(i), answer(202, std::to_string(i)));
    }
    REQUIRE(cache.claim("t", "k3", "f", 10).outcome == IdempotencyCache::Outcome::Fresh);
    CHECK(cache.size() == 3);
    CHECK(cache.claim("t", "k0", "f", 11).outcome == IdempotencyCache::Outcome::Fresh);  // evicted: runs again
    CHECK(cache.claim("t", "k3", "f", 5000).outcome == IdempotencyCache::Outcome::Fresh);  // past its day
  }

  TEST_CASE("attack: a flood of keys never drops a claim still being answered, so it cannot make it run twice") {
    IdempotencyCache cache({.max_entries = 2, .ttl = std::chrono::hours(1)});
    REQUIRE(cache.claim("victim", "slow", "f", 0).outcome == IdempotencyCache::Outcome::Fresh);  // in progress
    for (int i = 0; i < 100; ++i) {
      auto c = cache.claim("flooder", "k" + std::to_string(i), "f", 1);
      if (c.outcome == IdempotencyCache::Outcome::Fresh) cache.complete("flooder", "k" + std::to_string(i), answer(202, ""));
    }
    CHECK(cache.claim("victim", "slow", "f", 2).outcome == IdempotencyCache::Outcome::InProgress);
    CHECK(cache.size() <= 3);  // and the flood's own answers stay bounded around it
  }

  TEST_CASE("keys are 1..128 printable ASCII characters") {
    CHECK(IdempotencyCache::valid_key("3f2a-uuid"));
    CHECK_FALSE(IdempotencyCache::valid_key(""));
    CHECK_FALSE(IdempotencyCache::valid_key(std::string(129, 'a')));
    CHECK_FALSE(IdempotencyCache::valid_key("a b"));
    CHECK_FALSE(IdempotencyCache::valid_key("caf\xc3\xa9"));
  }
}
