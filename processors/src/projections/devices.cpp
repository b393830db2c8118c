#include "projections/devices.h"

namespace courtyard::processors {

Folded DevicesProjection::fold(Batch& batch, const schemas::Event& event, const std::string&) {
  auto& state = table_.get(batch.view, Projector::device_key(event.device.str()));
  auto step = apply(std::move(state), event);
  state = std::move(step.state);
  return step.admission == Admission::Fresh ? Folded::Fresh : Folded::Duplicate;
}

void DevicesProjection::fold(Batch& batch, const Alert& alert) {
  if (alert.device.empty()) return;  // about a vehicle or a person, not a device
  auto& device = table_.get(batch.view, Projector::device_key(alert.device));
  if (alert.rule == "offline") device.online = alert.state == "resolved";
}

std::unique_ptr<Projection> make_devices(Projections&) { return std::make_unique<DevicesProjection>(); }

}  // namespace courtyard::processors
