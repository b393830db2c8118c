#pragma once
// The community simulator: a mixed fleet of gates, vehicle gates, doors, cameras, meters, home
// sensors and wearables, provisioned like real devices and publishing over real MQTT (QoS 1,
// one connection each). It can mix in bad payloads of every rejection kind, and reports exactly
// what it sent so tests can check every event landed once.
// Lifecycle: construct, provision(), run() on one thread; stop early with the stop token.
#include <chrono>
#include <cstdint>
#include <expected>
#include <map>
#include <memory>
#include <stop_token>
#include <string>
#include <vector>

#include "common/kafka.h"
#include "common/mqtt.h"
#include "schemas/registry.h"

namespace courtyard::devices {

struct SimulatorConfig {
  KafkaConfig kafka;
  MqttConfig mqtt;
  std::string mqtt_password;             // Courtyard's service identity, to provision the fleet
  std::vector<std::string> communities = {"sunny-garden"};  // devices are spread over these
  std::string id_prefix;                 // prepended to every device id (tests use a unique one)
  std::size_t devices = 300;             // fleet size
  double rate = 200;                     // events per second, whole fleet
  double duration_s = 0;                 // stop after this long (0: no limit)
  std::uint64_t events = 0;              // stop after this many payloads (0: no limit)
  double bad_fraction = 0;               // share of payloads that are deliberately invalid
  double flatbuffer_fraction = 0.1;      // share of valid payloads sent as FlatBuffers
  std::uint64_t seed = 1;                // the same seed sends the same fleet the same events
  // Boot number the devices report. 0: seconds since 2020-01-01 at the start of the run, so a
  // restarted simulator looks like restarted devices (a new boot) and its seqs count afresh.
  std::uint32_t boot = 0;
  // Incidents injected once at the start of the run, one device each:
  // fever, fall, sos, leak, smoke, gas, spo2, battery, tamper, door, offline (a meter falls silent).
  std::vector<std::string> anomalies;
  // Gate scenes per minute, whole fleet: a pass at a gate, then the snapshot of the camera over
  // it (camera n watches pedestrian gate n when n is odd, vehicle gate n when even). Pedestrian
  // scenes are OpenCV's sample photographs (one person; one scene in five two people behind one
  // pass, i.e. tailgating); vehicle scenes are rendered plates (one in eight not the plate the
  // gate let in). 0: cameras send heartbeats only.
  double scenes_per_minute = 0;
  std::string photos_dir = "/usr/share/doc/opencv-doc/examples/data";  // Debian's opencv-doc
  std::string plate_key;  // key of plate tokens (the hub's); empty: scenes' vehicle passes use the text's digest
};

// The anomalies the simulator knows.
const std::vector<std::string>& known_anomalies();

struct SimDevice {
  schemas::Registration registration;
  std::string password;
};

struct SentBad {
  std::string device;
  std::string topic;
  std::string payload;
  std::string reason;  // the rejection reason ingest must give
};

struct SimReport {
  std::uint64_t sent = 0;     // payloads published
  std::uint64_t acked = 0;    // acknowledged by the broker
  std::uint64_t refused = 0;  // refused by the broker (PUBACK reason >= 128)
  double seconds = 0;
  // Valid events sent, per device and type: what the devices projection must count.
  std::map<std::string, std::map<std::string, std::uint64_t>> valid;
  std::vector<SentBad> bad;
  std::vector<std::string> injected;  // "anomaly: device" for each incident injected
  std::uint64_t scenes = 0, tailgating_scenes = 0, plate_mismatch_scenes = 0;
  // Publish time (steady clock, ns) of each valid event by "device/boot/seq" when latency is tracked.
  std::map<std::string, std::int64_t> publish_ns;
};

class Simulator {
 public:
  explicit Simulator(SimulatorConfig config);
  ~Simulator();
  const std::vector<SimDevice>& fleet() const { return fleet_; }
  // Registers every device and creates its broker credentials.
  std::expected<void, std::string> provision();
  // Connects the fleet and publishes until a limit is reached or `stop` fires; waits for every PUBACK.
  std::expected<SimReport, std::string> run(std::stop_token stop, bool track_latency = false);

 private:
  SimulatorConfig config_;
  std::vector<SimDevice> fleet_;
};

}  // namespace courtyard::devices
