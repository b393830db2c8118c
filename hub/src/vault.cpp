#include "hub/vault.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sodium.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "common/random.h"
#include "common/text.h"

namespace courtyard::hub {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr std::string_view kKeyMagic = "CYK1", kSealMagic = "CYV1";
constexpr std::size_t kNonce = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
constexpr std::size_t kTag = crypto_aead_xchacha20poly1305_ietf_ABYTES;
constexpr std::size_t kKey = crypto_aead_xchacha20poly1305_ietf_KEYBYTES;

std::unexpected<VaultError> fail(VaultError::Code code, std::string detail) {
  return std::unexpected(VaultError{code, std::move(detail)});
}

// A key's bytes, wiped when it goes.
struct Secret {
  std::string bytes;
  explicit Secret(std::size_t n) : bytes(n, '\0') {}
  explicit Secret(std::string b) : bytes(std::move(b)) {}
  ~Secret() { sodium_memzero(bytes.data(), bytes.size()); }
  Secret(const Secret&) = delete;
  Secret& operator=(const Secret&) = delete;
  unsigned char* data() { return reinterpret_cast<unsigned char*>(bytes.data()); }
};

const unsigned char* u(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

// magic || nonce || XChaCha20-Poly1305(plain, ad) under `key`.
std::string encrypt(std::string_view magic, std::string_view key, std::string_view plain, std::string_view ad) {
  std::string out(magic.size() + kNonce + plain.size() + kTag, '\0');
  std::memcpy(out.data(), magic.data(), magic.size());
  auto* nonce = reinterpret_cast<unsigned char*>(out.data() + magic.size());
  randombytes_buf(nonce, kNonce);
  unsigned long long written = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(nonce + kNonce, &written, u(plain), plain.size(), u(ad), ad.size(), nullptr,
                                             nonce, u(key));
  out.resize(magic.size() + kNonce + written);
  return out;
}

std::optional<std::string> decrypt(std::string_view magic, std::string_view key, std::string_view sealed, std::string_view ad) {
  if (sealed.size() < magic.size() + kNonce + kTag || !sealed.starts_with(magic)) return std::nullopt;
  const auto* nonce = u(sealed.substr(magic.size()));
  const auto body = sealed.substr(magic.size() + kNonce);
  std::string plain(body.size() - kTag, '\0');
  unsigned long long n = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(reinterpret_cast<unsigned char*>(plain.data()), &n, nullptr, u(body),
                                                 body.size(), u(ad), ad.size(), nonce, u(key)) != 0) {
    return std::nullopt;
  }
  plain.resize(n);
  return plain;
}

std::string key_ad(std::string_view subject) { return "courtyard.vault.key.v1\n" + std::string(subject); }
std::string fields_ad(std::string_view community, std::string_view subject) {
  return "courtyard.vault.fields.v1\n" + std::string(community) + "\n" + std::string(subject);
}

bool sync_dir(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const auto n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

std::expected<std::string, std::string> text_field(const json& j, const char* name, std::size_t max, bool required) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) {
    if (required) return std::unexpected(std::string(name) + " is required");
    return std::string();
  }
  if (!it->is_string()) return std::unexpected(std::string(name) + " must be a string");
  auto s = it->get<std::string>();
  if (!valid_utf8(s)) return std::unexpected(std::string(name) + " must be UTF-8 text");
  if (s.size() > max) return std::unexpected(std::string(name) + " is longer than " + std::to_string(max) + " bytes");
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return std::unexpected(std::string(name) + " must not hold control characters");
  }
  if (required && s.empty()) return std::unexpected(std::string(name) + " must not be empty");
  return s;
}

}  // namespace

std::expected<PersonalFields, std::string> personal_fields_from_json(const json& j) {
  if (!j.is_object()) return std::unexpected(std::string("the person's fields must be a JSON object"));
  PersonalFields f;
  auto name = text_field(j, "name", 100, true);
  if (!name) return std::unexpected(name.error());
  f.name = *name;
  auto phone = text_field(j, "phone", 32, false);
  if (!phone) return std::unexpected(phone.error());
  if (phone->find_first_not_of("0123456789+-() ") != std::string::npos) {
    return std::unexpected(std::string("phone holds digits, spaces and + - ( ) only"));
  }
  f.phone = *phone;
  auto relationship = text_field(j, "relationship", 32, false);
  if (!relationship) return std::unexpected(relationship.error());
  f.relationship = *relationship;
  auto id_number = text_field(j, "id_number", 32, false);
  if (!id_number) return std::unexpected(id_number.error());
  f.id_number = *id_number;
  auto notes = text_field(j, "notes", 500, false);
  if (!notes) return std::unexpected(notes.error());
  f.notes = *notes;
  return f;
}

