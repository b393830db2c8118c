#include "processors/time_buckets.h"

#include <chrono>

#include <fmt/format.h>

namespace courtyard::processors {
namespace {

struct Civil {
  int year;
  unsigned month, day;
  long hour;
};

Civil civil(std::int64_t ms, int utc_offset_min) {
  using namespace std::chrono;
  sys_time<milliseconds> t{milliseconds(ms + std::int64_t{utc_offset_min} * 60'000)};
  auto days = floor<std::chrono::days>(t);
  year_month_day ymd{days};
  auto hour = duration_cast<hours>(t - days).count();
  return {static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()), hour};
}

}  // namespace

std::string hour_key(std::int64_t ms, int utc_offset_min) {
  auto c = civil(ms, utc_offset_min);
  return fmt::format("{:04}-{:02}-{:02}T{:02}", c.year, c.month, c.day, c.hour);
}

std::string day_key(std::int64_t ms, int utc_offset_min) {
  auto c = civil(ms, utc_offset_min);
  return fmt::format("{:04}-{:02}-{:02}", c.year, c.month, c.day);
}

}  // namespace courtyard::processors
