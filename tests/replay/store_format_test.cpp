// The hub's store-format check before anything reaches Kafka (decision 0021): what it leaves alone,
// and what it refuses while keeping the old store as it was. (The rebuild itself, on the real log:
// tests/integration/store_format_test.cpp.)
#include <doctest/doctest.h>

#include <filesystem>

#include "processors/projector.h"
#include "processors/store.h"
#include "replay/replay.h"
#include "temp_dir.h"

using namespace courtyard;
using processors::Projector;

namespace {

replay::RebuildConfig no_broker(const std::string& dir) {
  replay::RebuildConfig config;
  config.kafka.port = 1;  // nothing listens: reaching for the log would fail
  config.timeout = std::chrono::milliseconds(500);
  config.dir = dir;
  return config;
}

}  // namespace

TEST_SUITE("replay: store format") {
  TEST_CASE("no store, or a store of this format, is left as it is without reading the log") {
    test::TempDir dir;
    const std::string state = dir.str("state");
    auto none = replay::ensure_store_format(no_broker(state));
    REQUIRE(none);
    CHECK_FALSE(*none);
    {
      processors::StoreConfig config;
      config.dir = state;
      auto store = processors::Store::open(config);
      REQUIRE(store);
      Projector marks(**store, {});
      REQUIRE((*store)->write({{"devices/d-1", "{}"}}, {{{"courtyard.events.v1", 0}, 5}}));
    }
    auto current = replay::ensure_store_format(no_broker(state));
    REQUIRE(current);
    CHECK_FALSE(*current);
  }

  TEST_CASE("attack: an unsent outbox entry in a form this version does not send is refused, and the old store kept") {
    test::TempDir dir;
    const std::string state = dir.str("state");
    {
      processors::StoreConfig config;
      config.dir = state;
      auto store = processors::Store::open(config);
      REQUIRE(store);
      // Another version's store: no marker, a record, and an outbox entry of another shape.
      REQUIRE((*store)->write({{"devices/d-1", R"({"community":"c1"})"},
                               {std::string(Projector::kOutboxPrefix) + "00000000000000000007", R"({"to":"alerts","body":1})"}},
                              {{{"courtyard.events.v1", 0}, 5}}));
    }
    auto refused = replay::ensure_store_format(no_broker(state));
    REQUIRE_FALSE(refused);
    CHECK(refused.error().find("is not one this version sends") != std::string::npos);
    processors::StoreConfig config;
    config.dir = state;
    config.read_only = true;
    auto store = processors::Store::open(config);
    REQUIRE(store);
    CHECK(Projector::store_format((*store)->view()) == 0u);
    CHECK((*store)->view().get("devices/d-1") == R"({"community":"c1"})");
    CHECK_FALSE(std::filesystem::exists(state + ".rebuilding"));
  }
}
