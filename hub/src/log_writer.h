#pragma once
// The hub's own writes: ticks (the log's clock, one per partition every interval) straight to
// the events topic, and a community's events (operator actions, registry changes, commands,
// notices) to the requests topic, from which the community's ingest appends and chains them.
// Thread-safe: the ticker runs on its own thread, the API appends from its workers and waits for
// Kafka's confirmation.
#include <chrono>
#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>

#include "common/kafka.h"
#include "schemas/event.h"

namespace courtyard::hub {

class LogWriter {
 public:
  // Throws when the producer cannot be created.
  explicit LogWriter(const KafkaConfig& kafka);
  ~LogWriter();
  // Writes one event keyed by its community (a tick: to `partition`); waits for Kafka. Returns
  // the offset it was written at (of the requests topic for a community's event).
  std::expected<std::int64_t, std::string> append(schemas::Event event, std::optional<std::int32_t> partition,
                                                  std::chrono::milliseconds timeout);
  // Publishes one record to `topic` (the audit trail); waits for Kafka. Returns its offset.
  std::expected<std::int64_t, std::string> publish(const std::string& topic, const std::string& key,
                                                   const std::string& value, std::chrono::milliseconds timeout);
  // Appends a tick to every partition every `interval` until `stop` fires; also serves the
  // producer's delivery reports. Run it on a thread of its own.
  void run_ticks(std::stop_token stop, std::chrono::milliseconds interval);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace courtyard::hub
