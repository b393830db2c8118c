#pragma once
// Plausible payloads for each kind of device, and deliberately bad ones. Deterministic per seed.
#include <cstdint>
#include <optional>
#include <random>
#include <string>

#include "devices/simulator.h"

namespace courtyard::devices {

enum class BadKind { Malformed, OutOfRange, UnknownType, MissingField, TooLarge, FailedVerification, TypeNotAllowed };
inline constexpr int kBadKinds = 7;

struct DeviceCursor {
  std::uint32_t boot = 1;
  std::uint64_t next_seq = 1;
  double meter_total = 0;
};

struct Payload {
  std::string bytes;
  std::string type;    // valid payloads: the event type
  std::string reason;  // bad payloads: the rejection reason expected
  std::uint64_t seq = 0;
};

class Generator {
 public:
  explicit Generator(std::uint64_t seed) : rng_(seed) {}
  // The next valid event of this device; consumes a seq.
  Payload valid(const schemas::Registration& device, DeviceCursor& cursor, std::int64_t now_ms, bool flatbuffer);
  // A bad payload; does not consume a seq (ingest never accepts it).
  Payload bad(const schemas::Registration& device, const DeviceCursor& cursor, std::int64_t now_ms, BadKind kind);
  double uniform() { return std::uniform_real_distribution<double>(0, 1)(rng_); }
  std::size_t pick(std::size_t n) { return static_cast<std::size_t>(rng_() % n); }
  // A heartbeat only: what a device in the middle of an incident keeps sending.
  Payload heartbeat(const schemas::Registration& device, DeviceCursor& cursor, std::int64_t now_ms);

 private:
  schemas::Body body_for(const schemas::Registration& device, DeviceCursor& cursor);
  std::mt19937_64 rng_;
};

// The one sensor a home-sensor device carries (fixed per device).
schemas::SensorKind sensor_of(const schemas::Registration& device);

// A valid event as a device publishes it in JSON.
std::string payload_json(const schemas::Event& event);

// The fleet of a community simulation: kinds in fixed proportions, ids "<prefix><community>-<kind>-<n>".
std::vector<schemas::Registration> make_fleet(const SimulatorConfig& config, std::int64_t now_ms);

}  // namespace courtyard::devices
