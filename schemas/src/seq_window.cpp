#include "schemas/seq_window.h"

#include <cstdio>
#include <cinttypes>

namespace courtyard::schemas {

Admission admit(SeqWindow& w, std::uint32_t boot, std::uint64_t seq) {
  if (!w.started || boot > w.boot) {
    // A new boot restarts the sequence; what the previous boot never delivered stays counted.
    w.started = true;
    w.boot = boot;
    w.high = seq;
    w.bits = 1;
    return Admission::Fresh;
  }
  if (boot < w.boot) return Admission::Stale;
  if (seq > w.high) {
    std::uint64_t shift = seq - w.high;
    w.gaps += shift - 1;
    w.bits = shift >= 64 ? 1 : (w.bits << shift) | 1;
    w.high = seq;
    return Admission::Fresh;
  }
  std::uint64_t age = w.high - seq;
  if (age >= 64) return Admission::Stale;
  std::uint64_t bit = std::uint64_t{1} << age;
  if (w.bits & bit) return Admission::Duplicate;
  w.bits |= bit;  // a late arrival fills a gap counted earlier
  if (w.gaps > 0) --w.gaps;
  return Admission::Fresh;
}

std::string to_text(const SeqWindow& w) {
  char out[96];
  std::snprintf(out, sizeof out, "%d %" PRIu32 " %" PRIu64 " %" PRIx64 " %" PRIu64, w.started ? 1 : 0, w.boot, w.high, w.bits, w.gaps);
  return out;
}

std::optional<SeqWindow> seq_window_from_text(const std::string& text) {
  SeqWindow w;
  int started = 0;
  if (std::sscanf(text.c_str(), "%d %" SCNu32 " %" SCNu64 " %" SCNx64 " %" SCNu64, &started, &w.boot, &w.high, &w.bits, &w.gaps) != 5) {
    return std::nullopt;
  }
  w.started = started != 0;
  return w;
}

}  // namespace courtyard::schemas
