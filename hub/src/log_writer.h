#pragma once
// The hub's own writes: a community's events (operator actions, registry changes, commands,
// notices, vision analyses) to the requests topic, from which the community's ingest appends and
// chains them (the hub never writes the events topic: docs/security.md), and the audit records.
// Thread-safe: the API appends from its workers; each call waits for Kafka's confirmation,
// serving the producer's delivery reports meanwhile.
#include <chrono>
#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <string>

#include "common/kafka.h"
#include "schemas/event.h"

namespace courtyard::hub {

class LogWriter {
 public:
  // Throws when the producer cannot be created.
  explicit LogWriter(const KafkaConfig& kafka);
  ~LogWriter();
  // Writes a community's event to the requests topic, keyed by its community; waits for Kafka.
  // Returns the offset it was written at in the requests topic. Errors: an event of no community,
  // the producer refusing it, or no confirmation within `timeout`, unless `may_stay_queued`: then
  // -1 (it stays with the producer, which goes on trying for message.timeout.ms, 5 minutes).
  std::expected<std::int64_t, std::string> append(schemas::Event event, std::chrono::milliseconds timeout,
                                                  bool may_stay_queued = false);
  // Publishes one record to `topic` (the audit trail); waits for Kafka. Returns its offset.
  std::expected<std::int64_t, std::string> publish(const std::string& topic, const std::string& key,
                                                   const std::string& value, std::chrono::milliseconds timeout);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace courtyard::hub
