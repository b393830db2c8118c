#pragma once
// devices/{device}: each device's registration, health and latest readings, and the seq window
// that tells a device's new event from one seen before (the only projection that decides that:
// the projections after it see a device's event once). Reflects the offline alert as `online`.
#include "processors/devices_fold.h"
#include "projection.h"
#include "projections/projections.h"
#include "table.h"

namespace courtyard::processors {

class DevicesProjection final : public Projection {
 public:
  EventTypes types() const override { return device_event_types(); }
  bool folds_alerts() const override { return true; }
  Folded fold(Batch& batch, const schemas::Event& event, const std::string& community) override;
  void fold(Batch& batch, const Alert& alert) override;
  void write(Batch& batch) override { table_.put_changed(batch.puts); }
  void evict(std::size_t limit) override { table_.evict(limit); }
  std::size_t cached() const override { return table_.size(); }

  // A device's state as this batch has it so far; nullptr for a device never seen.
  const DeviceState* find(Batch& batch, const std::string& device) {
    return table_.find(batch.view, Projector::device_key(device));
  }

 private:
  Table<DeviceState> table_{&device_state_from_json, &to_record};  // binary (decision 0022)
};

}  // namespace courtyard::processors
