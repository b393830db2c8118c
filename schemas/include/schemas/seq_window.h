#pragma once
// Which (boot, seq) a device has sent: the highest seq of the current boot and a 64-wide bitmap of
// the seqs just below it, like an anti-replay window. Ingest keeps one per device to drop a
// message the broker delivers again (its acknowledgement was lost with a crash); the devices
// projection keeps one to recognise whatever still arrives twice, accept late arrivals inside the
// window and count gaps.
#include <cstdint>
#include <optional>
#include <string>

namespace courtyard::schemas {

struct SeqWindow {
  bool started = false;
  std::uint32_t boot = 0;
  std::uint64_t high = 0;  // highest seq seen in `boot`
  std::uint64_t bits = 0;  // bit i set: seq high - i was seen
  std::uint64_t gaps = 0;  // seqs skipped and not (yet) filled, over all boots
  bool operator==(const SeqWindow&) const = default;
};

enum class Admission {
  Fresh,      // first time seen: fold it
  Duplicate,  // seen before: ignore
  Stale,      // older than the window or from an earlier boot: cannot tell, ignore and count
};

// Updates the window for (boot, seq) and says whether the event is new.
Admission admit(SeqWindow& window, std::uint32_t boot, std::uint64_t seq);

// The window as a short text (ingest keeps it in its spool) and back; nullopt for anything else.
std::string to_text(const SeqWindow& window);
std::optional<SeqWindow> seq_window_from_text(const std::string& text);

}  // namespace courtyard::schemas
