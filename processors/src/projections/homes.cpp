// homes/{community}/{unit}: a household's sensors, its open alerts, and who of it is inside.
#include "processors/community_folds.h"
#include "projections/alerts.h"
#include "projections/devices.h"
#include "table.h"

namespace courtyard::processors {
namespace {

class HomesProjection final : public Projection {
 public:
  HomesProjection(DevicesProjection& devices, AlertsProjection& alerts) : devices_(devices), alerts_(alerts) {}
  EventTypes types() const override { return types_of<schemas::GatePass, schemas::HomeSensor>(); }
  bool folds_alerts() const override { return true; }
  Folded fold(Batch& batch, const schemas::Event& e, const std::string& community) override {
    if (const auto* pass = std::get_if<schemas::GatePass>(&e.body)) {
      const auto& people = alerts_.community(batch, community).people;
      auto person = people.find(pass->subject);
      if (person == people.end() || person->second.unit.empty()) return Folded::Done;
      auto& home = home_of(batch, community, person->second.unit);
      home = apply(std::move(home), *pass);
    } else {
      const std::string& unit = devices_.find(batch, e.device.str())->unit;
      if (unit.empty()) return Folded::Done;
      auto& home = homes_.get(batch.view, Projector::home_key(community, unit));
      home.unit = unit;
      home = apply(std::move(home), e, std::get<schemas::HomeSensor>(e.body));
    }
    return Folded::Done;
  }
  void fold(Batch& batch, const Alert& a) override {
    if (a.unit.empty()) return;
    auto& open = home_of(batch, a.community, a.unit).open_alerts;
    if (a.state != "resolved") open[a.id] = a.severity;
    else open.erase(a.id);
  }
  void write(Batch& batch) override { homes_.put_changed(batch.puts); }
  void evict(std::size_t limit) override { homes_.evict(limit); }
  std::size_t cached() const override { return homes_.size(); }

 private:
  HomeState& home_of(Batch& batch, const std::string& community, const std::string& unit) {
    auto& home = homes_.get(batch.view, Projector::home_key(community, unit));
    home.community = community;
    home.unit = unit;
    return home;
  }
  DevicesProjection& devices_;
  AlertsProjection& alerts_;
  Table<HomeState> homes_{&home_state_from_json, &to_record};  // binary (decision 0022)
};

}  // namespace

std::unique_ptr<Projection> make_homes(Projections& p) {
  return std::make_unique<HomesProjection>(p.get<DevicesProjection>(), p.get<AlertsProjection>());
}

}  // namespace courtyard::processors
