#pragma once
// Text from outside (device payloads, Kafka headers, URL paths) is bytes until checked. These
// helpers decide whether bytes are UTF-8, and turn any bytes into text that is safe to put in a
// message, a log line or a JSON document. Pure functions; no locale.
#include <cstddef>
#include <string>
#include <string_view>

namespace courtyard {

// Well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF.
bool valid_utf8(std::string_view bytes) noexcept;

// `bytes` as printable UTF-8: valid text is kept, every other byte and every control character
// becomes \xNN, and the result is cut to about `max` bytes with "...". Safe to quote anywhere.
std::string printable(std::string_view bytes, std::size_t max = 128);

}  // namespace courtyard
