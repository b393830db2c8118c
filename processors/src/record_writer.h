#pragma once
// Writes a binary record (a MessagePack map, processors/record.h) straight from a typed state,
// with msgpack-cxx's packer: no document is built. Rendered, it reads as the JSON the state's
// to_json would have made, as long as the writer is given the same fields with the same types, in
// any order (JSON objects keep their keys sorted): a unit test per state holds it to that.
#include <bit>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <msgpack.hpp>
#include <nlohmann/json.hpp>

namespace courtyard::processors {

class RecordWriter {
 public:
  // A map of `fields` entries (the exact count: MessagePack states it first).
  explicit RecordWriter(std::uint32_t fields) : packer_(out_) { packer_.pack_map(fields); }

  RecordWriter& field(std::string_view key, std::string_view value) { return name(key).text(value); }
  RecordWriter& field(std::string_view key, const std::string& value) { return name(key).text(value); }
  RecordWriter& field(std::string_view key, const char* value) { return name(key).text(value); }
  RecordWriter& field(std::string_view key, bool value) { name(key); value ? packer_.pack_true() : packer_.pack_false(); return *this; }
  RecordWriter& field(std::string_view key, std::int64_t value) { name(key); packer_.pack_int64(value); return *this; }
  RecordWriter& field(std::string_view key, std::uint64_t value) { name(key); packer_.pack_uint64(value); return *this; }
  RecordWriter& field(std::string_view key, std::uint32_t value) { name(key); packer_.pack_uint32(value); return *this; }
  RecordWriter& field(std::string_view key, double value) { name(key); return real(value); }
  template <class T>
  RecordWriter& field(std::string_view key, const std::optional<T>& value) {
    if (!value) {
      name(key);
      packer_.pack_nil();
      return *this;
    }
    return field(key, *value);
  }
  template <class V>
  RecordWriter& field(std::string_view key, const std::map<std::string, V>& map) {
    name(key);
    packer_.pack_map(static_cast<std::uint32_t>(map.size()));
    for (const auto& [k, v] : map) value(k).value(v);
    return *this;
  }
  RecordWriter& field(std::string_view key, const nlohmann::json& document) { name(key); return value(document); }
  RecordWriter& field(std::string_view key, int value) { return field(key, static_cast<std::int64_t>(value)); }
  template <class V>
  RecordWriter& field(std::string_view key, const std::vector<V>& values) {
    name(key);
    packer_.pack_array(static_cast<std::uint32_t>(values.size()));
    for (const auto& v : values) value(v);
    return *this;
  }
  // A map within: the next `fields` fields are its entries.
  RecordWriter& map(std::string_view key, std::uint32_t fields) {
    name(key);
    packer_.pack_map(fields);
    return *this;
  }

  std::string take() && { return std::move(out_.s); }

 private:
  struct Out {
    std::string s;
    void write(const char* p, std::size_t n) { s.append(p, n); }
  };
  RecordWriter& name(std::string_view key) { return text(key); }
  RecordWriter& text(std::string_view s) {
    packer_.pack_str(static_cast<std::uint32_t>(s.size()));
    packer_.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
    return *this;
  }
  RecordWriter& value(std::string_view s) { return text(s); }
  RecordWriter& value(const std::string& s) { return text(s); }
  RecordWriter& value(std::uint64_t n) { packer_.pack_uint64(n); return *this; }
  RecordWriter& value(std::int64_t n) { packer_.pack_int64(n); return *this; }
  RecordWriter& value(double d) { return real(d); }
  // A document, as nlohmann::json::to_msgpack would write it (every number kind kept).
  RecordWriter& value(const nlohmann::json& j) {
    using T = nlohmann::json::value_t;
    switch (j.type()) {
      case T::object:
        packer_.pack_map(static_cast<std::uint32_t>(j.size()));
        for (const auto& [k, v] : j.items()) value(std::string_view(k)).value(v);
        break;
      case T::array:
        packer_.pack_array(static_cast<std::uint32_t>(j.size()));
        for (const auto& v : j) value(v);
        break;
      case T::string: text(j.get_ref<const std::string&>()); break;
      case T::boolean: j.get<bool>() ? packer_.pack_true() : packer_.pack_false(); break;
      case T::number_integer: packer_.pack_int64(j.get<std::int64_t>()); break;
      case T::number_unsigned: packer_.pack_uint64(j.get<std::uint64_t>()); break;
      case T::number_float: real(j.get<double>()); break;
      case T::null:
      case T::discarded:
      case T::binary: packer_.pack_nil(); break;
    }
    return *this;
  }

  // Always a float 64: msgpack-cxx's pack_double writes an integral double as an integer, which
  // would render 61.0 as 61, not the JSON the state's to_json makes.
  RecordWriter& real(double d) {
    const auto bits = std::bit_cast<std::uint64_t>(d);
    out_.s.push_back(static_cast<char>(0xcb));
    for (int shift = 56; shift >= 0; shift -= 8) out_.s.push_back(static_cast<char>((bits >> shift) & 0xff));
    return *this;
  }

  Out out_;
  msgpack::packer<Out> packer_;
};

}  // namespace courtyard::processors
