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
      const std::string community = community_of(key);
      auto& written = written_[key];
      store_entries(people_prefix(community), p.state.people_inside, written.people, batch.puts, batch.deletes);
      store_entries(vehicles_prefix(community), p.state.vehicles_inside, written.vehicles, batch.puts, batch.deletes);
    });
    const std::size_t first = batch.puts.size();
    presence_.put_changed(batch.puts);
    const std::size_t last = batch.puts.size();
    for (std::size_t i = first; i < last; ++i) {
      auto counts = batch.puts[i];  // a copy: puts grows
      batch.puts.emplace_back(Projector::community_key(community_of(counts.first), "occupancy"), std::move(counts.second));
    }
  }
  void evict(std::size_t limit) override {
    for (const auto& key : presence_.evict(limit)) written_.erase(key);
  }
  std::size_t cached() const override { return presence_.size(); }

 private:
  static std::string community_of(const std::string& presence_key) {  // communities/{c}/presence
    constexpr std::size_t kHead = std::string_view("communities/").size(), kTail = std::string_view("/presence").size();
    return presence_key.substr(kHead, presence_key.size() - kHead - kTail);
  }
  // A community's presence, with who is inside read from their records the first time.
  Occupancy& state(Batch& batch, const std::string& community) {
    const std::string key = Projector::community_key(community, "presence");
    const bool cached = presence_.contains(key);
    auto& o = presence_.get(batch.view, key).state;
    if (cached) return o;
    auto& written = written_[key];  // empty for a record from before, which has them inside
    const std::string people = people_prefix(community), vehicles = vehicles_prefix(community);
    for (auto& [k, v] : batch.view.scan(people, "", std::numeric_limits<std::size_t>::max())) {
      o.people_inside.insert(k.substr(people.size()));
      written.people.insert(k.substr(people.size()));
    }
    for (auto& [k, v] : batch.view.scan(vehicles, "", std::numeric_limits<std::size_t>::max())) {
      const auto at = nlohmann::json::parse(v).get<std::int64_t>();
      o.vehicles_inside[k.substr(vehicles.size())] = at;
      written.vehicles[k.substr(vehicles.size())] = at;
    }
    return o;
  }
  Table<Presence> presence_{&presence_from_json};
  struct Inside {
    std::set<std::string> people;
    std::map<std::string, std::int64_t> vehicles;
  };
  std::map<std::string, Inside> written_;  // presence key -> who is inside as stored
};

}  // namespace

std::string with_who_is_inside(const Store::View& view, std::string_view presence_key, std::string record) {
  auto j = nlohmann::json::parse(record, nullptr, false);
  if (!j.is_object() || j.contains("people_inside")) return record;  // not one, or one stored whole (before 0019)
  constexpr std::size_t kHead = std::string_view("communities/").size(), kTail = std::string_view("/presence").size();
  const auto community = presence_key.substr(kHead, presence_key.size() - kHead - kTail);
  const std::string people = people_prefix(community), vehicles = vehicles_prefix(community);
  auto& inside = j["people_inside"] = nlohmann::json::array();
  for (const auto& [k, v] : view.scan(people, "", std::numeric_limits<std::size_t>::max())) inside.push_back(k.substr(people.size()));
  auto& cars = j["vehicles_inside"] = nlohmann::json::object();
  for (const auto& [k, v] : view.scan(vehicles, "", std::numeric_limits<std::size_t>::max())) {
    cars[k.substr(vehicles.size())] = nlohmann::json::parse(v, nullptr, false);
  }
  return j.dump();
}

std::unique_ptr<Projection> make_occupancy(Projections&) { return std::make_unique<OccupancyProjection>(); }

}  // namespace courtyard::processors
