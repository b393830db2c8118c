// cameras/{device}: a gate camera's snapshots, what their analyses found (faces, plates) and
// what that means at its gate (the alerts projection's verdict: ok, tailgating, ...).
#include "processors/community_folds.h"
#include "projections/alerts.h"
#include "projections/devices.h"
#include "table.h"

namespace courtyard::processors {
namespace {

class CamerasProjection final : public Projection {
 public:
  CamerasProjection(DevicesProjection& devices, AlertsProjection& alerts) : devices_(devices), alerts_(alerts) {}
  EventTypes types() const override { return types_of<schemas::CameraSnapshot, schemas::VisionAnalysis>(); }
  Folded fold(Batch& batch, const schemas::Event& e, const std::string& community) override {
    auto& camera = cameras_.get(batch.view, Projector::camera_key(e.device.str()));
    if (const auto* snapshot = std::get_if<schemas::CameraSnapshot>(&e.body)) {
      camera.location = devices_.find(batch, e.device.str())->location;
      camera = apply(std::move(camera), e, *snapshot);
    } else {
      camera.community = community;
      camera = apply(std::move(camera), std::get<schemas::VisionAnalysis>(e.body), alerts_.verdict());
    }
    return Folded::Done;
  }
  void write(Batch& batch) override { cameras_.put_changed(batch.puts); }
  void evict(std::size_t limit) override { cameras_.evict(limit); }
  std::size_t cached() const override { return cameras_.size(); }

 private:
  DevicesProjection& devices_;
  AlertsProjection& alerts_;
  Table<CameraState> cameras_{&camera_state_from_json, &to_record};  // binary (decision 0022)
};

}  // namespace

std::unique_ptr<Projection> make_cameras(Projections& p) {
  return std::make_unique<CamerasProjection>(p.get<DevicesProjection>(), p.get<AlertsProjection>());
}

}  // namespace courtyard::processors
