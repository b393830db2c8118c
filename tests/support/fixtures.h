#pragma once
// Shared test fixtures: the registry of community c1 that the payload vectors assume, and the
// payload vector files themselves.
#include <filesystem>
#include <string>
#include <vector>

#include "ingest/admit.h"
#include "schemas/event.h"
#include "temp_dir.h"

namespace courtyard::test {

inline ingest::RegistryLookup c1_registry() {
  return [](const DeviceId& id) -> std::optional<schemas::Registration> {
    using K = schemas::DeviceKind;
    static const std::vector<std::pair<std::string, K>> kDevices = {
        {"gate-1", K::Gate},  {"door-1", K::Door},         {"vgate-1", K::VehicleGate}, {"cam-1", K::Camera},
        {"meter-1", K::Meter}, {"home-1", K::HomeSensor},   {"wear-1", K::Wearable}};
    for (const auto& [name, kind] : kDevices) {
      if (name == id.str()) return schemas::Registration{id, CommunityId("c1"), kind, "b1-0101", "test", 1};
    }
    return std::nullopt;
  };
}

struct PayloadCase {
  std::string name;    // file name without extension
  std::string topic;   // where it was published
  std::string payload; // exact bytes
  std::string reason;  // expected rejection reason; empty for valid/
};

// Every vector under tests/data/payloads/<subdir>, sorted by path.
inline std::vector<PayloadCase> payload_cases(const std::string& subdir) {
  std::vector<PayloadCase> out;
  std::filesystem::path root = std::filesystem::path(COURTYARD_TEST_DATA) / "payloads" / subdir;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::recursive_directory_iterator(root)) {
    if (e.is_regular_file() && (e.path().extension() == ".json" || e.path().extension() == ".fb")) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    std::string stem = f.stem().string();
    std::string where = stem.substr(0, stem.find('.'));
    std::string community = "c1", device = where;
    if (auto tilde = where.find('~'); tilde != std::string::npos) {
      community = where.substr(0, tilde);
      device = where.substr(tilde + 1);
    }
    std::string reason = subdir == "valid" ? "" : f.parent_path().filename().string();
    out.push_back({stem, "courtyard/v1/" + community + "/" + device + "/telemetry", read_file(f), reason});
  }
  return out;
}

}  // namespace courtyard::test
