#pragma once
// Which (boot, seq) a device has sent: the highest seq of the current boot and a bitmap of the
// 1,024 seqs just below it, like an anti-replay window. Ingest keeps one per device and channel
// to drop a message the broker delivers again (its acknowledgement was lost with a crash); the
// devices projection keeps them to recognise whatever still arrives twice, accept late arrivals
// inside the window and count gaps.
//
// 1,024 and not 64: a Mosquitto crash redelivers what it saved up to `autosave_interval` (5 s)
// before, behind what the devices sent since; at 12 events/s a device is 60 seqs on by then, and
// a 64-wide window took an old repeat for a new event (the log held it twice). At the ~1 event/s
// of a real device the window spans a quarter of an hour. Stored as the ranges of seqs it has not
// seen, which are few: a window costs bytes, not the bitmap's 128.
#include <bitset>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace courtyard::schemas {

inline constexpr std::uint64_t kSeqWindowWidth = 1024;

struct SeqWindow {
  bool started = false;
  std::uint32_t boot = 0;
  std::uint64_t high = 0;                // highest seq seen in `boot`
  std::bitset<kSeqWindowWidth> seen;     // bit i set: seq high - i was seen
  std::uint64_t gaps = 0;                // seqs skipped and not (yet) filled, over all boots
  bool operator==(const SeqWindow&) const = default;
};

enum class Admission {
  Fresh,      // first time seen: fold it
  Duplicate,  // seen before: ignore
  Stale,      // older than the window or from an earlier boot: cannot tell, ignore and count
};

// Updates the window for (boot, seq) and says whether the event is new.
Admission admit(SeqWindow& window, std::uint32_t boot, std::uint64_t seq);

// The seqs inside the window (and not below 0) it has not seen, as [first, last] ranges in
// ascending order; and a window rebuilt from them (every other seq inside it counts as seen).
using SeqRanges = std::vector<std::pair<std::uint64_t, std::uint64_t>>;
SeqRanges unseen(const SeqWindow& window);
void set_unseen(SeqWindow& window, const SeqRanges& ranges);
// The seqs the 64-wide bitmap written before marked as seen (bit i: high - i); what lies beyond
// it was never known and counts as unseen.
void set_seen_from_64(SeqWindow& window, std::uint64_t bits);

// The window as a short text (ingest keeps it in its spool) and back; nullopt for anything else.
// Reads the 64-wide form written before too.
std::string to_text(const SeqWindow& window);
std::optional<SeqWindow> seq_window_from_text(const std::string& text);

}  // namespace courtyard::schemas
