#pragma once
// RocksDB's own log lines, through ours. By default each RocksDB store writes a LOG file in its
// own directory; on a full disk a failed write to that file leaves it in an error state, and the
// next line logged (Resume() logs one) trips an assertion in Debian's RocksDB 7.8: the process
// aborts. A store's log therefore never shares the store's disk: it goes to spdlog, warnings and
// errors as such, RocksDB's chatty informational lines at debug level.
#include <memory>
#include <string>

namespace rocksdb {
class Logger;
}

namespace courtyard {

// A logger for a store's Options::info_log; `store` names it in each line ("spool", "state").
std::shared_ptr<rocksdb::Logger> rocksdb_log(std::string store);

}  // namespace courtyard
