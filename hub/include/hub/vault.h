#pragma once
// The privacy vault's keys (docs/privacy.md, decision 0025). Each person in the vault has a key of
// their own, which seals their personal fields (libsodium's XChaCha20-Poly1305). The key is kept
// wrapped by the deployment's master key, one file per person in a directory of its own (not in
// Kafka and not in the projections' store: a file can be destroyed now, a record in a log cannot).
// Forgetting a person destroys their key; every copy of their sealed fields, in the log, the store,
// its checkpoints and backups, is unreadable from then on.
// Thread-safe; several processes (the hub and the CLI) may share one directory.
#include <expected>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace courtyard::hub {

struct VaultError {
  enum class Code {
    Erased,   // the person's key is destroyed (or never was in this vault): their fields are gone
    Damaged,  // a key or sealed value that does not open: altered, or another deployment's
    Io,       // the directory cannot be read or written
  };
  Code code;
  std::string detail;
};

// A person's personal fields: the only place names and numbers exist in clear is in memory,
// between the API and the vault.
struct PersonalFields {
  std::string name;          // required, 1..100 characters
  std::string phone;         // digits, spaces, + - ( ), up to 32
  std::string relationship;  // "daughter", "son", "carer" ...: to the household or the wearer
  std::string id_number;     // an identity document's number, where a site needs one
  std::string notes;         // up to 500 characters
  bool operator==(const PersonalFields&) const = default;
};
// The names of the fields, in order (what a read trail names).
inline constexpr std::string_view kPersonalFieldNames[] = {"name", "phone", "relationship", "id_number", "notes"};
// From a request's JSON object: unknown fields, wrong types, non-UTF-8 and over-long values are refused.
std::expected<PersonalFields, std::string> personal_fields_from_json(const nlohmann::json& j);
nlohmann::json to_json(const PersonalFields& fields);

// Subject ids are the vault's own: "p-" and 24 lowercase hex digits.
bool valid_subject(std::string_view subject);

class Vault {
 public:
  // The vault with its keys in `keys_dir` (made, 0700) wrapped by the key in `master_key_file`
  // (made on first use, 0600, unless `make_master` is false: the tools open the hub's vault, they
  // never start a new one). Errors: either cannot be made or read, or `keys_dir` is not this
  // process's user's (a key this process wrote, the hub could not read or destroy).
  static std::expected<Vault, std::string> open(const std::filesystem::path& keys_dir,
                                                const std::filesystem::path& master_key_file, bool make_master = true);

  // A new person: a fresh subject id and key, on the disk (synced) before it returns.
  std::expected<std::string, VaultError> create_subject() const;
  // `fields` sealed under the person's key, bound to their community and subject id.
  std::expected<std::string, VaultError> seal(std::string_view community, std::string_view subject,
                                              const PersonalFields& fields) const;
  // The fields back; Erased when the key is gone.
  std::expected<PersonalFields, VaultError> unseal(std::string_view community, std::string_view subject,
                                                   std::string_view sealed) const;
  // Destroys the person's key: its file overwritten, synced and removed, the directory synced.
  // Returns whether there was a key (false: already destroyed; forgetting twice is harmless).
  std::expected<bool, VaultError> destroy(std::string_view subject) const;
  // Whether the person's key is here and opens.
  bool holds(std::string_view subject) const;
  // Whether a file for the person's key is here at all (whole, damaged or half-destroyed).
  bool has_key_file(std::string_view subject) const;
  // Every subject with a key here.
  std::vector<std::string> subjects() const;

 private:
  Vault(std::filesystem::path keys_dir, std::string wrapping_key);
  std::filesystem::path key_file(std::string_view subject) const;
  std::expected<std::string, VaultError> key_of(std::string_view subject) const;
  std::filesystem::path keys_dir_;
  std::string wrapping_key_;  // 32 bytes, derived from the master key
};

}  // namespace courtyard::hub
