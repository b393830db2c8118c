#pragma once
// Every projection, registered in the order they fold an event (projections.cpp): a new
// projection is one module and one line there. A module that reads another one asks for it by
// type when it is made (get<DevicesProjection>()), so it must be registered after it.
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <stdexcept>
#include <vector>

#include "projection.h"

namespace courtyard::processors {

class Projections {
 public:
  Projections();  // makes every projection, empty
  template <class P>
  P& get() {
    for (auto& p : all_) {
      if (auto* wanted = dynamic_cast<P*>(p.get())) return *wanted;
    }
    throw std::logic_error("a projection reads one registered after it");
  }
  // The projections that fold events of the type with this index in schemas::Body, in order.
  const std::vector<Projection*>& folding(std::size_t type) const { return by_type_.at(type); }
  const std::vector<Projection*>& folding_dead_letters() const { return dead_letters_; }
  const std::vector<Projection*>& folding_alerts() const { return alerts_; }
  const std::vector<std::unique_ptr<Projection>>& all() const { return all_; }

 private:
  void add(std::unique_ptr<Projection> projection);
  std::vector<std::unique_ptr<Projection>> all_;
  std::vector<std::vector<Projection*>> by_type_ = std::vector<std::vector<Projection*>>(EventTypes().size());
  std::vector<Projection*> dead_letters_, alerts_;
};

// Who is inside a community, one record per person and vehicle (the occupancy projection).
constexpr const char* kInsidePrefix = "inside/";
// A presence record (communities/{c}/presence) with who is inside put back from those records.
std::string with_who_is_inside(const Store::View& view, std::string_view presence_key, std::string record);

// The modules (one source file each under projections/).
std::unique_ptr<Projection> make_devices(Projections&);
std::unique_ptr<Projection> make_rejections(Projections&);
std::unique_ptr<Projection> make_alerts(Projections&);
std::unique_ptr<Projection> make_meters(Projections&);
std::unique_ptr<Projection> make_gates(Projections&);
std::unique_ptr<Projection> make_occupancy(Projections&);
std::unique_ptr<Projection> make_homes(Projections&);
std::unique_ptr<Projection> make_elders(Projections&);
std::unique_ptr<Projection> make_cameras(Projections&);
std::unique_ptr<Projection> make_commands(Projections&);
std::unique_ptr<Projection> make_notices(Projections&);
std::unique_ptr<Projection> make_registry(Projections&);
std::unique_ptr<Projection> make_people(Projections&);
std::unique_ptr<Projection> make_rosters(Projections&);
std::unique_ptr<Projection> make_site(Projections&);
std::unique_ptr<Projection> make_responses(Projections&);
std::unique_ptr<Projection> make_notifications(Projections&);

}  // namespace courtyard::processors
