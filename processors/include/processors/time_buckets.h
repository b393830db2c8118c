#pragma once
// Calendar buckets for projections: the hour and the day an instant falls in, in a community's
// local time (a fixed UTC offset), as sortable text keys ("2026-11-29T13", "2026-11-29").
#include <cstdint>
#include <map>
#include <string>

namespace courtyard::processors {

std::string hour_key(std::int64_t ms, int utc_offset_min);
std::string day_key(std::int64_t ms, int utc_offset_min);

// Keeps only the `keep` latest buckets of a map keyed by sortable time text.
template <class V>
void keep_latest(std::map<std::string, V>& buckets, std::size_t keep) {
  while (buckets.size() > keep) buckets.erase(buckets.begin());
}

}  // namespace courtyard::processors
