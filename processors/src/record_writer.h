#pragma once
// Writes a binary record (a MessagePack map, processors/record.h) straight from a typed state,
// with msgpack-cxx's packer: no document is built. Rendered, it reads as the JSON the state's
// to_json would have made, as long as the writer is given the same fields with the same types, in
// any order (JSON objects keep their keys sorted): a unit test per state holds it to that.
//
// COURTYARD_DEFINE_STATE(Type, fields...) gives a struct both its JSON
// (NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT) and its binary record from one field list, so
// the two cannot drift apart.
#include <bit>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <msgpack.hpp>
#include <nlohmann/json.hpp>

#include "common/text.h"

namespace courtyard::processors {

class RecordWriter {
 public:
  // A map of `fields` entries (the exact count: MessagePack states it first).
  explicit RecordWriter(std::uint32_t fields) : packer_(out_) { packer_.pack_map(fields); }

  template <class T>
  RecordWriter& field(std::string_view key, const T& value) {
    text(key);
    return this->value(value);
  }
  // A map within: the next `fields` fields are its entries.
  RecordWriter& map(std::string_view key, std::uint32_t fields) {
    text(key);
    packer_.pack_map(fields);
    return *this;
  }

  RecordWriter& value(std::string_view s) { return text(s); }
  RecordWriter& value(const std::string& s) { return text(s); }
  RecordWriter& value(const char* s) { return text(s); }
  RecordWriter& value(bool b) {
    b ? packer_.pack_true() : packer_.pack_false();
    return *this;
  }
  RecordWriter& value(int n) { return value(static_cast<std::int64_t>(n)); }
  RecordWriter& value(std::int64_t n) {
    packer_.pack_int64(n);
    return *this;
  }
  RecordWriter& value(std::uint32_t n) { return value(static_cast<std::uint64_t>(n)); }
  RecordWriter& value(std::uint64_t n) {
    packer_.pack_uint64(n);
    return *this;
  }
  // Always a float 64: msgpack-cxx's pack_double writes an integral double as an integer, which
  // would render 61.0 as 61, not the JSON the state's to_json makes.
  RecordWriter& value(double d) {
    const auto bits = std::bit_cast<std::uint64_t>(d);
    out_.s.push_back(static_cast<char>(0xcb));
    for (int shift = 56; shift >= 0; shift -= 8) out_.s.push_back(static_cast<char>((bits >> shift) & 0xff));
    return *this;
  }
  template <class T>
  RecordWriter& value(const std::optional<T>& v) {
    if (v) return value(*v);
    packer_.pack_nil();
    return *this;
  }
  template <class V>
  RecordWriter& value(const std::map<std::string, V>& map) {
    packer_.pack_map(static_cast<std::uint32_t>(map.size()));
    for (const auto& [k, v] : map) text(k).value(v);
    return *this;
  }
  template <class V>
  RecordWriter& value(const std::vector<V>& values) {
    packer_.pack_array(static_cast<std::uint32_t>(values.size()));
    for (const auto& v : values) value(v);
    return *this;
  }
  RecordWriter& value(const std::set<std::string>& values) {
    packer_.pack_array(static_cast<std::uint32_t>(values.size()));
    for (const auto& v : values) text(v);
    return *this;
  }
  // A document, as nlohmann::json::to_msgpack would write it (every number kind kept).
  RecordWriter& value(const nlohmann::json& j) {
    using T = nlohmann::json::value_t;
    switch (j.type()) {
      case T::object:
        packer_.pack_map(static_cast<std::uint32_t>(j.size()));
        for (const auto& [k, v] : j.items()) text(k).value(v);
        break;
      case T::array:
        packer_.pack_array(static_cast<std::uint32_t>(j.size()));
        for (const auto& v : j) value(v);
        break;
      case T::string: text(j.get_ref<const std::string&>()); break;
      case T::boolean: value(j.get<bool>()); break;
      case T::number_integer: value(j.get<std::int64_t>()); break;
      case T::number_unsigned: value(j.get<std::uint64_t>()); break;
      case T::number_float: value(j.get<double>()); break;
      case T::null:
      case T::discarded:
      case T::binary: packer_.pack_nil(); break;
    }
    return *this;
  }
  // A struct with a COURTYARD_DEFINE_RECORD (found by argument-dependent lookup).
  template <class T>
    requires requires(RecordWriter& w, const T& s) { write_record_fields(w, s); }
  RecordWriter& value(const T& s) {
    packer_.pack_map(record_field_count(static_cast<const T*>(nullptr)));
    write_record_fields(*this, s);
    return *this;
  }

  std::string take() && { return std::move(out_.s); }

 private:
  struct Out {
    std::string s;
    void write(const char* p, std::size_t n) { s.append(p, n); }
  };
  // Text must be UTF-8, as it was when these records were JSON (dump threw): a fold that would
  // store anything else throws, and its message is quarantined, never served broken.
  RecordWriter& text(std::string_view s) {
    if (!valid_utf8(s)) throw std::invalid_argument("a record's text is not valid UTF-8: " + printable(s, 64));
    packer_.pack_str(static_cast<std::uint32_t>(s.size()));
    packer_.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
    return *this;
  }

  Out out_;
  msgpack::packer<Out> packer_;
};

// The record of a struct with a COURTYARD_DEFINE_RECORD.
template <class T>
std::string record_of(const T& s) {
  RecordWriter w(record_field_count(static_cast<const T*>(nullptr)));
  write_record_fields(w, s);
  return std::move(w).take();
}

}  // namespace courtyard::processors

#define COURTYARD_RECORD_FIELD(member) w.field(#member, s.member);
#define COURTYARD_RECORD_ONE(member) +1
// The binary twin of NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Type, fields...): the same
// names, so the record renders as the JSON that macro writes.
#define COURTYARD_DEFINE_RECORD(Type, ...)                                                             \
  [[maybe_unused]] inline constexpr std::uint32_t record_field_count(const Type*) {                   \
    return 0 NLOHMANN_JSON_EXPAND(NLOHMANN_JSON_PASTE(COURTYARD_RECORD_ONE, __VA_ARGS__));             \
  }                                                                                                    \
  [[maybe_unused]] inline void write_record_fields(::courtyard::processors::RecordWriter& w, const Type& s) { \
    NLOHMANN_JSON_EXPAND(NLOHMANN_JSON_PASTE(COURTYARD_RECORD_FIELD, __VA_ARGS__))                     \
  }
// Both encodings of a state from one field list: its JSON, and its binary record with the same names.
#define COURTYARD_DEFINE_STATE(Type, ...)                               \
  NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Type, __VA_ARGS__) \
  COURTYARD_DEFINE_RECORD(Type, __VA_ARGS__)
