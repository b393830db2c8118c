#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "common/text.h"

using namespace courtyard;

TEST_SUITE("common text") {
  TEST_CASE("UTF-8 is told from bytes that only look like it") {
    CHECK(valid_utf8(""));
    CHECK(valid_utf8("gate-1"));
    CHECK(valid_utf8("东门 \xF0\x9F\x9A\xAA"));  // CJK and a 4-byte emoji
    CHECK_FALSE(valid_utf8("\xff"));
    CHECK_FALSE(valid_utf8("\xc0\xaf"));          // overlong '/'
    CHECK_FALSE(valid_utf8("\xe0\x80\xaf"));      // overlong
    CHECK_FALSE(valid_utf8("\xed\xa0\x80"));      // a surrogate
    CHECK_FALSE(valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
    CHECK_FALSE(valid_utf8("\xe4\xb8"));          // cut short
    CHECK_FALSE(valid_utf8("a\x80"));             // a lone continuation byte
  }

  TEST_CASE("printable keeps text, escapes the rest, and is always valid JSON text") {
    CHECK(printable("东门 gate") == "东门 gate");
    CHECK(printable("a\xff" "b") == "a\\xFFb");
    CHECK(printable("line\nbreak\x01") == "line\\x0Abreak\\x01");
    CHECK(printable("back\\slash") == "back\\\\slash");
    CHECK(printable(std::string(300, 'x'), 10) == std::string(10, 'x') + "...");
    std::string every_byte;
    for (int i = 0; i < 256; ++i) every_byte += static_cast<char>(i);
    auto safe = printable(every_byte, 4096);
    CHECK(valid_utf8(safe));
    CHECK_NOTHROW((void)nlohmann::json(safe).dump());
  }
}
