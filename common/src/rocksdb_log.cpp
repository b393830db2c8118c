#include "common/rocksdb_log.h"

#include <rocksdb/env.h>
#include <spdlog/spdlog.h>

#include <cstdarg>
#include <cstdio>
#include <string>

namespace courtyard {
namespace {

class SpdlogLogger final : public rocksdb::Logger {
 public:
  explicit SpdlogLogger(std::string store)
      : rocksdb::Logger(spdlog::should_log(spdlog::level::debug) ? rocksdb::InfoLogLevel::INFO_LEVEL
                                                                 : rocksdb::InfoLogLevel::WARN_LEVEL),
        store_(std::move(store)) {}

  void Logv(const char* format, va_list ap) override { Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap); }

  // Never throws into RocksDB (it is not exception-safe): spdlog reports its own failures.
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    if (level < GetInfoLogLevel()) return;
    char line[1024];
    va_list copy;
    va_copy(copy, ap);
    const int n = std::vsnprintf(line, sizeof line, format, copy);
    va_end(copy);
    if (n < 0) return;
    std::string text(line, std::min<std::size_t>(static_cast<std::size_t>(n), sizeof line - 1));
    while (!text.empty() && text.back() == '\n') text.pop_back();
    spdlog::log(to_spdlog(level), "rocksdb {}: {}", store_, text);
  }

 private:
  static spdlog::level::level_enum to_spdlog(rocksdb::InfoLogLevel level) {
    switch (level) {
      case rocksdb::InfoLogLevel::WARN_LEVEL: return spdlog::level::warn;
      case rocksdb::InfoLogLevel::ERROR_LEVEL:
      case rocksdb::InfoLogLevel::FATAL_LEVEL: return spdlog::level::err;
      default: return spdlog::level::debug;
    }
  }
  std::string store_;
};

}  // namespace

std::shared_ptr<rocksdb::Logger> rocksdb_log(std::string store) { return std::make_shared<SpdlogLogger>(std::move(store)); }

}  // namespace courtyard
