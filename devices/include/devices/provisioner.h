#pragma once
// Provisioning: makes a device known to Courtyard and to the broker, in that order.
//  1. its registration goes to courtyard.registry.v1 (acks=all, waited for), from which ingest
//     learns it and appends `device.registered` to the community's stream;
//  2. its MQTT client and role are created through Mosquitto's dynamic-security plugin: the role
//     allows publishing only to courtyard/v1/{community}/{device}/telemetry and subscribing only
//     to its own cmd and errors topics and the community's notices.
// Because the registration is durable before the device can connect, ingest never sees a message
// from a device it cannot look up. Re-adding a device resets its password. Not thread-safe.
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

class Provisioner {
 public:
  static std::expected<std::unique_ptr<Provisioner>, std::string> connect(const ProvisionerConfig& config);
  ~Provisioner();
  // Registers the devices and creates their broker credentials; returns each device's password.
  std::expected<std::vector<std::string>, std::string> add(std::span<const NewDevice> devices);

 private:
  explicit Provisioner(ProvisionerConfig config);
  ProvisionerConfig config_;
  std::unique_ptr<MqttClient> admin_;
};

// The MQTT topics a device may use.
std::string telemetry_topic(const schemas::Registration& r);
std::string snapshot_topic(const schemas::Registration& r);  // cameras only

}  // namespace courtyard::devices
