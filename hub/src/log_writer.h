#pragma once
// The hub's own appends to the events topic: ticks (the log's clock, one per partition every
// interval) and operator actions. Thread-safe: the ticker runs on its own thread, the API appends
// from the HTTP thread and waits for Kafka's confirmation.
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
  // Appends one event keyed by its community (or to `partition` when given); waits for Kafka.
  // Returns the offset it was written at.
  std::expected<std::int64_t, std::string> append(schemas::Event event, std::optional<std::int32_t> partition,
                                                  std::chrono::milliseconds timeout);
  // Appends a tick to every partition every `interval` until `stop` fires; also serves the
  // producer's delivery reports. Run it on a thread of its own.
  void run_ticks(std::stop_token stop, std::chrono::milliseconds interval);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace courtyard::hub
