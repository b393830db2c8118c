#pragma once
// Private: what the API's people routes and `courtyard people` share.
#include <expected>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "hub/vault.h"
#include "processors/store.h"
#include "schemas/event.h"

namespace courtyard::hub {

// A person as a request describes them (POST /api/v1/people, `courtyard people add`), checked:
// community, kind, unit, tokens and the personal fields, and nothing else.
struct PersonRequest {
  std::string community;
  schemas::PersonKind kind = schemas::PersonKind::Resident;
  std::string unit;
  std::vector<std::string> tokens;
  PersonalFields fields;
};
std::expected<PersonRequest, std::string> person_request_from_json(const nlohmann::json& j);

// Everything the projections hold about a person: their record with their fields opened (or
// "erased"), their household, where they stand in its contact lists, the registry entries and
// alerts of their tokens (those the registry puts in their household) and of the wearables they
// wear, and the read trail of their data. A forgotten person: their record and the trail only.
// nullopt: no such person.
// Opens fields in memory only: the caller records the read before it shows them.
std::optional<nlohmann::json> person_export(const processors::Store::View& view, const Vault& vault,
                                            const std::string& community, const std::string& subject);

}  // namespace courtyard::hub
