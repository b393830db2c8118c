// gates/{device}: each gate's passes, grants, denials, fevers, by credential and by who passed
// (resident, staff, visitor, unknown: from the community's registry at the time of the pass).
#include "processors/community_folds.h"
#include "projections/alerts.h"
#include "projections/devices.h"
#include "table.h"

namespace courtyard::processors {
namespace {

class GatesProjection final : public Projection {
 public:
  GatesProjection(DevicesProjection& devices, AlertsProjection& alerts) : devices_(devices), alerts_(alerts) {}
  EventTypes types() const override { return types_of<schemas::GatePass>(); }
  Folded fold(Batch& batch, const schemas::Event& e, const std::string& community) override {
    const auto& pass = std::get<schemas::GatePass>(e.body);
    const std::string kind = subject_kind(alerts_.community(batch, community), pass.subject, e.ingest_time_ms);
    auto& g = gates_.get(batch.view, Projector::gate_key(e.device.str()));
    g.location = devices_.find(batch, e.device.str())->location;
    g = apply(std::move(g), e, pass, batch.config.rules.rules_for(community).fever_c, kind, batch.config.context);
    return Folded::Done;
  }
  void write(Batch& batch) override { gates_.put_changed(batch.puts); }
  void evict(std::size_t limit) override { gates_.evict(limit); }
  std::size_t cached() const override { return gates_.size(); }

 private:
  DevicesProjection& devices_;
  AlertsProjection& alerts_;
  Table<GateState> gates_{&gate_state_from_json, &to_record};  // binary (decision 0022)
};

}  // namespace

std::unique_ptr<Projection> make_gates(Projections& p) {
  return std::make_unique<GatesProjection>(p.get<DevicesProjection>(), p.get<AlertsProjection>());
}

}  // namespace courtyard::processors
