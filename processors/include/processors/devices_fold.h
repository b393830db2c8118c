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
#include "schemas/seq_window.h"

namespace courtyard::processors {

// The duplicate gate of the log (schemas/seq_window.h): ingest drops a redelivered message with
// it, and this fold recognises what still arrives twice.
using schemas::Admission;
using schemas::SeqWindow;
using schemas::admit;

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
  // Over all the device's channels: a camera's snapshots and telemetry share one seq counter and
  // reach ingest over two MQTT sessions, whose drift the window's 1,024 seqs span.
  SeqWindow window;
  bool operator==(const DeviceState&) const = default;
};

struct DeviceStep {
  DeviceState state;
  Admission admission;
};

DeviceStep apply(DeviceState state, const schemas::Event& event);

nlohmann::json to_json(const DeviceState& state);
// The stored record (processors/record.h): binary, rendered it is to_json(state).dump().
std::string to_record(const DeviceState& state);
DeviceState device_state_from_json(const nlohmann::json& j);

}  // namespace courtyard::processors
