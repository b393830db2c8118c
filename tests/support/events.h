#pragma once
// Building log messages for processor tests.
#include "processors/projector.h"
#include "schemas/event.h"

namespace courtyard::test {

inline schemas::Event status_event(const std::string& device, std::uint64_t seq, std::uint32_t boot = 1,
                                   std::int64_t at_ms = 1795950000000) {
  schemas::Event e;
  e.device = DeviceId(device);
  e.community = CommunityId("c1");
  e.boot = boot;
  e.seq = seq;
  e.device_time_ms = at_ms;
  e.ingest_time_ms = at_ms + 5;
  schemas::DeviceStatus s;
  s.battery_pct = 80;
  e.body = s;
  return e;
}

inline processors::LogMessage log_message(const schemas::Event& e, std::int64_t offset, std::int32_t partition = 0) {
  return {"courtyard.events.v1", partition, offset, e.community.str(), schemas::encode(e), {}};
}

}  // namespace courtyard::test
