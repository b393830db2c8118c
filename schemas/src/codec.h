#pragma once
// Private: the two device payload decoders behind decode_device_payload.
#include "schemas/event.h"

namespace courtyard::schemas {

std::expected<Event, Rejection> parse_device_json(const Topic& topic, std::string_view payload);
std::expected<Event, Rejection> parse_device_flatbuffer(const Topic& topic, std::string_view payload);

}  // namespace courtyard::schemas
