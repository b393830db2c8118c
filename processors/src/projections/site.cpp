// site/{community}/{building|grid}/{id}: the compound's structure (issue 16): buildings with their
// floors and their place on the site map, grids with their buildings and gates. A change replaces
// the entry whole; a removed entry is kept, saying so, as the registry's are.
#include "projections/projections.h"

namespace courtyard::processors {
namespace {

class SiteProjection final : public Projection {
 public:
  EventTypes types() const override { return types_of<schemas::SiteEntry>(); }
  Folded fold(Batch&, const schemas::Event& e, const std::string& community) override {
    const auto& s = std::get<schemas::SiteEntry>(e.body);
    if (!schemas::valid_id(s.id)) return Folded::Done;  // never a key of what is not an id
    auto record = schemas::body_to_json(schemas::Body{s});
    record["community"] = community;
    record["updated_at"] = e.ingest_time_ms;
    changed_["site/" + community + "/" + std::string(schemas::to_string(s.kind)) + "/" + s.id] = record.dump();
    return Folded::Done;
  }
  void write(Batch& batch) override {
    for (auto& [key, value] : changed_) batch.puts.emplace_back(key, std::move(value));
    changed_.clear();
  }
  void evict(std::size_t) override {}
  std::size_t cached() const override { return 0; }

 private:
  std::map<std::string, std::string> changed_;  // this batch's, by key (the last one wins)
};

}  // namespace

std::unique_ptr<Projection> make_site(Projections&) { return std::make_unique<SiteProjection>(); }

}  // namespace courtyard::processors
