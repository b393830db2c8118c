#pragma once
// Strong types for identifiers and log positions, so a device id is never passed where a
// community id is expected.
#include <compare>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace courtyard {

template <class Tag>
class StrongId {
 public:
  StrongId() = default;
  explicit StrongId(std::string value) : value_(std::move(value)) {}
  const std::string& str() const noexcept { return value_; }
  bool empty() const noexcept { return value_.empty(); }
  auto operator<=>(const StrongId&) const = default;

 private:
  std::string value_;
};

using DeviceId = StrongId<struct DeviceIdTag>;
using CommunityId = StrongId<struct CommunityIdTag>;

// A position in a Kafka partition: the offset of the next message to read or of a message read.
struct Offset {
  std::int64_t value = -1;
  auto operator<=>(const Offset&) const = default;
};

}  // namespace courtyard

template <class Tag>
struct std::hash<courtyard::StrongId<Tag>> {
  std::size_t operator()(const courtyard::StrongId<Tag>& id) const noexcept {
    return std::hash<std::string>{}(id.str());
  }
};
