// meters/{device}: each meter's readings, resets and consumption per local hour and day; and
// communities/{community}/meters: the community's daily consumption per kind and per building.
#include "processors/community_folds.h"
#include "processors/time_buckets.h"
#include "projections/devices.h"
#include "table.h"

namespace courtyard::processors {
namespace {

class MetersProjection final : public Projection {
 public:
  explicit MetersProjection(DevicesProjection& devices) : devices_(devices) {}
  EventTypes types() const override { return types_of<schemas::MeterReading>(); }
  Folded fold(Batch& batch, const schemas::Event& e, const std::string& community) override {
    const auto& ctx = batch.config.context;
    auto& m = meters_.get(batch.view, Projector::meter_key(e.device.str()));
    m.unit = devices_.find(batch, e.device.str())->unit;
    auto step = apply(std::move(m), e, std::get<schemas::MeterReading>(e.body), ctx);
    m = std::move(step.state);
    if (step.consumed > 0) {
      auto& t = totals_.get(batch.view, Projector::community_key(community, "meters"));
      t = add_consumption(std::move(t), m, day_key(e.device_time_ms, ctx.utc_offset_min), step.consumed);
    }
    return Folded::Done;
  }
  void write(Batch& batch) override {
    meters_.put_changed(batch.puts);
    totals_.put_changed(batch.puts);
  }
  void evict(std::size_t limit) override {
    meters_.evict(limit);
    totals_.evict(limit);
  }
  std::size_t cached() const override { return meters_.size() + totals_.size(); }

 private:
  DevicesProjection& devices_;
  Table<MeterState> meters_{&meter_state_from_json, &to_record};  // binary (decision 0022)
  Table<CommunityMeters> totals_{&community_meters_from_json, &to_record};  // binary (decision 0022)
};

}  // namespace

std::unique_ptr<Projection> make_meters(Projections& p) { return std::make_unique<MetersProjection>(p.get<DevicesProjection>()); }

}  // namespace courtyard::processors
