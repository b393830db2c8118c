#pragma once
// Provisioning: makes a device known to the broker and to Courtyard.
//  1. its MQTT client is created through Mosquitto's dynamic-security plugin, bound to the client
//     id that is its device id and with no role yet: creating it is the claim on the id (a second
//     claim fails), and until step 3 it can neither publish nor receive anything;
//  2. its registration goes to courtyard.registry.v1 (acks=all, waited for), from which ingest
//     learns it and appends `device.registered` to the community's stream;
//  3. its role is created and given: publish only to courtyard/v1/{community}/{device}/telemetry
//     (and .../snapshot, cameras), subscribe to and receive only its own cmd and errors topics,
//     the community's notices and its household's (courtyard/v1/{community}/notices/{unit}).
// So the registration is durable before the device can send, and ingest never sees a message
// from a device it cannot look up. Every response of the plugin is checked.
//
// An id that exists is a conflict: nothing is written. Rotating credentials is a separate, explicit
// request (IfExists::Rotate), and only for a client that is a device of the same community;
// Courtyard's own accounts (courtyard-service, admin) and reserved ids are never touched. Not thread-safe.
#include <expected>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/kafka.h"
#include "common/mqtt.h"
#include "schemas/registry.h"

namespace courtyard::devices {

struct ProvisionerConfig {
  KafkaConfig kafka;
  MqttConfig mqtt;
  std::string mqtt_password;  // for mqtt.username, which must be allowed $CONTROL/dynamic-security
};

struct NewDevice {
  schemas::Registration registration;
  std::string password;  // empty: generate one
};

// Why provisioning refused or failed.
struct ProvisionError {
  enum class Code {
    Invalid,      // an id that is not 1..64 of [A-Za-z0-9_.-]
    Reserved,     // an id Courtyard keeps for itself (courtyard-*, admin, operator, registry, _*)
    Conflict,     // the id exists (IfExists::Refuse), or exists as something else (IfExists::Rotate)
    Unavailable,  // the broker or Kafka did not do what was asked
  };
  Code code;
  std::string detail;
};

enum class IfExists {
  Refuse,  // an existing id is a Conflict
  Rotate,  // an existing device of the same community gets the new password and its role afresh
};

// Ids no device may have: Courtyard's own accounts and the writers of its own events.
bool reserved_device_id(std::string_view id);

class Provisioner {
 public:
  static std::expected<std::unique_ptr<Provisioner>, std::string> connect(const ProvisionerConfig& config);
  ~Provisioner();
  // Creates (or, with Rotate, re-keys) the devices' broker credentials and registers them;
  // returns each device's password, in order. On an error nothing of a refused device is kept.
  std::expected<std::vector<std::string>, ProvisionError> add(std::span<const NewDevice> devices,
                                                              IfExists if_exists = IfExists::Refuse);

 private:
  explicit Provisioner(ProvisionerConfig config);
  ProvisionerConfig config_;
  std::unique_ptr<MqttClient> admin_;
};

// The MQTT topics a device may use.
std::string telemetry_topic(const schemas::Registration& r);
std::string snapshot_topic(const schemas::Registration& r);  // cameras only

}  // namespace courtyard::devices
