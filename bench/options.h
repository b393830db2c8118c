#pragma once
// The options every bench driver takes to reach the services bench/lib/stack.sh started.
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/kafka.h"
#include "common/mqtt.h"

namespace courtyard::bench {

// Kafka on `port`, signed in as `role` with the password scripts/services keeps beside the MQTT
// service password (the same secrets directory).
inline KafkaConfig kafka_as(const std::string& role, int port, const std::string& password_file) {
  KafkaConfig k;
  k.port = port;
  auto password = read_secret((std::filesystem::path(password_file).parent_path() / ("kafka-" + role)).string());
  if (!password) throw std::runtime_error(password.error());
  k.sasl_username = role;
  k.sasl_password = *password;
  return k;
}

// Args: any struct with mqtt_port, kafka_port, http_port, password_file and token.
template <class Args>
void add_service_options(CLI::App& app, Args& a) {
  app.add_option("--mqtt-port", a.mqtt_port, "Mosquitto");
  app.add_option("--kafka-port", a.kafka_port, "Kafka");
  app.add_option("--http-port", a.http_port, "the hub's API");
  app.add_option("--password-file", a.password_file, "Courtyard's service identity at the broker")->required();
  app.add_option("--token", a.token, "an admin token for the hub's API")->required();
}

// The load a bench of the event path offers, and the processes whose CPU it reports.
struct Load {
  double rate = 2000;
  double seconds = 20;
  std::size_t devices = 300;
  std::size_t raw_messages = 50000;
  std::vector<std::string> pids;  // name=pid of the processes whose CPU each step reports
};

inline void add_load_options(CLI::App& app, Load& a) {
  app.add_option("--rate", a.rate, "offered events/s (with --find-ceiling: the first step's)");
  app.add_option("--seconds", a.seconds, "how long (with --find-ceiling: each step)");
  app.add_option("--devices", a.devices, "fleet size");
  app.add_option("--raw-messages", a.raw_messages, "messages of the unpaced raw baseline");
  app.add_option("--pid", a.pids, "name=pid of a process whose CPU each step reports (repeatable)");
}

}  // namespace courtyard::bench
