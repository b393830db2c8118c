#pragma once
// MQTT connection settings and a small client over libmosquitto (MQTT 5).
//
// MqttClient owns one libmosquitto handle whose network loop runs on a thread of its own
// (started by connect(), stopped by the destructor): libmosquitto's, or with
// Options::before_acknowledging one of ours that reads every waiting message, calls it, and only
// then writes the PUBACKs. Its methods may be called from any thread; the message handler, if
// set, runs on the network thread in arrival order.
#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace courtyard {

struct MqttConfig {
  std::string host = "127.0.0.1";  // Mosquitto host
  int port = 1883;                 // Mosquitto port
  std::string username = "courtyard-service";  // Courtyard's own identity at the broker
  std::string password_file = "secrets/mqtt-service";  // relative to the var directory
  int keepalive_s = 30;            // MQTT keep-alive
};

struct MqttMessage {
  std::string topic;
  std::string payload;
};

// What a message handler did with a message. Taken: it is the handler's now, and a QoS 1 message
// is acknowledged. Refused: it could not be kept (its store is failing); the connection is cut
// before the acknowledgement can leave, so the broker keeps the message in the persistent session
// and delivers it again after the client reconnects (1 s, then up to every 5 s).
enum class Delivery { Taken, Refused };

// Reads a secret file (first line, trailing whitespace trimmed).
std::expected<std::string, std::string> read_secret(const std::string& path);

class MqttClient {
 public:
  struct Options {
    std::string client_id;          // empty: the broker assigns one (clean sessions only)
    std::string username;
    std::string password;
    bool clean_start = true;        // false: a persistent session the broker keeps while we are away
    std::uint32_t session_expiry_s = 0;  // with clean_start=false: how long the broker keeps it
    int keepalive_s = 30;
    // Set before CONNECT: a persistent session's queued messages arrive right after CONNACK, and
    // every one of them must reach the handler. libmosquitto sends a QoS 1 message's PUBACK when
    // the handler returns, so what the handler returns Taken must be safe by then.
    std::function<Delivery(const MqttMessage&)> handler;
    // Group commit: when set, the client drives libmosquitto's network loop itself and calls this
    // after it has handed every message waiting on the socket to the handler and before any of
    // their PUBACKs is written: one fsync covers them all. False: what was taken is not safe, and
    // the connection is cut so no PUBACK leaves (the broker delivers them again).
    std::function<bool()> before_acknowledging;
  };
  using Handler = std::function<Delivery(const MqttMessage&)>;

  // Connects and waits for CONNACK. Errors carry the broker's reason ("not authorized").
  static std::expected<std::unique_ptr<MqttClient>, std::string> connect(const std::string& host, int port,
                                                                         const Options& options,
                                                                         std::chrono::milliseconds timeout);
  // The same in two steps, for a handler that needs the client (to reply) from the first message on.
  static std::expected<std::unique_ptr<MqttClient>, std::string> create(const Options& options);
  std::expected<void, std::string> open(const std::string& host, int port, std::chrono::milliseconds timeout);
  ~MqttClient();
  // Disconnects and stops the network thread: once it returns, the handler runs no more (and the
  // client may still be called; publishes go nowhere). The destructor does the same.
  void close();
  MqttClient(const MqttClient&) = delete;
  MqttClient& operator=(const MqttClient&) = delete;

  // Messages go to Options::handler when one was given, else they queue for next_message().
  std::expected<void, std::string> subscribe(const std::string& pattern, int qos,
                                             std::chrono::milliseconds timeout);
  // Publishes and waits for the broker's acknowledgement (QoS 1) or the write (QoS 0).
  // Returns the MQTT 5 reason code: 0 accepted, 135 not authorized, ...
  std::expected<int, std::string> publish_and_wait(const std::string& topic, std::string_view payload, int qos,
                                                   std::chrono::milliseconds timeout);
  // Publishes without waiting; the outcome is counted (see acked(), refused()).
  std::expected<void, std::string> publish(const std::string& topic, std::string_view payload, int qos);
  // Publishes like publish(); while the broker is away (the client reconnects by itself), waits for
  // it up to `patience` and tries again, as a device that keeps its reading until it can send it.
  std::expected<void, std::string> publish_when_connected(const std::string& topic, std::string_view payload, int qos,
                                                          std::chrono::milliseconds patience);
  // Waits until every publish() so far is acknowledged; false on timeout.
  bool wait_all_acked(std::chrono::milliseconds timeout);
  std::uint64_t acked() const;    // acknowledged with reason < 128
  std::uint64_t refused() const;  // acknowledged with reason >= 128
  std::optional<MqttMessage> next_message(std::chrono::milliseconds timeout);

 private:
  struct State;
  explicit MqttClient(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace courtyard
