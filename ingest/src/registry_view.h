#pragma once
// Ingest's view of courtyard.registry.v1 (one partition, compacted): which devices exist, their
// community and kind. Thread-safe: the MQTT thread looks devices up and catches up on a miss; the
// bridge's loop polls for new registrations.
#include <chrono>
#include <expected>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/handles.h"
#include "common/kafka.h"
#include "schemas/registry.h"

namespace courtyard::ingest {

struct RegistryRecord {
  std::int64_t offset;
  schemas::Registration registration;
};

class RegistryView {
 public:
  static std::expected<std::unique_ptr<RegistryView>, std::string> open(const KafkaConfig& kafka,
                                                                       const std::string& client_id);
  // New registrations available now, in log order.
  std::vector<RegistryRecord> poll();
  // Everything written before this call, waiting at most `timeout` for it.
  std::expected<std::vector<RegistryRecord>, std::string> catch_up(std::chrono::milliseconds timeout);
  std::optional<schemas::Registration> lookup(const DeviceId& device) const;
  std::size_t size() const;

 private:
  RegistryView() = default;
  std::vector<RegistryRecord> poll_locked(std::chrono::milliseconds timeout);
  KafkaPtr consumer_;
  std::string topic_;
  mutable std::mutex mu_;
  std::int64_t next_offset_ = 0;
  std::unordered_map<DeviceId, schemas::Registration> devices_;
};

}  // namespace courtyard::ingest
