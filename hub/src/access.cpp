#include "hub/access.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <fstream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/digest.h"
#include "common/random.h"

namespace courtyard::hub {
namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool usable(const TokenRecord& t) { return !t.revoked && (t.expires_ms == 0 || now_ms() < t.expires_ms); }

// An exclusive lock on the token file across processes (the hub, `courtyard token add` and
// `revoke` run at once): read, change and replace happen under it, so no change is lost.
class FileLock {
 public:
  explicit FileLock(const std::filesystem::path& file) {
    std::error_code ec;
    if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path(), ec);
    fd_ = ::open((file.string() + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ >= 0) ::flock(fd_, LOCK_EX);
  }
  ~FileLock() {
    if (fd_ >= 0) ::close(fd_);  // closing releases the lock
  }
  bool held() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

constexpr std::string_view kRoles[] = {"admin", "staff", "auditor", "resident"};

// The household's records a resident may read; community-wide ones (gates, occupancy) are not theirs.
constexpr std::string_view kHouseholdPrefixes[] = {"devices/", "rejections/", "alerts/",   "meters/", "elders/",
                                                   "homes/",   "registry/",   "commands/", "notices/", "people/",
                                                   "contacts/", "reads/", "notifications/"};

std::string key_part(std::string_view key, std::size_t index) {
  for (std::size_t i = 0; i < index; ++i) {
    auto slash = key.find('/');
    if (slash == std::string_view::npos) return {};
    key.remove_prefix(slash + 1);
  }
  return std::string(key.substr(0, key.find('/')));
}

}  // namespace

std::string_view to_string(Role role) { return kRoles[static_cast<int>(role)]; }

std::optional<Role> parse_role(std::string_view name) {
  for (int i = 0; i < 4; ++i) {
    if (kRoles[i] == name) return static_cast<Role>(i);
  }
  return std::nullopt;
}

RecordScope scope_of(std::string_view key, const nlohmann::json& record) {
  RecordScope s;
  if (record.is_object()) {
    s.community = record.value("community", "");
    s.unit = record.value("unit", "");
  }
  if (key.starts_with("notifications/")) s.staff_only = !record.is_object() || record.value("to", "") != "family";
  // Keys that carry their place: homes/{c}/{unit}, communities/{c}/..., registry/{c}/...
  if (key.starts_with("homes/")) {
    s.community = key_part(key, 1);
    s.unit = key_part(key, 2);
  } else if (key.starts_with("communities/") || key.starts_with("registry/") || key.starts_with("notices/") ||
             key.starts_with("people/") || key.starts_with("rosters/") || key.starts_with("site/") ||
             key.starts_with("responses/") || key.starts_with("notifications/")) {
    s.community = key_part(key, 1);
  } else if (key.starts_with("contacts/") || key.starts_with("reads/")) {  // {c}/{unit}/...
    s.community = key_part(key, 1);
    s.unit = key_part(key, 2);
  }
  return s;
}

bool may_read(const Principal& who, std::string_view key, const RecordScope& scope) {
  switch (who.role) {
    case Role::Admin:
    case Role::Auditor:
      return true;
    case Role::Staff:
      return scope.community == who.community;
    case Role::Resident: {
      if (scope.community != who.community) return false;
      bool household_kind = false;
      for (auto prefix : kHouseholdPrefixes) household_kind |= key.starts_with(prefix);
      if (!household_kind || scope.staff_only) return false;
      // A notice without a unit is for the whole community.
      if (key.starts_with("notices/") && scope.unit.empty()) return true;
      return !scope.unit.empty() && scope.unit == who.unit;
    }
  }
  return false;
}

bool redact_for(const Principal& who, std::string_view key, nlohmann::json& record) {
  if (who.role != Role::Resident || !key.starts_with("alerts/") || !record.is_object()) return false;
  bool changed = false;
  if (auto it = record.find("assignee"); it != record.end() && !(it->is_string() && it->get_ref<const std::string&>().empty())) {
    *it = "";
    changed = true;
  }
  if (auto timeline = record.find("timeline"); timeline != record.end() && timeline->is_array()) {
    for (auto& entry : *timeline) {
      if (!entry.is_object()) continue;
      const std::string what = entry.value("what", ""), by = entry.value("by", "");
      if ((by == "dispatch" || what == "reassigned") && entry.contains("note")) {
        entry.erase("note");
        changed = true;
      }
    }
  }
  return changed;
}

bool may_act(const Principal& who, const std::string& community, const std::string& unit) {
  switch (who.role) {
    case Role::Admin:
      return true;
    case Role::Staff:
      return community == who.community;
    case Role::Resident:
      return community == who.community && !unit.empty() && unit == who.unit;
    case Role::Auditor:
      return false;
  }
  return false;
}

bool may_see_personal(const Principal& who, const std::string& community, const std::string& unit) {
  switch (who.role) {
    case Role::Admin:
      return true;
    case Role::Staff:
      return !community.empty() && community == who.community;
    case Role::Resident:
      return !community.empty() && community == who.community && !unit.empty() && unit == who.unit;
    case Role::Auditor:
      return false;
  }
  return false;
}

TokenStore::TokenStore(std::filesystem::path file) : file_(std::move(file)) {}

void TokenStore::reload_if_changed() const {
  std::error_code ec;
  auto mtime = std::filesystem::last_write_time(file_, ec);
  if (ec) {
    records_.clear();
    by_hash_.clear();
    loaded_mtime_ = {};
    return;
  }
  auto size = std::filesystem::file_size(file_, ec);
  if (mtime == loaded_mtime_ && size == loaded_size_) return;
  std::ifstream in(file_);
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_array()) return;  // keep the last good set while a writer is mid-way
  records_.clear();
  by_hash_.clear();
  for (const auto& r : j) {
    // A record that does not read cleanly grants nothing (fail closed): an unknown role, a field of
    // the wrong type, a staff or resident token without its place.
    TokenRecord t;
    try {
      auto role = r.is_object() ? parse_role(r.value("role", "")) : std::nullopt;
      if (!role) {
        spdlog::warn("tokens: a record with an unknown role is ignored ({})", file_.string());
        continue;
      }
      t.role = *role;
      t.id = r.value("id", "");
      t.sha256 = r.value("sha256", "");
      t.community = r.value("community", "");
      t.unit = r.value("unit", "");
      t.label = r.value("label", "");
      t.created_ms = r.value("created_ms", std::int64_t{0});
      t.expires_ms = r.value("expires_ms", std::int64_t{0});
      t.revoked = r.value("revoked", false);
    } catch (const nlohmann::json::exception& e) {
      spdlog::warn("tokens: a malformed record is ignored ({}): {}", file_.string(), e.what());
      continue;
    }
    if (t.sha256.size() != 64 || ((t.role == Role::Staff || t.role == Role::Resident) && t.community.empty()) ||
        (t.role == Role::Resident && t.unit.empty())) {
      spdlog::warn("tokens: record {} is incomplete and ignored", t.id);
      continue;
    }
    by_hash_[t.sha256] = records_.size();
    records_.push_back(std::move(t));
  }
  loaded_mtime_ = mtime;
  loaded_size_ = size;
}

