#include "common/event_ids.h"

#include <chrono>

namespace courtyard {

EventIdClock::Stamp EventIdClock::next() {
  std::int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
  std::lock_guard lock(mu_);
  if (now > last_ms_) {
    last_ms_ = now;
    counter_ = 0;
  } else if (++counter_ >= 4096) {  // more than 4096 in one ms: borrow the next one
    ++last_ms_;
    counter_ = 0;
  }
  return {(static_cast<std::uint64_t>(last_ms_) << 20) | (static_cast<std::uint64_t>(instance_) << 12) | counter_,
          last_ms_};
}

}  // namespace courtyard
