#pragma once
// A device's registration as written to courtyard.registry.v1 (key: device id, compacted) by the
// provisioner and read by ingest, which then appends `device.registered` to the community's stream.
#include <cstdint>
#include <expected>
#include <string>

#include "common/ids.h"
#include "schemas/event.h"

namespace courtyard::schemas {

struct Registration {
  DeviceId device;
  CommunityId community;
  DeviceKind kind = DeviceKind::Gate;
  std::string unit;      // household, may be empty
  std::string location;  // free text for staff
  std::int64_t registered_at_ms = 0;
  bool operator==(const Registration&) const = default;
};

std::string to_json_string(const Registration& registration);
std::expected<Registration, std::string> parse_registration(std::string_view json);

// The event ingest appends for a registration.
Event registered_event(const Registration& registration);

// A licence plate as Courtyard stores it: "plate-" and 16 hex digits of HMAC-SHA256(key, the
// plate without separators, Latin letters in upper case). Registry, vehicle gates and the vision processor use
// the same key, so one plate is one token; without the key a token says nothing about the plate.
std::string plate_token(std::string_view key, std::string_view plate);

// The "seq" of a device payload if one can be read at all (for error replies to rejected payloads).
std::optional<std::uint64_t> best_effort_seq(std::string_view payload);

}  // namespace courtyard::schemas