std::expected<void, std::string> TokenStore::save() const {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& t : records_) {
    j.push_back({{"id", t.id}, {"sha256", t.sha256}, {"role", to_string(t.role)}, {"community", t.community},
                 {"unit", t.unit}, {"label", t.label}, {"created_ms", t.created_ms}, {"expires_ms", t.expires_ms},
                 {"revoked", t.revoked}});
  }
  std::error_code ec;
  if (file_.has_parent_path()) std::filesystem::create_directories(file_.parent_path(), ec);
  auto tmp = file_;
  tmp += ".tmp." + random_token(6);
  {
    // Created 0600 and new (O_EXCL): never wider, never someone else's file.
    const std::string text = j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return std::unexpected("cannot write " + tmp.string());
    const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
    ::close(fd);
    if (!written) {
      std::filesystem::remove(tmp, ec);
      return std::unexpected("cannot write " + tmp.string());
    }
  }
  std::filesystem::rename(tmp, file_, ec);
  if (ec) return std::unexpected("cannot replace " + file_.string() + ": " + ec.message());
  return {};
}

std::expected<std::string, std::string> TokenStore::add(Role role, const std::string& community,
                                                        const std::string& unit, const std::string& label,
                                                        std::int64_t ttl_ms) {
  if ((role == Role::Staff || role == Role::Resident) && community.empty()) {
    return std::unexpected(std::string(to_string(role)) + " tokens need --community");
  }
  if (role == Role::Resident && unit.empty()) return std::unexpected(std::string("resident tokens need --household (the unit)"));
  std::lock_guard lock(mu_);
  FileLock file_lock(file_);
  if (!file_lock.held()) return std::unexpected("cannot lock " + file_.string());
  loaded_mtime_ = {};  // under the lock, read what is there now
  reload_if_changed();
  TokenRecord t;
  t.id = "tok_" + random_token(6);
  std::string secret = "cy_" + random_token(24);
  t.sha256 = sha256_hex(secret);
  t.role = role;
  t.community = role == Role::Admin || role == Role::Auditor ? "" : community;
  t.unit = role == Role::Resident ? unit : "";
  t.label = label;
  t.created_ms = now_ms();
  t.expires_ms = ttl_ms > 0 ? t.created_ms + ttl_ms : 0;
  records_.push_back(t);
  if (auto ok = save(); !ok) {
    records_.pop_back();
    return std::unexpected(ok.error());
  }
  loaded_mtime_ = {};  // re-read our own write next time, like anyone else's
  return secret;
}

std::expected<void, std::string> TokenStore::revoke(const std::string& id) {
  std::lock_guard lock(mu_);
  FileLock file_lock(file_);
  if (!file_lock.held()) return std::unexpected("cannot lock " + file_.string());
  loaded_mtime_ = {};  // under the lock, read what is there now
  reload_if_changed();
  for (auto& t : records_) {
    if (t.id != id) continue;
    t.revoked = true;
    loaded_mtime_ = {};
    return save();
  }
  return std::unexpected("no token " + id);
}

std::vector<TokenRecord> TokenStore::list() const {
  std::lock_guard lock(mu_);
  reload_if_changed();
  return records_;
}

std::optional<Principal> TokenStore::authenticate(std::string_view secret) const {
  if (secret.empty()) return std::nullopt;
  auto hash = sha256_hex(secret);
  std::lock_guard lock(mu_);
  reload_if_changed();
  auto it = by_hash_.find(hash);
  if (it == by_hash_.end()) return std::nullopt;
  const auto& t = records_[it->second];
  if (!usable(t)) return std::nullopt;
  return Principal{t.id, t.role, t.community, t.unit, t.label};
}

bool TokenStore::valid(const std::string& token_id) const {
  std::lock_guard lock(mu_);
  reload_if_changed();
  for (const auto& t : records_) {
    if (t.id == token_id) return usable(t);
  }
  return false;
}

}  // namespace courtyard::hub
