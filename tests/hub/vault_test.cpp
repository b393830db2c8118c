// The privacy vault's keys: wrapping, sealing, and forgetting by destroying a key.
#include <sys/stat.h>

#include <fstream>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "hub/vault.h"
#include "temp_dir.h"

using namespace courtyard;
using hub::PersonalFields;
using hub::Vault;
using hub::VaultError;

namespace {

Vault open_vault(const test::TempDir& dir, const std::string& master = "master-key") {
  auto vault = Vault::open(dir.path() / "keys", dir.path() / master);
  REQUIRE(vault);
  return std::move(*vault);
}

const PersonalFields kDaughter{"Wang Mei", "+86 138 0013 8000", "daughter", "", "calls after 18:00"};

}  // namespace

TEST_CASE("a person's fields sealed by the vault open again only with their key, community and subject") {
  test::TempDir dir;
  auto vault = open_vault(dir);
  auto subject = vault.create_subject();
  REQUIRE(subject);
  CHECK(hub::valid_subject(*subject));
  auto sealed = vault.seal("sunny-garden", *subject, kDaughter);
  REQUIRE(sealed);
  CHECK(sealed->find("Wang Mei") == std::string::npos);
  CHECK(sealed->find("138") == std::string::npos);
  auto opened = vault.unseal("sunny-garden", *subject, *sealed);
  REQUIRE(opened);
  CHECK(*opened == kDaughter);

  SUBCASE("moved to another community or person, the sealed fields are refused as damaged") {
    auto other = vault.create_subject();
    REQUIRE(other);
    CHECK(vault.unseal("river-view", *subject, *sealed).error().code == VaultError::Code::Damaged);
    CHECK(vault.unseal("sunny-garden", *other, *sealed).error().code == VaultError::Code::Damaged);
  }
  SUBCASE("one flipped byte is refused") {
    auto altered = *sealed;
    altered[altered.size() / 2] ^= 1;
    CHECK(vault.unseal("sunny-garden", *subject, altered).error().code == VaultError::Code::Damaged);
    CHECK(vault.unseal("sunny-garden", *subject, "").error().code == VaultError::Code::Damaged);
  }
}

