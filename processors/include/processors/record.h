#pragma once
// A stored record, whatever its encoding: the states written per event (a device's record first)
// are MessagePack maps, written straight from their typed state; the rest are JSON text
// (decision 0022). A record's first byte tells them apart: a JSON record is an object ('{'), a
// MessagePack map starts with a byte of 0x80 or above. Both read as the same JSON document, and
// the API, the WebSocket and the digests see JSON text only.
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace courtyard::processors {

bool is_binary_record(std::string_view raw);
// The record as a document. Throws nlohmann::json::exception when it is neither encoding.
nlohmann::json record_json(std::string_view raw);
// The same, never throwing: a discarded value (is_discarded()) when it is neither, as
// nlohmann::json::parse(raw, nullptr, false) gives for text that is not JSON.
nlohmann::json parse_record(std::string_view raw);
// The record as JSON text: a JSON record as it is, a binary one rendered (keys in order, as
// nlohmann::json::dump writes them: the text the JSON encoding of the same state was).
std::string record_text(std::string raw);

}  // namespace courtyard::processors
