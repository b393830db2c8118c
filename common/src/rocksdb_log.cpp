#include "common/rocksdb_log.h"

#include <rocksdb/env.h>
#include <spdlog/spdlog.h>

#include <cstdarg>
#include <cstdio>
#include <string>
#include <utility>

namespace courtyard {
namespace {

class SpdlogLogger final : public rocksdb::Logger {
 public:
  explicit SpdlogLogger(std::string store)
      : rocksdb::Logger(spdlog::should_log(spdlog::level::debug) ? rocksdb::InfoLogLevel::INFO_LEVEL
                                                                 : rocksdb::InfoLogLevel::WARN_LEVEL),
        store_(std::move(store)) {}

  void Logv(const char* format, va_list ap) override { Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap); }

  // Never throws into RocksDB (it is not exception-safe).
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) noexcept override {
    if (level < GetInfoLogLevel()) return;
    try {
      std::string text(1024, '\0');
      va_list copy;
      va_copy(copy, ap);
      const int n = std::vsnprintf(text.data(), text.size(), format, copy);
      va_end(copy);
      if (n < 0) return;
      if (static_cast<std::size_t>(n) >= text.size()) {  // a long line (statistics, event logs): whole
        text.resize(static_cast<std::size_t>(n) + 1);
        va_copy(copy, ap);
        std::vsnprintf(text.data(), text.size(), format, copy);
        va_end(copy);
      }
      text.resize(static_cast<std::size_t>(n));
      while (!text.empty() && text.back() == '\n') text.pop_back();
      spdlog::log(to_spdlog(level), "rocksdb {}: {}", store_, text);
    } catch (...) {
    }
  }

 private:
  static spdlog::level::level_enum to_spdlog(rocksdb::InfoLogLevel level) {
    switch (level) {
      case rocksdb::InfoLogLevel::WARN_LEVEL: return spdlog::level::warn;
      case rocksdb::InfoLogLevel::ERROR_LEVEL: return spdlog::level::err;
      case rocksdb::InfoLogLevel::FATAL_LEVEL: return spdlog::level::critical;
      default: return spdlog::level::debug;
    }
  }
  std::string store_;
};

}  // namespace

std::shared_ptr<rocksdb::Logger> rocksdb_log(std::string store) { return std::make_shared<SpdlogLogger>(std::move(store)); }

}  // namespace courtyard
