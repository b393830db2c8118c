#pragma once
// The peer baseline every bench of the event path prints beside its own figures: Mosquitto alone,
// one publisher and one subscriber at QoS 1 with ~200-byte payloads, on the same machine in the
// same run.
#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "common/mqtt.h"
#include "percentile.h"

namespace courtyard::bench {

struct RawResult {
  double rate = 0, p50_ms = 0, p99_ms = 0;
};

// `n` messages at `rate` per second (0: as fast as the broker takes them), signed in as the
// service; each payload carries its send time, so the subscriber measures pub -> sub latency.
inline RawResult raw_mosquitto(int mqtt_port, const std::string& password, std::size_t n, double rate) {
  using Clock = std::chrono::steady_clock;
  using namespace std::chrono_literals;
  MqttClient::Options o;
  o.username = "courtyard-service";
  o.password = password;
  std::mutex mu;
  std::vector<double> latencies;
  latencies.reserve(n);
  std::atomic<std::size_t> received{0};
  MqttClient::Options so = o;
  so.handler = [&](const MqttMessage& m) {
    auto sent = std::stoll(m.payload.substr(0, m.payload.find(' ')));
    double ms = static_cast<double>(Clock::now().time_since_epoch().count() - sent) / 1e6;
    std::lock_guard lock(mu);
    latencies.push_back(ms);
    ++received;
    return Delivery::Taken;
  };
  auto sub = MqttClient::connect("127.0.0.1", mqtt_port, so, 10s);
  auto pub = MqttClient::connect("127.0.0.1", mqtt_port, o, 10s);
  if (!sub || !pub) throw std::runtime_error("raw bench: cannot connect");
  std::string topic = "courtyard/bench/raw-" + std::to_string(::getpid());
  if (!(*sub)->subscribe(topic, 1, 10s)) throw std::runtime_error("raw bench: subscribe failed");
  std::string pad(180, 'x');
  auto start = Clock::now();
  for (std::size_t i = 0; i < n; ++i) {
    if (rate > 0) {
      std::this_thread::sleep_until(start + std::chrono::nanoseconds(static_cast<std::int64_t>(1e9 * static_cast<double>(i) / rate)));
    }
    std::string payload = std::to_string(Clock::now().time_since_epoch().count()) + " " + pad;
    while (!(*pub)->publish(topic, payload, 1)) std::this_thread::sleep_for(1ms);
  }
  auto deadline = Clock::now() + 120s;
  while (received < n && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::lock_guard lock(mu);
  return {static_cast<double>(received) / secs, percentile(latencies, 0.5), percentile(latencies, 0.99)};
}

}  // namespace courtyard::bench
