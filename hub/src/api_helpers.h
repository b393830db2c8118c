#pragma once
// Private: the pieces every part of the API answers with (api.cpp, people_api.cpp).
#include <charconv>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "hub/api.h"

namespace courtyard::hub {

using json = nlohmann::json;

// Strings that came from outside (ids in paths, stored records) may not be UTF-8: replaced, never thrown on.
inline HttpResponse json_response(int status, const json& body) {
  return {status, "application/json", body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n"};
}

// A decimal integer and nothing else ("12abc", "", " 1" are not).
inline std::optional<std::int64_t> strict_integer(std::string_view text) {
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

inline HttpResponse error(int status, const std::string& code, const std::string& detail) {
  return json_response(status, json{{"error", code}, {"detail", detail}});
}

inline std::string actor_of(const Principal& who) { return who.label.empty() ? who.token_id : who.token_id + " (" + who.label + ")"; }

// A JSON body as an object whose `text_fields`, where present, are strings; or the 400 to send.
inline std::expected<json, HttpResponse> object_body(const std::string& body, std::initializer_list<const char*> text_fields) {
  json j = body.empty() ? json::object() : json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::unexpected(error(400, "bad_request", "body must be a JSON object"));
  for (const char* field : text_fields) {
    if (auto it = j.find(field); it != j.end() && !it->is_string()) {
      return std::unexpected(error(400, "bad_request", std::string(field) + " must be a string"));
    }
  }
  return j;
}

// Where an append stands: its offset in the requests topic once Kafka confirmed it; else null,
// and "confirmed": false (the hub's producer still has it and goes on trying).
inline json request_fields(json out, std::int64_t offset) {
  out["request_offset"] = offset >= 0 ? json(offset) : json(nullptr);
  out["confirmed"] = offset >= 0;
  return out;
}

}  // namespace courtyard::hub
