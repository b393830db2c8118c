#pragma once
// The admission rule for one MQTT message: decode, range-check, and check it against the registry.
// Pure: no I/O. The Bridge calls it for every message; tests call it with payload files.
#include <expected>
#include <functional>
#include <optional>
#include <string_view>

#include "schemas/event.h"
#include "schemas/registry.h"

namespace courtyard::ingest {

// Looks a device up; nullopt when it is not registered.
using RegistryLookup = std::function<std::optional<schemas::Registration>(const DeviceId&)>;

// Accepts telemetry on courtyard/v1/{community}/{device}/telemetry from a registered device of a
// kind that may send that type; anything else is a Rejection naming the reason.
std::expected<schemas::Event, schemas::Rejection> admit(std::string_view topic, std::string_view payload,
                                                        const RegistryLookup& lookup,
                                                        const schemas::Limits& limits = {});

}  // namespace courtyard::ingest
