#include "projections/projections.h"

namespace courtyard::processors {

EventTypes device_event_types() {
  return types_of<schemas::GatePass, schemas::VehiclePass, schemas::MeterReading, schemas::HomeSensor,
                  schemas::WearableVitals, schemas::WearableAlarm, schemas::DeviceStatus, schemas::DeviceRegistered,
                  schemas::CommandAck, schemas::CameraSnapshot>();
}

Projections::Projections() {
  // The order an event meets them in. Devices first: it decides whether a device's event is new.
  for (auto make : {&make_devices, &make_rejections, &make_alerts, &make_meters, &make_gates, &make_occupancy,
                    &make_homes, &make_elders, &make_cameras, &make_commands, &make_notices, &make_registry, &make_people,
                    &make_rosters, &make_site, &make_responses, &make_notifications}) {
    add(make(*this));
  }
}

void Projections::add(std::unique_ptr<Projection> projection) {
  const auto types = projection->types();
  for (std::size_t i = 0; i < types.size(); ++i) {
    if (types.test(i)) by_type_[i].push_back(projection.get());
  }
  if (projection->folds_dead_letters()) dead_letters_.push_back(projection.get());
  if (projection->folds_alerts()) alerts_.push_back(projection.get());
  all_.push_back(std::move(projection));
}

}  // namespace courtyard::processors