json to_json(const PersonalFields& f) {
  return json{{"name", f.name}, {"phone", f.phone}, {"relationship", f.relationship}, {"id_number", f.id_number},
              {"notes", f.notes}};
}

bool valid_subject(std::string_view subject) {
  return subject.size() == 26 && subject.starts_with("p-") &&
         subject.substr(2).find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

std::expected<Vault, std::string> Vault::open(const fs::path& keys_dir, const fs::path& master_key_file, bool make_master) {
  if (sodium_init() < 0) return std::unexpected(std::string("libsodium cannot start"));
  std::error_code ec;
  if (!make_master && !fs::exists(master_key_file, ec)) {
    return std::unexpected("no vault master key at " + master_key_file.string() +
                           " (the hub makes it on its first start; is this the hub's var directory?)");
  }
  fs::create_directories(keys_dir, ec);
  if (ec) return std::unexpected("cannot make the vault's key directory " + keys_dir.string() + ": " + ec.message());
  fs::permissions(keys_dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  struct stat st{};
  if (::stat(keys_dir.c_str(), &st) != 0 || st.st_uid != ::geteuid()) {
    return std::unexpected("the vault's key directory " + keys_dir.string() +
                           " belongs to another user: run as the hub's user");
  }
  auto master = read_or_create_secret(master_key_file.string(), 32);
  if (!master) return std::unexpected("the vault's master key: " + master.error());
  if (master->size() < 32) return std::unexpected("the vault's master key in " + master_key_file.string() + " is too short");
  // The wrapping key: BLAKE2b of the master key's text under a label of its own.
  constexpr std::string_view kLabel = "courtyard.vault.wrap.v1";
  Secret wrap(kKey);
  crypto_generichash(wrap.data(), kKey, u(*master), master->size(), u(kLabel), kLabel.size());
  sodium_memzero(master->data(), master->size());
  return Vault(keys_dir, wrap.bytes);
}

Vault::Vault(fs::path keys_dir, std::string wrapping_key)
    : keys_dir_(std::move(keys_dir)), wrapping_key_(std::move(wrapping_key)) {}

fs::path Vault::key_file(std::string_view subject) const { return keys_dir_ / (std::string(subject) + ".key"); }

std::expected<std::string, VaultError> Vault::create_subject() const {
  unsigned char id[12];
  randombytes_buf(id, sizeof id);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string subject = "p-";
  for (unsigned char b : id) subject += {kHex[b >> 4], kHex[b & 15]};
  Secret key(kKey);
  crypto_aead_xchacha20poly1305_ietf_keygen(key.data());
  const std::string wrapped = encrypt(kKeyMagic, wrapping_key_, key.bytes, key_ad(subject));
  const fs::path file = key_file(subject), temp = keys_dir_ / (subject + ".tmp");
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return fail(VaultError::Code::Io, "cannot write " + temp.string() + ": " + std::strerror(errno));
  const bool written = write_all(fd, wrapped) && ::fsync(fd) == 0;
  ::close(fd);
  // link() refuses an existing file: a key once made is never replaced.
  const bool linked = written && ::link(temp.c_str(), file.c_str()) == 0;
  const int err = errno;
  ::unlink(temp.c_str());
  if (!linked) return fail(VaultError::Code::Io, "cannot write " + file.string() + ": " + std::strerror(err));
  if (!sync_dir(keys_dir_)) return fail(VaultError::Code::Io, "cannot sync " + keys_dir_.string());
  return subject;
}

std::expected<std::string, VaultError> Vault::key_of(std::string_view subject) const {
  if (!valid_subject(subject)) return fail(VaultError::Code::Erased, "not a subject id of this vault");
  int fd = ::open(key_file(subject).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT) return fail(VaultError::Code::Erased, "the person's key is destroyed");
    return fail(VaultError::Code::Io, "cannot read the key of " + std::string(subject) + ": " + std::strerror(errno));
  }
  char buffer[256];
  const auto n = ::read(fd, buffer, sizeof buffer);
  ::close(fd);
  if (n < 0) return fail(VaultError::Code::Io, "cannot read the key of " + std::string(subject) + ": " + std::strerror(errno));
  std::string_view wrapped(buffer, static_cast<std::size_t>(n));
  auto key = decrypt(kKeyMagic, wrapping_key_, wrapped, key_ad(subject));
  // All zeros: destroyed by a process that stopped between overwriting and removing the file.
  const bool zeros = wrapped.find_first_not_of('\0') == std::string_view::npos;
  sodium_memzero(buffer, sizeof buffer);
  if (!key || key->size() != kKey) {
    if (zeros) return fail(VaultError::Code::Erased, "the person's key is destroyed");
    return fail(VaultError::Code::Damaged, "the key of " + std::string(subject) + " does not open with this master key");
  }
  return std::move(*key);
}

std::expected<std::string, VaultError> Vault::seal(std::string_view community, std::string_view subject,
                                                   const PersonalFields& fields) const {
  auto key = key_of(subject);
  if (!key) return std::unexpected(key.error());
  Secret held(std::move(*key));
  Secret plain(to_json(fields).dump());
  return encrypt(kSealMagic, held.bytes, plain.bytes, fields_ad(community, subject));
}

std::expected<PersonalFields, VaultError> Vault::unseal(std::string_view community, std::string_view subject,
                                                        std::string_view sealed) const {
  auto key = key_of(subject);
  if (!key) return std::unexpected(key.error());
  Secret held(std::move(*key));
  auto plain = decrypt(kSealMagic, held.bytes, sealed, fields_ad(community, subject));
  if (!plain) return fail(VaultError::Code::Damaged, "the sealed fields of " + std::string(subject) + " do not open");
  Secret text(std::move(*plain));
  auto fields = personal_fields_from_json(json::parse(text.bytes, nullptr, false));
  if (!fields) return fail(VaultError::Code::Damaged, "the sealed fields of " + std::string(subject) + ": " + fields.error());
  return *fields;
}

std::expected<bool, VaultError> Vault::destroy(std::string_view subject) const {
  if (!valid_subject(subject)) return fail(VaultError::Code::Erased, "not a subject id of this vault");
  const fs::path file = key_file(subject);
  int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT) return false;
    return fail(VaultError::Code::Io, "cannot destroy the key of " + std::string(subject) + ": " + std::strerror(errno));
  }
  // Overwritten in place first: a copy of the file made later, or a crash before the unlink,
  // holds zeros. (What the disk's firmware keeps of the old blocks is beyond any file system call.)
  struct stat st{};
  const bool wiped = ::fstat(fd, &st) == 0 && write_all(fd, std::string(static_cast<std::size_t>(st.st_size), '\0')) &&
                     ::fsync(fd) == 0;
  ::close(fd);
  if (!wiped) return fail(VaultError::Code::Io, "cannot overwrite the key of " + std::string(subject));
  if (::unlink(file.c_str()) != 0 && errno != ENOENT) {
    return fail(VaultError::Code::Io, "cannot remove the key of " + std::string(subject) + ": " + std::strerror(errno));
  }
  if (!sync_dir(keys_dir_)) return fail(VaultError::Code::Io, "cannot sync " + keys_dir_.string());
  return true;
}

bool Vault::holds(std::string_view subject) const { return key_of(subject).has_value(); }

bool Vault::has_key_file(std::string_view subject) const {
  std::error_code ec;
  return valid_subject(subject) && fs::exists(fs::symlink_status(key_file(subject), ec));
}

std::vector<std::string> Vault::subjects() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(keys_dir_, ec)) {
    const auto name = entry.path().filename().string();
    if (name.ends_with(".key") && valid_subject(std::string_view(name).substr(0, name.size() - 4))) {
      out.push_back(name.substr(0, name.size() - 4));
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace courtyard::hub