TEST_CASE("the master key and the key files are the owner's alone, and keys are stored wrapped") {
  test::TempDir dir;
  auto vault = open_vault(dir);
  auto subject = vault.create_subject();
  REQUIRE(subject);
  struct stat st{};
  REQUIRE(::stat((dir.path() / "master-key").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  REQUIRE(::stat((dir.path() / "keys" / (*subject + ".key")).c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  REQUIRE(::stat((dir.path() / "keys").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  CHECK(vault.subjects() == std::vector<std::string>{*subject});

  SUBCASE("a vault opened with another master key cannot unwrap the keys") {
    auto sealed = vault.seal("c", *subject, kDaughter);
    REQUIRE(sealed);
    auto stranger = Vault::open(dir.path() / "keys", dir.path() / "another-master");
    REQUIRE(stranger);
    CHECK(stranger->unseal("c", *subject, *sealed).error().code == VaultError::Code::Damaged);
    CHECK(stranger->seal("c", *subject, kDaughter).error().code == VaultError::Code::Damaged);
  }
  SUBCASE("the same master key opens them again after a restart") {
    auto sealed = vault.seal("c", *subject, kDaughter);
    auto again = open_vault(dir);
    CHECK(again.unseal("c", *subject, *sealed).value() == kDaughter);
  }
}

TEST_CASE("forgetting a person destroys their key: their sealed fields never open again, anywhere") {
  test::TempDir dir;
  auto vault = open_vault(dir);
  auto mother = vault.create_subject(), daughter = vault.create_subject();
  REQUIRE(mother);
  REQUIRE(daughter);
  auto hers = vault.seal("c", *daughter, kDaughter);
  auto mothers = vault.seal("c", *mother, PersonalFields{"Li Lan", "", "", "", ""});
  // A backup of the key directory taken before the forgetting.
  std::filesystem::copy(dir.path() / "keys", dir.path() / "backup");

  CHECK(vault.destroy(*daughter).value() == true);
  CHECK_FALSE(std::filesystem::exists(dir.path() / "keys" / (*daughter + ".key")));
  CHECK(vault.unseal("c", *daughter, *hers).error().code == VaultError::Code::Erased);
  CHECK(vault.seal("c", *daughter, kDaughter).error().code == VaultError::Code::Erased);
  CHECK_FALSE(vault.holds(*daughter));
  CHECK(vault.unseal("c", *mother, *mothers).value().name == "Li Lan");
  CHECK(vault.subjects() == std::vector<std::string>{*mother});

  SUBCASE("forgetting twice is harmless") { CHECK(vault.destroy(*daughter).value() == false); }
  SUBCASE("a key file left half-destroyed (zeros) counts as destroyed, not damaged") {
    std::ofstream(dir.path() / "keys" / (*daughter + ".key"), std::ios::binary) << std::string(76, '\0');
    CHECK(vault.unseal("c", *daughter, *hers).error().code == VaultError::Code::Erased);
  }
  SUBCASE("a restored backup still holds her key: restoring must destroy it again (docs/privacy.md)") {
    auto restored = Vault::open(dir.path() / "backup", dir.path() / "master-key");
    REQUIRE(restored);
    CHECK(restored->holds(*daughter));
    CHECK(restored->destroy(*daughter).value());
    CHECK(restored->unseal("c", *daughter, *hers).error().code == VaultError::Code::Erased);
  }
}

TEST_CASE("the tools open the hub's vault and never start a new one") {
  test::TempDir dir;
  auto made = Vault::open(dir.path() / "keys", dir.path() / "master", /*make_master=*/false);
  REQUIRE_FALSE(made);
  CHECK(made.error().find("no vault master key") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(dir.path() / "master"));
  open_vault(dir, "master");
  CHECK(Vault::open(dir.path() / "keys", dir.path() / "master", /*make_master=*/false).has_value());
}

TEST_CASE("subject ids from outside never reach the file system") {
  test::TempDir dir;
  auto vault = open_vault(dir);
  std::ofstream(dir.path() / "outside.key") << "x";
  for (const std::string& hostile : std::vector<std::string>{"../outside", "..", "", "/etc/passwd", "p-../../outside", "p-0123456789abcdef0123456",
                              "p-0123456789ABCDEF01234567", std::string("p-0123456789abcdef0123456\0", 26)}) {
    CAPTURE(hostile);
    CHECK_FALSE(hub::valid_subject(hostile));
    CHECK(vault.destroy(hostile).error().code == VaultError::Code::Erased);
    CHECK(vault.unseal("c", hostile, "x").error().code == VaultError::Code::Erased);
  }
  CHECK(std::filesystem::exists(dir.path() / "outside.key"));
}

TEST_CASE("personal fields from a request: a name is required, and every field is short, typed text") {
  using nlohmann::json;
  CHECK(hub::personal_fields_from_json(json{{"name", "Wang Mei"}, {"phone", "+86 (138) 0013-8000"}}).has_value());
  CHECK(hub::personal_fields_from_json(json{{"name", "王美"}}).value().name == "王美");
  CHECK_FALSE(hub::personal_fields_from_json(json{{"phone", "1"}}));
  CHECK_FALSE(hub::personal_fields_from_json(json{{"name", ""}}));
  CHECK_FALSE(hub::personal_fields_from_json(json{{"name", 7}}));
  CHECK_FALSE(hub::personal_fields_from_json(json{{"name", "a"}, {"phone", "call me"}}));
  CHECK_FALSE(hub::personal_fields_from_json(json{{"name", std::string(101, 'a')}}));
  CHECK_FALSE(hub::personal_fields_from_json(json{{"name", "a\nb"}}));
  CHECK_FALSE(hub::personal_fields_from_json(json{{"name", "\xff\xfe"}}));
  CHECK_FALSE(hub::personal_fields_from_json(json::array()));
}
