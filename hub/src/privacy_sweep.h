#pragma once
// Retention of personal data by class (docs/privacy.md): a visitor's record is erased, its key
// destroyed, a set number of days after it was made; each erasure is a person.forgotten event
// (actor "retention") in the log. The same sweep destroys again the key of anyone the log says
// is forgotten whose key is back (a restored backup of the key directory). Outside the folds:
// the sweep reads the wall clock, decides from the projections, and acts through the log.
#include <cstdint>
#include <functional>
#include <stop_token>
#include <string>
#include <vector>

#include "hub/vault.h"
#include "processors/store.h"
#include "schemas/event.h"

namespace courtyard::hub {

struct RetentionPolicy {
  std::int64_t visitor_days = 30;  // 0: kept until forgotten
};

struct Erasure {
  std::string community, subject, reason;
};

// Who is due for erasure at `now_ms` (pure: the store's people records and the policy); `only`
// ("{community}/{subject}"): whether that one person is. A visitor's days count from when they
// became one (a record's kind can change).
std::vector<Erasure> due_for_erasure(const processors::Store::View& view, std::int64_t now_ms, const RetentionPolicy& policy,
                                     const std::string& only = "");
// Subjects the log says are forgotten whose key `vault` still holds.
std::vector<std::string> keys_of_the_forgotten(const processors::Store::View& view, const Vault& vault);

struct SweepReport {
  std::size_t erased = 0, keys_destroyed_again = 0, failures = 0;
};
// One sweep: destroys the keys, then appends each erasure's event (`append`: to the log, confirmed).
// Run it only on a store that has caught up with the log: what it decides from, it cannot undo.
SweepReport sweep(const processors::Store& store, const Vault& vault, std::int64_t now_ms, const RetentionPolicy& policy,
                  const std::function<bool(const schemas::Event&)>& append);

}  // namespace courtyard::hub
