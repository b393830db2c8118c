#include "processors/record.h"

namespace courtyard::processors {

bool is_binary_record(std::string_view raw) {
  if (raw.empty()) return false;
  const auto first = static_cast<unsigned char>(raw.front());
  return (first >= 0x80 && first <= 0x8f) || first == 0xde || first == 0xdf;  // fixmap, map 16, map 32
}

nlohmann::json record_json(std::string_view raw) {
  return is_binary_record(raw) ? nlohmann::json::from_msgpack(raw) : nlohmann::json::parse(raw);
}

nlohmann::json parse_record(std::string_view raw) {
  return is_binary_record(raw) ? nlohmann::json::from_msgpack(raw, true, false) : nlohmann::json::parse(raw, nullptr, false);
}

std::string record_text(std::string raw) {
  if (!is_binary_record(raw)) return raw;
  return nlohmann::json::from_msgpack(raw).dump();
}

}  // namespace courtyard::processors
