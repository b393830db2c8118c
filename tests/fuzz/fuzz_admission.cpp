// Fuzzes device payloads (JSON and FlatBuffers) through ingest's admission, as if published on the
// telemetry topic of each registered kind of device and on a camera's snapshot channel.
// Properties: nothing throws or crashes; a refusal's detail is printable UTF-8 that any JSON view
// can hold; an admitted event survives encode -> decode unchanged and has a JSON view.
// Seeds: tests/data/payloads (every vector, valid and invalid).
#include <cstdint>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "common/text.h"
#include "check.h"
#include "fixtures.h"
#include "ingest/admit.h"

using namespace courtyard;
using fuzz::check;

namespace {

const char* const kTopics[] = {
    "courtyard/v1/c1/gate-1/telemetry", "courtyard/v1/c1/door-1/telemetry",  "courtyard/v1/c1/vgate-1/telemetry",
    "courtyard/v1/c1/cam-1/telemetry",  "courtyard/v1/c1/meter-1/telemetry", "courtyard/v1/c1/home-1/telemetry",
    "courtyard/v1/c1/wear-1/telemetry", "courtyard/v1/c1/cam-1/snapshot",    "courtyard/v1/c1/ghost/telemetry",
    "courtyard/v1/c2/gate-1/telemetry",
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view payload(reinterpret_cast<const char*>(data), size);
  static const auto registry = test::c1_registry();
  for (const char* topic : kTopics) {
    auto admitted = ingest::admit(topic, payload, registry);
    if (!admitted) {
      check(valid_utf8(admitted.error().detail), "a refusal's detail is UTF-8");
      (void)nlohmann::json{{"detail", admitted.error().detail}}.dump();  // throws if it is not text
      continue;
    }
    auto encoded = schemas::encode(*admitted);
    auto decoded = schemas::decode(encoded);
    check(decoded.has_value(), "an admitted event decodes from its own encoding");
    check(*decoded == *admitted, "an admitted event survives encode -> decode unchanged");
    (void)schemas::to_json(*decoded).dump();
  }
  return 0;
}
