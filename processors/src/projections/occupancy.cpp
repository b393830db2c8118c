// communities/{community}/occupancy: entries and exits, per hour, and how many are inside: the
// record dashboards watch. communities/{community}/presence: the same counts, served together with
// who is inside (pseudonymous tokens), which are stored one record per person and per vehicle under
// inside/{community}/people/{token} and inside/{community}/vehicles/{plate} (the entry time): a
// pass writes the one that came or deletes the one that left, never the whole list (decision 0019).
#include <limits>

#include "processors/community_folds.h"
#include "projections/projections.h"
#include "table.h"

namespace courtyard::processors {
namespace {

std::string people_prefix(std::string_view community) { return kInsidePrefix + std::string(community) + "/people/"; }
std::string vehicles_prefix(std::string_view community) { return kInsidePrefix + std::string(community) + "/vehicles/"; }

// Who is inside a community, as its records under inside/ hold them.
struct Inside {
  std::set<std::string> people;
  std::map<std::string, std::int64_t> vehicles;  // plate -> entry time
};
Inside read_inside(const Store::View& view, std::string_view community) {
  Inside inside;
  const std::string people = people_prefix(community), vehicles = vehicles_prefix(community);
  for (auto& [k, v] : view.scan(people, "", std::numeric_limits<std::size_t>::max())) inside.people.insert(k.substr(people.size()));
  for (auto& [k, v] : view.scan(vehicles, "", std::numeric_limits<std::size_t>::max())) {
    const auto at = nlohmann::json::parse(v, nullptr, false);
    inside.vehicles[k.substr(vehicles.size())] = at.is_number_integer() ? at.get<std::int64_t>() : 0;
  }
  return inside;
}
std::string_view community_of(std::string_view presence_key) {  // communities/{c}/presence
  constexpr std::size_t kHead = std::string_view("communities/").size(), kTail = std::string_view("/presence").size();
  return presence_key.substr(kHead, presence_key.size() - kHead - kTail);
}

struct Presence {
  Occupancy state;
};
nlohmann::json to_json(const Presence& p) { return occupancy_summary(p.state); }
Presence presence_from_json(const nlohmann::json& j) { return {occupancy_from_json(j)}; }  // tokens too, if stored before

class OccupancyProjection final : public Projection {
 public:
  EventTypes types() const override { return types_of<schemas::GatePass, schemas::VehiclePass>(); }
  Folded fold(Batch& batch, const schemas::Event& e, const std::string& community) override {
    auto& o = state(batch, community);
    o = apply(std::move(o), e, batch.config.context);
    return Folded::Done;
  }
  void write(Batch& batch) override {
    presence_.for_each_touched([&](const std::string& key, Presence& p) {
      const std::string community(community_of(key));
      auto& written = written_[key];
      store_entries(people_prefix(community), p.state.people_inside, written.people, batch.puts, batch.deletes);
      store_entries(vehicles_prefix(community), p.state.vehicles_inside, written.vehicles, batch.puts, batch.deletes);
    });
    const std::size_t first = batch.puts.size();
    presence_.put_changed(batch.puts);
    const std::size_t last = batch.puts.size();
    for (std::size_t i = first; i < last; ++i) {
      auto counts = batch.puts[i];  // a copy: puts grows
      batch.puts.emplace_back(Projector::community_key(std::string(community_of(counts.first)), "occupancy"),
                              std::move(counts.second));
    }
  }
  void evict(std::size_t limit) override {
    for (const auto& key : presence_.evict(limit)) written_.erase(key);
  }
  std::size_t cached() const override { return presence_.size(); }

 private:
  // A community's presence, with who is inside read from their records the first time (a record
  // from before 0019 has them inside, and none are stored yet).
  Occupancy& state(Batch& batch, const std::string& community) {
    const std::string key = Projector::community_key(community, "presence");
    const bool cached = presence_.contains(key);
    auto& o = presence_.get(batch.view, key).state;
    if (cached) return o;
    auto& written = written_[key] = read_inside(batch.view, community);
    o.people_inside.insert(written.people.begin(), written.people.end());
    o.vehicles_inside.insert(written.vehicles.begin(), written.vehicles.end());
    return o;
  }
  Table<Presence> presence_{&presence_from_json};
  std::map<std::string, Inside> written_;  // presence key -> who is inside as stored
};

}  // namespace

std::string with_who_is_inside(const Store::View& view, std::string_view presence_key, std::string record) {
  auto j = nlohmann::json::parse(record, nullptr, false);
  if (!j.is_object() || j.contains("people_inside")) return record;  // not one, or one stored whole (before 0019)
  auto inside = read_inside(view, community_of(presence_key));
  j["people_inside"] = std::move(inside.people);
  j["vehicles_inside"] = std::move(inside.vehicles);
  return j.dump();
}

std::unique_ptr<Projection> make_occupancy(Projections&) { return std::make_unique<OccupancyProjection>(); }

}  // namespace courtyard::processors
