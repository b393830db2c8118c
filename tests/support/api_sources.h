#pragma once
// The sources of an API under test: a store and a token file, a hub that is healthy, folds
// nothing (no lag, no stats) and has no Kafka until a test gives it an `append`.
#include "hub/api.h"

namespace courtyard::test {

inline hub::ApiSources api_sources(const processors::Store* store, const hub::TokenStore* tokens) {
  hub::ApiSources sources;
  sources.store = store;
  sources.freshness = [] { return processors::Freshness{}; };
  sources.runner_stats = [] { return processors::RunnerStats{}; };
  sources.healthy = [] { return true; };
  sources.tokens = tokens;
  return sources;
}

}  // namespace courtyard::test
