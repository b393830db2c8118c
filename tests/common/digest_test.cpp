#include <doctest/doctest.h>

#include <string>
#include <thread>

#include "common/digest.h"

using namespace courtyard;

TEST_SUITE("common digest") {
  TEST_CASE("SHA-256 gives the standard's digests") {
    CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    Sha256 pieces;
    pieces.update("a");
    pieces.update("bc");
    CHECK(pieces.hex() == sha256_hex("abc"));
  }

  TEST_CASE("HMAC-SHA256 gives RFC 4231's values, whichever key came before") {
    const std::string short_key(20, '\x0b'), long_key(131, '\xaa');  // longer than a block: hashed first
    for (int round = 0; round < 2; ++round) {  // the keyed state is kept per key: switching must not leak
      CHECK(hmac_sha256_hex(short_key, "Hi There") == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
      CHECK(hmac_sha256_hex("Jefe", "what do ya want for nothing?") ==
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
      CHECK(hmac_sha256_hex(long_key, "Test Using Larger Than Block-Size Key - Hash Key First") ==
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
      CHECK(hmac_sha256_hex("", "") == "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
    }
    CHECK(hmac_sha256_hex("Jefe", "what do ya want for nothing?") == hmac_sha256_hex("Jefe", "what do ya want for nothing?"));
  }

  TEST_CASE("each thread computes its own MACs and digests") {
    std::string a, b;
    std::thread one([&] { a = hmac_sha256_hex("Jefe", "what do ya want for nothing?") + sha256_hex("abc"); });
    std::thread two([&] { b = hmac_sha256_hex("Jefe", "what do ya want for nothing?") + sha256_hex("abc"); });
    one.join();
    two.join();
    CHECK(a == b);
    CHECK(a == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
               "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  }
}
