#pragma once
// The `devices` projection: one state per device, folded from the events of the log.
// Pure and deterministic: time comes from the events (ingest time), never from a clock.
// It is also the gatekeeper for duplicates: every later fold sees an event only when this one
// admitted it as Fresh.
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "schemas/event.h"

namespace courtyard::processors {

// Which (boot, seq) a device has sent: the highest seq of the current boot and a 64-wide bitmap of
// the seqs just below it, like an anti-replay window. Recognises duplicates from MQTT redelivery
// and ingest restarts, accepts late arrivals inside the window, and counts gaps.
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

struct DeviceState {
  bool registered = false;
  std::string community;
  std::string kind;
  std::string unit;
  std::string location;
  std::int64_t registered_at_ms = 0;
  std::int64_t first_seen_ms = 0;   // ingest time of the first event
  std::int64_t last_seen_ms = 0;    // ingest time of the latest event
  std::int64_t last_device_time_ms = 0;
  std::uint64_t events = 0;         // device events admitted (registrations excluded)
  std::uint64_t duplicates = 0;
  std::uint64_t stale = 0;
  std::map<std::string, std::uint64_t> counts;  // admitted events per type
  std::map<std::string, nlohmann::json> last;   // per type: {boot, seq, ts, body} of the latest
  std::optional<double> battery_pct;
  std::optional<bool> tamper;
  std::string firmware;
  bool online = true;               // false while an offline alert is open (set from the alerts fold)
  SeqWindow window;
  bool operator==(const DeviceState&) const = default;
};

struct DeviceStep {
  DeviceState state;
  Admission admission;
};

DeviceStep apply(DeviceState state, const schemas::Event& event);

nlohmann::json to_json(const DeviceState& state);
DeviceState device_state_from_json(const nlohmann::json& j);

}  // namespace courtyard::processors
