#include <doctest/doctest.h>

#include <sys/stat.h>

#include "common/signing.h"
#include "temp_dir.h"

using namespace courtyard;

TEST_SUITE("common signing") {
  TEST_CASE("a record signed with the hub's key verifies with its public key, and nothing else does") {
    test::TempDir dir;
    auto signer = Signer::open_or_create(dir.str("secrets/audit-key"));
    REQUIRE_MESSAGE(signer, (signer ? "" : signer.error()));
    const std::string record = R"({"seq":1,"hub":"h"})";
    const auto signature = signer->sign(record);
    const auto pub = signer->public_key_pem();
    CHECK(verify_signature(pub, record, signature).has_value());
    CHECK_FALSE(verify_signature(pub, R"({"seq":2,"hub":"h"})", signature).has_value());  // altered
    CHECK_FALSE(verify_signature(pub, record, "not base64!").has_value());
    CHECK_FALSE(verify_signature("not a key", record, signature).has_value());
    auto other = Signer::open_or_create(dir.str("secrets/other-key"));
    REQUIRE(other);
    CHECK_FALSE(verify_signature(other->public_key_pem(), record, signature).has_value());  // another key's
    CHECK(key_id_of(pub).value() == signer->key_id());
    CHECK(signer->key_id().size() == 16);
  }

  TEST_CASE("the key is made once, 0600, and read back the same by every later start") {
    test::TempDir dir;
    const auto path = dir.str("audit-key");
    auto first = Signer::open_or_create(path);
    REQUIRE(first);
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    auto again = Signer::open_or_create(path);
    REQUIRE(again);
    CHECK(again->key_id() == first->key_id());
    CHECK(verify_signature(first->public_key_pem(), "x", again->sign("x")).has_value());
  }
}
