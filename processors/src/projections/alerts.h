#pragma once
// The alert rules' state per community and the alerts they raise: alertstate/{community} (the
// registry, the episodes by id, the rules' memory), alertclock/{community} (its log time),
// watch/{community}/{device} (the device directory), granted/{community}/{gate}/{seq} (passes
// granted lately, for the cameras), alertpart/{community}/{map}/{entry} (the maps that change
// entry by entry: registry, activity, vehicles inside, denials, ...), and alerts/{id} (every episode's record). Each change of an
// alert goes to the outbox for the alerts topic, and as a command to the community's staff and to
// the household's devices. Stored piece by piece so a batch writes what it changed (0017).
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "projection.h"
#include "projections/projections.h"
#include "table.h"

namespace courtyard::processors {

class AlertsProjection final : public Projection {
 public:
  AlertsProjection();
  EventTypes types() const override;
  Folded fold(Batch& batch, const schemas::Event& event, const std::string& community) override;
  void write(Batch& batch) override;
  void evict(std::size_t limit) override;
  std::size_t cached() const override { return states_.size(); }

  // A community's state as this batch has it so far: its registry and its device directory.
  const CommunityAlerts& community(Batch& batch, const std::string& community) { return state(batch, community); }
  // What the last vision.analysis folded means at its gate.
  const SnapshotVerdict& verdict() const { return verdict_; }

 private:
  struct Slot {  // alertstate/: without the device directory, the passes and the clock
    CommunityAlerts state;
  };
  struct Clock {
    std::int64_t now_ms = 0;
  };
  friend nlohmann::json to_json(const Slot& slot);
  friend nlohmann::json to_json(const Clock& clock);
  static Slot slot_from_json(const nlohmann::json& j);
  static Clock clock_from_json(const nlohmann::json& j);

  CommunityAlerts& state(Batch& batch, const std::string& community);

  Table<Slot> states_;
  Table<Clock> clocks_;
  std::map<std::string, std::string> watch_written_;  // watch/ key -> stored form
  // community -> gate -> the seqs of its passes in the store, in order
  std::map<std::string, std::map<std::string, std::deque<std::uint64_t>>> granted_written_;
  // community -> its maps as stored under alertpart/ (the map fields only)
  std::map<std::string, CommunityAlerts> parts_written_;
  std::set<std::pair<std::string, std::string>> watch_touched_;  // (community, device), this batch
  SnapshotVerdict verdict_;
};

}  // namespace courtyard::processors
