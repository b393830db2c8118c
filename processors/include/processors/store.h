#pragma once
// The projection store: one RocksDB per hub process holding every projection's state and the
// input offsets that state reflects. Writes are atomic batches (state and offsets together);
// reads go through a View, a consistent snapshot, so a response's data and its as_of agree.
// Thread-safe: one writer (the runner), any number of readers.
#include <cstdint>
#include <expected>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rocksdb {
class DB;
class Cache;
class Env;
}

namespace courtyard::processors {

struct StoreConfig {
  std::string dir = "var/hub/state";        // RocksDB directory
  bool read_only = false;                   // open another process's store to read (a snapshot as of opening)
  bool in_memory = false;                   // an in-memory file system: nothing reaches the disk (fuzzers, tests)
  std::size_t block_cache_bytes = 64 << 20; // shared block cache: bounds read memory
  std::size_t write_buffer_bytes = 32 << 20;  // memtable budget for the whole store
};

// A read the store could not answer (an I/O error, not an absent key): never taken for "absent",
// which would fold an empty state over the real one.
struct StoreReadError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Topic and partition to the next offset to read.
using Offsets = std::map<std::pair<std::string, std::int32_t>, std::int64_t>;

using KeyValues = std::vector<std::pair<std::string, std::string>>;

class Store {
 public:
  class View {
   public:
    ~View();
    View(const View&) = delete;
    View& operator=(const View&) = delete;
    // nullopt when absent; throws StoreReadError when the store cannot be read.
    std::optional<std::string> get(std::string_view key) const;
    // Keys starting with `prefix` and greater than `after`, in order, at most `limit`.
    KeyValues scan(std::string_view prefix, std::string_view after, std::size_t limit) const;
    Offsets offsets() const;

   private:
    friend class Store;
    View(const Store& store);
    const Store& store_;
    const void* snapshot_;
  };

  static std::expected<std::unique_ptr<Store>, std::string> open(const StoreConfig& config);
  ~Store();

  View view() const;
  // Writes state and offsets in one atomic batch, and removes `deletes` in the same batch. After
  // a failed write (a full disk) RocksDB refuses every write until it is resumed: each write first
  // tries that, so the store takes writes again by itself once the disk has room; nothing of a
  // failed write is applied.
  std::expected<void, std::string> write(const KeyValues& puts, const Offsets& offsets,
                                         const std::vector<std::string>& deletes = {});
  std::expected<void, std::string> remove(const std::string& key);
  // Makes every write so far durable (the memtable flushed to a table file), for a caller about to
  // replace one store with another: writes are otherwise durable only as far as the OS wrote the log.
  std::expected<void, std::string> flush();
  // Removes every record: one store serves many runs (fuzzers). Not for a store anyone reads.
  std::expected<void, std::string> clear();
  // A consistent copy of the whole store in `dir` (must not exist), made of hard links where it
  // can: cheap, and openable as a store of its own.
  std::expected<void, std::string> checkpoint(const std::string& dir) const;

  static std::string offset_key(const std::string& topic, std::int32_t partition);

 private:
  Store() = default;
  std::shared_ptr<rocksdb::Cache> cache_;
  std::unique_ptr<rocksdb::Env> env_;  // in_memory only; outlives db_
  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace courtyard::processors
