// site/{community}/{building|grid}/{id}: the compound's structure (issue 16): buildings with their
// floors, their place on the site map, their units and doors; grids with their buildings and gates. A change replaces
// the entry whole; a removed entry is kept, saying so, as the registry's are.
#include "projections/projections.h"

namespace courtyard::processors {
namespace {

class SiteProjection final : public ReplacingProjection {
 public:
  EventTypes types() const override { return types_of<schemas::SiteEntry>(); }
  Folded fold(Batch&, const schemas::Event& e, const std::string& community) override {
    const auto& s = std::get<schemas::SiteEntry>(e.body);
    if (!schemas::valid_id(s.id)) return Folded::Done;  // never a key of what is not an id
    auto record = schemas::body_to_json(schemas::Body{s});
    record["community"] = community;
    record["updated_at"] = e.ingest_time_ms;
    put("site/" + community + "/" + std::string(schemas::to_string(s.kind)) + "/" + s.id, record.dump());
    return Folded::Done;
  }
};

}  // namespace

std::unique_ptr<Projection> make_site(Projections&) { return std::make_unique<SiteProjection>(); }

}  // namespace courtyard::processors
