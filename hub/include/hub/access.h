#pragma once
// Who may do what through the hub's API. A request carries a bearer token; the token store maps
// the token's SHA-256 to a Principal with one role:
//   admin    everything
//   staff    read and act on one community
//   auditor  read everything, change nothing
//   resident read their own household's records (devices, alerts, meters, homes, elders, commands,
//            registry, what their family was told) and their community's notices; act on their
//            own alerts and devices
// A household is the unit it lives in ("b3-1201") within a community.
// TokenStore is thread-safe; it re-reads its file when the file changes, so tokens added by
// `courtyard token add` work without restarting the hub.
#include <cstdint>
#include <expected>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace courtyard::hub {

enum class Role { Admin, Staff, Auditor, Resident };
std::string_view to_string(Role role);
std::optional<Role> parse_role(std::string_view name);

struct Principal {
  std::string token_id;   // the token's public id (never the secret)
  Role role = Role::Auditor;
  std::string community;  // staff and residents: the community they belong to
  std::string unit;       // residents: their household's unit
  std::string label;      // who holds it, for the audit trail ("gate office", "li family")
};

// Where a projection record belongs: its community and (household records) unit.
struct RecordScope {
  std::string community;
  std::string unit;
  bool staff_only = false;  // the compound's business within a household's record kind (a staff notification)
};
RecordScope scope_of(std::string_view key, const nlohmann::json& record);

// Read access to one projection record (key as stored: "alerts/...", "homes/c/u", ...).
bool may_read(const Principal& who, std::string_view key, const RecordScope& scope);
// Takes out of a record `who` may read what is not theirs to see; true if it changed anything. A
// household is not shown the staff's person tokens: an alert's assignee, and the dispatch steps
// that name one (its timeline keeps what happened and when, and the responder's role).
bool redact_for(const Principal& who, std::string_view key, nlohmann::json& record);
// May `who` change things in `community` (for residents: in their own `unit` of it)?
bool may_act(const Principal& who, const std::string& community, const std::string& unit);
// May `who` be shown the personal fields (name, phone, ...) of a person of `community` who belongs
// to the household `unit`? Admin: anyone's. Staff: their community's. Residents: their own
// household's (its members, its family contacts, its visitors). Auditors: nobody's; they read the
// read trail, not the data. Every showing is an event in the log (docs/privacy.md).
bool may_see_personal(const Principal& who, const std::string& community, const std::string& unit);

struct TokenRecord {
  std::string id;      // public id, shown in listings and logs
  std::string sha256;  // of the secret; the secret itself is never stored
  Role role = Role::Auditor;
  std::string community, unit, label;
  std::int64_t created_ms = 0;
  std::int64_t expires_ms = 0;  // 0: never
  bool revoked = false;
};

class TokenStore {
 public:
  explicit TokenStore(std::filesystem::path file);
  // Creates a token and saves it; returns the secret (shown once). Errors: a staff or resident
  // token without its community, a resident without a unit, or the file cannot be written.
  // `ttl_ms` > 0: the token stops working that long from now.
  std::expected<std::string, std::string> add(Role role, const std::string& community, const std::string& unit,
                                              const std::string& label, std::int64_t ttl_ms = 0);
  std::expected<void, std::string> revoke(const std::string& id);
  std::vector<TokenRecord> list() const;
  // The principal for a presented secret; nullopt when unknown, revoked or expired.
  std::optional<Principal> authenticate(std::string_view secret) const;
  // Whether the token with this public id still lets its holder in.
  bool valid(const std::string& token_id) const;

 private:
  void reload_if_changed() const;
  std::expected<void, std::string> save() const;
  std::filesystem::path file_;
  mutable std::mutex mu_;
  mutable std::filesystem::file_time_type loaded_mtime_{};
  mutable std::uintmax_t loaded_size_ = 0;
  mutable std::vector<TokenRecord> records_;
  mutable std::unordered_map<std::string, std::size_t> by_hash_;
};

}  // namespace courtyard::hub
