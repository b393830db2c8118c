// elders/{device}: a wearable's wearer: latest vitals, rolling heart rate and SpO2, falls and SOS,
// open alerts, and the wellbeing the family sees.
#include "processors/community_folds.h"
#include "projections/devices.h"
#include "table.h"

namespace courtyard::processors {
namespace {

class EldersProjection final : public Projection {
 public:
  explicit EldersProjection(DevicesProjection& devices) : devices_(devices) {}
  EventTypes types() const override { return types_of<schemas::WearableVitals, schemas::WearableAlarm>(); }
  bool folds_alerts() const override { return true; }
  Folded fold(Batch& batch, const schemas::Event& e, const std::string&) override {
    auto& elder = elders_.get(batch.view, Projector::elder_key(e.device.str()));
    elder.unit = devices_.find(batch, e.device.str())->unit;
    elder = apply(std::move(elder), e, batch.config.context);
    elder.wellbeing = wellbeing(elder);
    return Folded::Done;
  }
  void fold(Batch& batch, const Alert& a) override {
    if (a.device.empty()) return;
    const auto* device = devices_.find(batch, a.device);
    if (!device || device->kind != "wearable") return;
    auto& elder = elders_.get(batch.view, Projector::elder_key(a.device));
    elder.community = a.community;
    elder.unit = device->unit;
    if (a.state != "resolved") elder.open_alerts[a.id] = a.severity;
    else elder.open_alerts.erase(a.id);
    elder.wellbeing = wellbeing(elder);
  }
  void write(Batch& batch) override { elders_.put_changed(batch.puts); }
  void evict(std::size_t limit) override { elders_.evict(limit); }
  std::size_t cached() const override { return elders_.size(); }

 private:
  DevicesProjection& devices_;
  Table<ElderState> elders_{&elder_state_from_json, &to_record};  // binary (decision 0022)
};

}  // namespace

std::unique_ptr<Projection> make_elders(Projections& p) { return std::make_unique<EldersProjection>(p.get<DevicesProjection>()); }

}  // namespace courtyard::processors
