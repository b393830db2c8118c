#pragma once
#include <algorithm>
#include <vector>

namespace courtyard::bench {

// The q-quantile (0..1) of samples: the nearest rank.
inline double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
}

}  // namespace courtyard::bench
