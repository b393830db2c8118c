// rosters/{community}/{grid}/{role}: who is on duty when, for one grid and role (issue 16;
// processors/roster.h answers "who now"). A roster replaces the one before it whole.
#include "processors/roster.h"
#include "projections/projections.h"

namespace courtyard::processors {
namespace {

class RostersProjection final : public ReplacingProjection {
 public:
  EventTypes types() const override { return types_of<schemas::DutyRoster>(); }
  Folded fold(Batch&, const schemas::Event& e, const std::string& community) override {
    const auto& r = std::get<schemas::DutyRoster>(e.body);
    const Roster roster{r.week, r.exceptions};
    // The hub checks what it appends; a record that is not a roster is skipped, never made a key of.
    if (!schemas::valid_id(r.grid) || !schemas::valid_id(r.role) || !valid(roster)) return Folded::Done;
    auto record = to_json(roster);
    record["community"] = community;
    record["grid"] = r.grid;
    record["role"] = r.role;
    record["updated_at"] = e.ingest_time_ms;
    record["updated_by"] = r.actor;
    put("rosters/" + community + "/" + r.grid + "/" + r.role, record.dump());
    return Folded::Done;
  }
};

}  // namespace

std::unique_ptr<Projection> make_rosters(Projections&) { return std::make_unique<RostersProjection>(); }

}  // namespace courtyard::processors
