#pragma once
// Reading the hub's /metrics and projections from the bench drivers, and percentiles.
#include <algorithm>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "http_client.h"
#include "percentile.h"

namespace courtyard::bench {

// Bucket bounds (without +Inf) and per-bucket counts (not cumulative) of histogram `name`.
inline std::pair<std::vector<double>, std::vector<std::uint64_t>> scrape_histogram(int port, const std::string& token,
                                                                                   const std::string& name) {
  std::istringstream in(test::http_get_text(port, "/metrics", token));
  std::vector<double> bounds;
  std::vector<std::uint64_t> cumulative;
  const std::string prefix = name + "_bucket{le=\"";
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with(prefix)) continue;
    auto le = line.substr(prefix.size(), line.find('"', prefix.size()) - prefix.size());
    if (le != "+Inf") bounds.push_back(std::stod(le));
    cumulative.push_back(std::stoull(line.substr(line.rfind(' ') + 1)));
  }
  std::vector<std::uint64_t> counts(cumulative.size());
  for (std::size_t i = 0; i < cumulative.size(); ++i) counts[i] = cumulative[i] - (i ? cumulative[i - 1] : 0);
  return {bounds, counts};
}

// Per-bucket counts observed between two scrapes of the same histogram.
inline std::vector<std::uint64_t> between(const std::vector<std::uint64_t>& before, const std::vector<std::uint64_t>& after) {
  std::vector<std::uint64_t> delta(after.size());
  for (std::size_t i = 0; i < after.size(); ++i) delta[i] = after[i] - (i < before.size() ? before[i] : 0);
  return delta;
}

// Events folded into the devices projection of these communities (every page of it).
inline std::uint64_t projected_events(int port, const std::string& token, const std::vector<std::string>& communities) {
  std::uint64_t n = 0;
  for (const auto& c : communities) {
    std::string after;
    for (;;) {
      auto r = test::http_get("127.0.0.1", port,
                              "/api/v1/devices?limit=1000&community=" + c + (after.empty() ? "" : "&after=" + after), token);
      if (!r || r->status != 200) return n;
      const auto page = nlohmann::json::parse(r->body);
      for (const auto& d : page["items"]) n += d["events"].get<std::uint64_t>();
      if (page["next"].is_null()) break;
      after = page["next"].get<std::string>();
    }
  }
  return n;
}

}  // namespace courtyard::bench
