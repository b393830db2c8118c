#pragma once
// `courtyard people add|forget|export`: the privacy vault from the command line (docs/privacy.md).
// They share the hub's vault directory (privacy.keys_dir) and write through the log as the hub does.
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "hub/config.h"

namespace courtyard::hub {

// Records a person (`request`: community, kind, unit, tokens and the personal fields, as the API
// takes them); prints their subject id last.
int run_people_add(const Config& config, const nlohmann::json& request);
// Destroys the person's key, then appends person.forgotten (actor: the user running it).
int run_people_forget(const Config& config, const std::string& community, const std::string& subject,
                      const std::string& reason);
// An access request's answer on stdout (one JSON document): what the projections hold about the
// person (read from the live store, read-only) and every gate and vehicle pass of their tokens
// from the log. The read is recorded in the log first.
int run_people_export(const Config& config, const std::string& community, const std::string& subject);

}  // namespace courtyard::hub
