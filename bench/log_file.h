#pragma once
// A log read out of Kafka kept in a file, so the fold alone can be timed and profiled again and
// again without brokers (bench/replay --save-log writes it, bench/fold reads it). Each message:
// topic, partition, offset, key, value and headers, lengths little-endian in front. A bench's
// own file: not a format anything else reads.
#include <cstdint>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "processors/projector.h"

namespace courtyard::bench {

namespace log_file_detail {
inline void put_u64(std::ofstream& out, std::uint64_t n) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(n >> (8 * i));
  out.write(b, 8);
}
inline void put_string(std::ofstream& out, const std::string& s) {
  put_u64(out, s.size());
  out.write(s.data(), static_cast<std::streamsize>(s.size()));
}
inline std::uint64_t get_u64(std::ifstream& in) {
  unsigned char b[8];
  if (!in.read(reinterpret_cast<char*>(b), 8)) throw std::runtime_error("log file: truncated");
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= std::uint64_t{b[i]} << (8 * i);
  return n;
}
inline std::string get_string(std::ifstream& in) {
  const auto size = get_u64(in);
  if (size > (64u << 20)) throw std::runtime_error("log file: a field of " + std::to_string(size) + " bytes");
  std::string s(size, '\0');
  if (!in.read(s.data(), static_cast<std::streamsize>(size))) throw std::runtime_error("log file: truncated");
  return s;
}
}  // namespace log_file_detail

inline void write_log_file(const std::string& path, const std::vector<processors::LogMessage>& messages) {
  using namespace log_file_detail;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot write " + path);
  put_u64(out, messages.size());
  for (const auto& m : messages) {
    put_string(out, m.topic);
    put_u64(out, static_cast<std::uint64_t>(m.partition));
    put_u64(out, static_cast<std::uint64_t>(m.offset));
    put_string(out, m.key);
    put_string(out, m.value);
    put_u64(out, m.headers.size());
    for (const auto& [k, v] : m.headers) {
      put_string(out, k);
      put_string(out, v);
    }
  }
  if (!out.flush()) throw std::runtime_error("cannot write " + path);
}

inline std::vector<processors::LogMessage> read_log_file(const std::string& path) {
  using namespace log_file_detail;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  const auto count = get_u64(in);
  if (count > (1ull << 32)) throw std::runtime_error("log file: " + std::to_string(count) + " messages");
  std::vector<processors::LogMessage> messages(count);
  for (auto& m : messages) {
    m.topic = get_string(in);
    m.partition = static_cast<std::int32_t>(get_u64(in));
    m.offset = static_cast<std::int64_t>(get_u64(in));
    m.key = get_string(in);
    m.value = get_string(in);
    m.headers.resize(get_u64(in));
    for (auto& [k, v] : m.headers) {
      k = get_string(in);
      v = get_string(in);
    }
  }
  return messages;
}

}  // namespace courtyard::bench
