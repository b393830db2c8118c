#pragma once
// Ingest's reader of courtyard.registry.v1 (one partition, compacted): the registrations and
// removals in log order. One owner reads it (the bridge's loop); any thread may ask where the
// topic ends (high_watermark) to know how far the owner must have read to settle a lookup.
#include <chrono>
#include <expected>
#include <memory>
#include <atomic>
#include <optional>
#include <string>
#include <vector>

#include "common/handles.h"
#include "common/kafka.h"
#include "schemas/registry.h"

namespace courtyard::ingest {

struct RegistryRecord {
  std::int64_t offset;
  DeviceId device;
  std::optional<schemas::Registration> registration;  // none: the device was removed (a tombstone)
};

class RegistryView {
 public:
  static std::expected<std::unique_ptr<RegistryView>, std::string> open(const KafkaConfig& kafka,
                                                                       const std::string& client_id);
  // New records available now, in log order. Owner's thread only.
  std::vector<RegistryRecord> poll();
  // Everything written before this call, waiting at most `timeout` for it. Owner's thread only.
  std::expected<std::vector<RegistryRecord>, std::string> catch_up(std::chrono::milliseconds timeout);
  // The offset up to which poll()/catch_up() have read (past offsets compaction removed too).
  std::int64_t read_offset() const;
  // Where the topic ends now (asks the broker). Any thread.
  std::expected<std::int64_t, std::string> high_watermark(std::chrono::milliseconds timeout) const;

 private:
  RegistryView() = default;
  std::vector<RegistryRecord> read(std::chrono::milliseconds timeout);
  KafkaPtr consumer_;
  std::string topic_;
  std::atomic<std::int64_t> next_offset_{0};
};

}  // namespace courtyard::ingest
