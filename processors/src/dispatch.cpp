#include "processors/dispatch.h"

#include <algorithm>

namespace courtyard::processors {
namespace {

bool lists(const SitePlace& place, const std::string& member) {
  return !member.empty() && std::find(place.members.begin(), place.members.end(), member) != place.members.end();
}

}  // namespace

Place place_of(const std::map<std::string, SitePlace>& site, const std::string& unit, const std::string& device) {
  Place p;
  auto id_of = [](const std::string& key) { return key.substr(key.find('/') + 1); };
  for (const auto& [key, place] : site) {  // in id order: the first building that lists it
    if (place.kind == "building" && (lists(place, unit) || lists(place, device))) {
      p.building = id_of(key);
      break;
    }
  }
  for (const auto& [key, place] : site) {
    if (place.kind == "grid" && (lists(place, p.building) || lists(place, device))) {
      p.grid = id_of(key);
      break;
    }
  }
  return p;
}

bool reaches(const std::map<std::string, SitePlace>& site, const std::string& gate, const std::string& gate_unit,
             const std::string& building, const std::string& unit, const std::string& device) {
  if (gate == device || (!unit.empty() && gate_unit == unit)) return true;
  auto b = site.find(site_key("building", building));
  return b != site.end() && lists(b->second, gate);
}

std::vector<std::string> chain_for(const DispatchRules& rules, const std::string& rule) {
  auto first = rules.responder.find(rule);
  std::vector<std::string> chain{first == rules.responder.end() ? "grid_worker" : first->second};
  for (const auto& role : rules.chain) {
    if (std::find(chain.begin(), chain.end(), role) == chain.end()) chain.push_back(role);
  }
  return chain;
}

std::string roster_key(const std::string& grid, const std::string& role) { return grid + "|" + role; }

std::optional<Assignment> assign(const Rosters& rosters, const std::vector<std::string>& chain, std::size_t from,
                                 const std::string& grid, std::int64_t at_ms, int utc_offset_min) {
  for (std::size_t step = from; step < chain.size(); ++step) {
    const std::string& role = chain[step];
    auto roster = rosters.find(roster_key(grid.empty() ? "all" : grid, role));
    if (roster == rosters.end()) roster = rosters.find(roster_key("all", role));
    if (roster == rosters.end()) continue;
    if (auto staff = on_duty(roster->second, at_ms, utc_offset_min)) return Assignment{step, role, *staff};
  }
  return std::nullopt;
}

}  // namespace courtyard::processors
