#pragma once
// A store of its own for processor tests.
#include <doctest/doctest.h>

#include <memory>

#include "processors/store.h"
#include "temp_dir.h"

namespace courtyard::test {

// Opens a store in `dir`'s "state" folder; the test fails here if it cannot.
inline std::unique_ptr<processors::Store> open_store(const TempDir& dir) {
  processors::StoreConfig config;
  config.dir = dir.str("state");
  auto store = processors::Store::open(config);
  REQUIRE(store);
  return std::move(*store);
}

}  // namespace courtyard::test
