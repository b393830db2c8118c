#include "processors/rejections_fold.h"

namespace courtyard::processors {

RejectionState apply(RejectionState s, const DeadLetter& d) {
  ++s.total;
  ++s.by_reason[d.reason];
  s.last = nlohmann::json{{"reason", d.reason},
                          {"detail", d.detail},
                          {"seq", d.seq ? nlohmann::json(*d.seq) : nlohmann::json(nullptr)},
                          {"received_at", d.received_at_ms},
                          {"source_topic", d.source_topic}};
  return s;
}

nlohmann::json to_json(const RejectionState& s) {
  return nlohmann::json{{"total", s.total}, {"by_reason", s.by_reason}, {"last", s.last}};
}

RejectionState rejection_state_from_json(const nlohmann::json& j) {
  RejectionState s;
  s.total = j.value("total", std::uint64_t{0});
  if (j.contains("by_reason")) s.by_reason = j["by_reason"].get<std::map<std::string, std::uint64_t>>();
  if (j.contains("last")) s.last = j["last"];
  return s;
}

}  // namespace courtyard::processors
