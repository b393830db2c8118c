#pragma once
// The `rejections` projection: what ingest refused, per device, folded from the dead-letter topic.
// Counts are at-least-once: a dead letter re-sent after an ingest crash is counted again (dead
// letters carry no sequence to recognise it by).
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace courtyard::processors {

// A dead letter as ingest writes it: the raw payload plus these headers.
struct DeadLetter {
  std::int32_t partition = 0;  // of the dead-letter topic
  std::string reason;
  std::string detail;
  std::string source_topic;
  std::string device;     // empty when the topic could not be parsed
  std::string community;
  std::optional<std::uint64_t> seq;
  std::int64_t received_at_ms = 0;
};

struct RejectionState {
  std::uint64_t total = 0;
  std::map<std::string, std::uint64_t> by_reason;
  nlohmann::json last;  // {reason, detail, seq, received_at, source_topic}
  bool operator==(const RejectionState&) const = default;
};

RejectionState apply(RejectionState state, const DeadLetter& letter);

nlohmann::json to_json(const RejectionState& state);
RejectionState rejection_state_from_json(const nlohmann::json& j);

}  // namespace courtyard::processors
