#pragma once
// Wire names of every enum, in one table each. The order of each table is the enum's order.
#include <array>
#include <optional>
#include <string_view>

#include "schemas/event.h"

namespace courtyard::schemas {

template <class E>
struct Names;
template <>
struct Names<DeviceKind> {
  static constexpr std::array<std::string_view, 8> kValues = {"gate",  "vehicle_gate", "door",     "camera",
                                                              "meter", "home_sensor",  "wearable", "handheld"};
};
template <>
struct Names<Credential> {
  static constexpr std::array<std::string_view, 6> kValues = {"face", "card", "qr", "pin", "remote", "key"};
};
template <>
struct Names<Direction> {
  static constexpr std::array<std::string_view, 2> kValues = {"in", "out"};
};
template <>
struct Names<Decision> {
  static constexpr std::array<std::string_view, 2> kValues = {"granted", "denied"};
};
template <>
struct Names<MeterKind> {
  static constexpr std::array<std::string_view, 3> kValues = {"electricity", "water", "gas"};
};
template <>
struct Names<SensorKind> {
  static constexpr std::array<std::string_view, 6> kValues = {"smoke", "gas", "water_leak",
                                                              "door",  "temperature", "humidity"};
};
template <>
struct Names<AlarmKind> {
  static constexpr std::array<std::string_view, 3> kValues = {"fall", "sos", "removed"};
};

template <>
struct Names<AlertAction> {
  static constexpr std::array<std::string_view, 7> kValues = {"ack",     "resolve",     "hush",    "on_my_way",
                                                              "arrived", "handed_over", "reassign"};
};

template <>
struct Names<RegistryKind> {
  static constexpr std::array<std::string_view, 3> kValues = {"household", "person", "vehicle"};
};
template <>
struct Names<PersonRole> {
  static constexpr std::array<std::string_view, 3> kValues = {"resident", "staff", "visitor"};
};

template <>
struct Names<PersonKind> {
  static constexpr std::array<std::string_view, 4> kValues = {"resident", "family", "visitor", "staff"};
};

template <>
struct Names<SiteKind> {
  static constexpr std::array<std::string_view, 2> kValues = {"building", "grid"};
};

template <>
struct Names<CommandResult> {
  static constexpr std::array<std::string_view, 2> kValues = {"ok", "failed"};
};
template <>
struct Names<NoticeSeverity> {
  static constexpr std::array<std::string_view, 3> kValues = {"info", "warning", "urgent"};
};

template <class E>
constexpr std::string_view name_of(E e) {
  return Names<E>::kValues[static_cast<std::size_t>(e)];
}

template <class E>
constexpr std::optional<E> parse_name(std::string_view s) {
  for (std::size_t i = 0; i < Names<E>::kValues.size(); ++i) {
    if (Names<E>::kValues[i] == s) return static_cast<E>(i);
  }
  return std::nullopt;
}

// Any value a FlatBuffers enum byte may hold but our enum does not is refused by the decoder.
template <class E>
constexpr bool in_range(int raw) {
  return raw >= 0 && static_cast<std::size_t>(raw) < Names<E>::kValues.size();
}

}  // namespace courtyard::schemas
