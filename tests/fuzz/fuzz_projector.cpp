// Fuzzes the projector with sequences of admitted events: the input is cut into payloads at a
// separator, each payload admitted as the first of c1's devices that takes it (so only events
// ingest would accept reach the folds), stamped as ingest stamps them, with ticks and operators'
// acknowledgements woven in (at most 24 payloads: longer logs add time, not paths). The log is
// folded two ways into in-memory stores: in one batch, and in batches cut where the input says
// (sizes 1..7, so one message at a time too).
// Properties: nothing throws or crashes; no admitted event is ever quarantined; the two stores
// are equal, record for record (batch invariance, which replay equality rests on).
// Seeds: tests/data/payloads (each vector is a log of one event; libFuzzer splices them).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "check.h"
#include "fixtures.h"
#include "ingest/admit.h"
#include "processors/projector.h"
#include "processors/store.h"

using namespace courtyard;
using fuzz::check;

namespace {

constexpr std::string_view kSeparator = "\xff\xfe\xfd";
constexpr std::int64_t kT0 = 1795950000000;
const char* const kDevices[] = {"gate-1", "door-1", "vgate-1", "cam-1", "meter-1", "home-1", "wear-1"};

std::unique_ptr<processors::Store> memory_store() {
  processors::StoreConfig config;
  config.dir = "/fuzz";
  config.in_memory = true;
  config.block_cache_bytes = 1 << 20;
  config.write_buffer_bytes = 256 << 20;  // rarely flushed: flushes and compactions cost more than the folds
  auto store = processors::Store::open(config);
  check(store.has_value(), "an in-memory store opens");
  return std::move(*store);
}

// The log the input describes: registrations first, then its admitted events, ticks and actions.
std::vector<processors::LogMessage> log_of(std::string_view input, std::vector<std::size_t>& cuts) {
  static const auto registry = test::c1_registry();
  std::vector<schemas::Event> events;
  for (const char* device : kDevices) {
    schemas::Event e;
    e.device = DeviceId(device);
    e.community = CommunityId("c1");
    e.body = schemas::DeviceRegistered{registry(DeviceId(device))->kind, "b1-0101", "test"};
    events.push_back(std::move(e));
  }
  std::size_t at = 0;
  for (int n = 0; at <= input.size() && n < 24; ++n) {
    auto end = input.find(kSeparator, at);
    auto payload = input.substr(at, end == std::string_view::npos ? std::string_view::npos : end - at);
    at = end == std::string_view::npos ? input.size() + 1 : end + kSeparator.size();
    if (!payload.empty()) cuts.push_back(static_cast<unsigned char>(payload[0]) % 7 + 1);
    for (const char* device : kDevices) {
      auto admitted = ingest::admit(std::string("courtyard/v1/c1/") + device + "/telemetry", payload, registry);
      if (!admitted) continue;
      events.push_back(std::move(*admitted));
      break;
    }
    if (n % 3 == 2) {  // the log's clock, and now and then an operator
      schemas::Event tick;
      tick.device = DeviceId("courtyard-ingest-0");
      tick.body = schemas::Tick{0};
      events.push_back(std::move(tick));
    }
    if (n % 5 == 4) {
      schemas::Event ack;
      ack.device = DeviceId("operator");
      ack.community = CommunityId("c1");
      ack.body = schemas::OperatorAction{"c1:smoke:home-1:1", schemas::AlertAction::Acknowledge, "guard", "on my way"};
      events.push_back(std::move(ack));
    }
  }
  std::vector<processors::LogMessage> log;
  std::uint64_t chain = 0;
  std::int64_t offset = 0;
  for (auto& e : events) {
    e.event_id = static_cast<std::uint64_t>(offset) + 1;
    e.ingest_time_ms = kT0 + offset * 30'000;  // half a minute apart: timers fire within a log
    if (e.device_time_ms == 0) e.device_time_ms = e.ingest_time_ms;
    if (!e.community.empty()) e.chain_seq = ++chain;
    log.push_back({"courtyard.events.v1", 0, offset++, e.community.str(), schemas::encode(e), {}});
  }
  return log;
}

// One store per way of folding, emptied before each run: opening a store costs more than a run.
processors::Store& fresh_store(int which) {
  static std::unique_ptr<processors::Store> stores[2] = {memory_store(), memory_store()};
  check(stores[which]->clear().has_value(), "an in-memory store empties");
  return *stores[which];
}

// The cut run keeps no state between batches (caches of 0): each batch reads back from the
// store what the previous one wrote, which must be the same as what it held.
processors::KeyValues fold(const std::vector<processors::LogMessage>& log, const std::vector<std::size_t>& batches, int which) {
  auto* store = &fresh_store(which);
  processors::ProjectorConfig config;
  config.rules.defaults.fall_escalate_ms = 60'000;
  if (which == 1) config.cache_entries = 0;
  processors::Projector projector(*store, config);
  std::size_t at = 0, k = 0;
  while (at < log.size()) {
    const std::size_t n = std::min(log.size() - at, batches.empty() ? log.size() : batches[k++ % batches.size()]);
    auto result = projector.apply(std::span(log).subspan(at, n));
    check(result.has_value(), "an in-memory store takes every write");
    check(result->quarantined == 0, "an admitted event is never quarantined");
    at += n;
  }
  return store->view().scan("", "", std::numeric_limits<std::size_t>::max());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::size_t> cuts;
  auto log = log_of(std::string_view(reinterpret_cast<const char*>(data), size), cuts);
  const auto whole = fold(log, {}, 0);
  if (cuts.empty()) cuts.push_back(1);
  check(fold(log, cuts, 1) == whole, "any batch boundaries, with nothing cached between them, fold to the same store as one batch");
  return 0;
}
