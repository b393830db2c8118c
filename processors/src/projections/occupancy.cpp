// communities/{community}/presence: who is inside (pseudonymous tokens) and entries and exits per
// hour; communities/{community}/occupancy: the same counts without the tokens, the record
// dashboards watch (a pass does not push the whole list of tokens to every subscriber).
#include "processors/community_folds.h"
#include "projections/projections.h"
#include "table.h"

namespace courtyard::processors {
namespace {

class OccupancyProjection final : public Projection {
 public:
  EventTypes types() const override { return types_of<schemas::GatePass, schemas::VehiclePass>(); }
  Folded fold(Batch& batch, const schemas::Event& e, const std::string& community) override {
    auto& o = presence_.get(batch.view, Projector::community_key(community, "presence"));
    o = apply(std::move(o), e, batch.config.context);
    return Folded::Done;
  }
  void write(Batch& batch) override {
    const std::size_t first = batch.puts.size();
    presence_.put_changed(batch.puts);
    const std::size_t last = batch.puts.size();
    for (std::size_t i = first; i < last; ++i) {
      const std::string key = batch.puts[i].first;  // communities/{c}/presence (a copy: puts grows)
      const std::string community = key.substr(12, key.size() - 12 - 9);
      batch.puts.emplace_back(Projector::community_key(community, "occupancy"),
                              occupancy_summary(*presence_.find(batch.view, key)).dump());
    }
  }
  void evict(std::size_t limit) override { presence_.evict(limit); }
  std::size_t cached() const override { return presence_.size(); }

 private:
  Table<Occupancy> presence_{&occupancy_from_json};
};

}  // namespace

std::unique_ptr<Projection> make_occupancy(Projections&) { return std::make_unique<OccupancyProjection>(); }

}  // namespace courtyard::processors
