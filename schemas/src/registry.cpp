#include "schemas/registry.h"

#include <cctype>

#include <nlohmann/json.hpp>

#include "common/digest.h"

namespace courtyard::schemas {

std::string to_json_string(const Registration& r) {
  return nlohmann::json{{"device", r.device.str()},       {"community", r.community.str()},
                        {"kind", to_string(r.kind)},      {"unit", r.unit},
                        {"location", r.location},         {"registered_at", r.registered_at_ms}}
      .dump();
}

std::expected<Registration, std::string> parse_registration(std::string_view text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::unexpected(std::string("registration is not a JSON object"));
  try {
    Registration r;
    r.device = DeviceId(j.at("device").get<std::string>());
    r.community = CommunityId(j.at("community").get<std::string>());
    auto kind = parse_device_kind(j.at("kind").get<std::string>());
    if (!kind) return std::unexpected("unknown device kind " + j.at("kind").dump());
    r.kind = *kind;
    r.unit = j.value("unit", "");
    r.location = j.value("location", "");
    r.registered_at_ms = j.value("registered_at", std::int64_t{0});
    if (!valid_id(r.device.str()) || !valid_id(r.community.str())) {
      return std::unexpected(std::string("registration has an invalid device or community id"));
    }
    return r;
  } catch (const nlohmann::json::exception& e) {
    return std::unexpected(std::string("registration: ") + e.what());
  }
}

Event registered_event(const Registration& r) {
  Event e;
  e.device = r.device;
  e.community = r.community;
  e.device_time_ms = r.registered_at_ms;
  e.body = DeviceRegistered{r.kind, r.unit, r.location};
  return e;
}

std::optional<std::uint64_t> best_effort_seq(std::string_view payload) {
  if (has_flatbuffer_identifier(payload)) {
    auto e = decode(payload);
    return e ? std::optional(e->seq) : std::nullopt;
  }
  auto j = nlohmann::json::parse(payload, nullptr, false);
  if (j.is_object()) {
    auto it = j.find("seq");
    if (it != j.end() && it->is_number_unsigned()) return it->get<std::uint64_t>();
  }
  return std::nullopt;
}

std::string plate_token(std::string_view key, std::string_view plate) {
  std::string normal;
  for (char c : plate) {  // separators go; letters, digits and non-ASCII (a province's character) stay
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x80) normal += c;
    else if (std::isalnum(u)) normal += static_cast<char>(std::toupper(u));
  }
  return "plate-" + hmac_sha256_hex(key, normal).substr(0, 16);
}

}  // namespace courtyard::schemas
