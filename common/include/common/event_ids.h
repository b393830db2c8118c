#pragma once
// Event ids for the log: milliseconds << 20 | writer instance << 12 | counter. Unique per writer
// instance (0..255; the hub is 255), strictly increasing, roughly time-ordered across writers.
// Thread-safe.
#include <cstdint>
#include <mutex>

namespace courtyard {

class EventIdClock {
 public:
  explicit EventIdClock(unsigned instance) : instance_(instance & 0xff) {}
  struct Stamp {
    std::uint64_t id;
    std::int64_t ms;  // the writer's time for the event (never earlier than the previous one)
  };
  Stamp next();

 private:
  std::mutex mu_;
  unsigned instance_;
  std::int64_t last_ms_ = 0;
  std::uint64_t counter_ = 0;
};

}  // namespace courtyard
