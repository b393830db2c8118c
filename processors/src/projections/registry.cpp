// registry/{community}/{kind}/{id}: the community's people, vehicles and households as registered;
// each change of a person or a vehicle goes to the outbox as an access update for the community's
// gates of that kind (from the alerts projection's device directory).
#include "projections/alerts.h"
#include "table.h"

namespace courtyard::processors {
namespace {

class RegistryProjection final : public Projection {
 public:
  explicit RegistryProjection(AlertsProjection& alerts) : alerts_(alerts) {}
  EventTypes types() const override { return types_of<schemas::RegistryEntry>(); }
  Folded fold(Batch&, const schemas::Event& e, const std::string& community) override {
    changes_.push_back({community, std::get<schemas::RegistryEntry>(e.body), e.ingest_time_ms});
    return Folded::Done;
  }
  void write(Batch& batch) override {
    for (const auto& [community, entry, at_ms] : changes_) {
      auto record = schemas::body_to_json(schemas::Body{entry});
      record["community"] = community;
      batch.puts.emplace_back(Projector::registry_key(community, std::string(schemas::to_string(entry.kind)), entry.id),
                              record.dump());
      if (entry.kind == schemas::RegistryKind::Household) continue;
      for (const auto& [device, d] : alerts_.community(batch, community).devices) {
        const bool people_gate = d.kind == "gate" || d.kind == "door", vehicle_gate = d.kind == "vehicle_gate";
        if (!(entry.kind == schemas::RegistryKind::Person ? people_gate : vehicle_gate)) continue;
        auto body = record;
        body["allowed"] = !entry.removed;
        batch.send(community, "commands", device,
                   nlohmann::json{{"community", community}, {"device", device}, {"command", "access_update"},
                                  {"issued_at", at_ms}, {"body", body}}
                       .dump());
      }
    }
    changes_.clear();
  }
  void evict(std::size_t) override {}
  std::size_t cached() const override { return 0; }

 private:
  struct Change {
    std::string community;
    schemas::RegistryEntry entry;
    std::int64_t at_ms;
  };
  AlertsProjection& alerts_;
  std::vector<Change> changes_;  // this batch's, in order
};

}  // namespace

std::unique_ptr<Projection> make_registry(Projections& p) { return std::make_unique<RegistryProjection>(p.get<AlertsProjection>()); }

}  // namespace courtyard::processors
