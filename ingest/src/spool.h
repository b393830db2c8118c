#pragma once
// The durable spool: every record ingest has accepted (events and dead letters) lives here from
// the moment it is accepted until its Kafka transaction commits. Backed by RocksDB with its WAL
// on; a record whose append() returned survives a SIGKILL of ingest (the WAL write reached the
// OS), and once a sync() has returned after it, a power cut too.
// Thread-safe.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <expected>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace rocksdb {
class DB;
class Env;
class WriteBatch;
}

namespace courtyard::ingest {

struct SpoolRecord {
  std::string topic;
  std::string key;
  std::string value;
  std::vector<std::pair<std::string, std::string>> headers;
};

class Spool {
 public:
  // `env`: the file system under the store (tests cut its power); nullptr is the machine's.
  static std::expected<std::unique_ptr<Spool>, std::string> open(const std::string& dir, rocksdb::Env* env = nullptr);
  ~Spool();

  // Appends a record and sets metadata keys in the same atomic write. Returns its sequence, or
  // why the disk did not take it (nothing of it was kept). After a failure each append first
  // opens the store again, so appends succeed again by themselves once space returns.
  std::expected<std::uint64_t, std::string> append(const SpoolRecord& record,
                                                   const std::vector<std::pair<std::string, std::string>>& meta = {});
  // Appends several records (consecutive sequences) and the metadata in one atomic write; returns the first.
  std::expected<std::uint64_t, std::string> append(std::span<const SpoolRecord> records,
                                                   const std::vector<std::pair<std::string, std::string>>& meta = {});
  // Records from `first` on, in order, at most `max`.
  std::vector<std::pair<std::uint64_t, SpoolRecord>> read(std::uint64_t first, std::size_t max) const;
  // Forgets delivered records [first, end) in one write; on failure they stay (remove them again
  // later; a restart skips them by ingest's delivery mark).
  std::expected<void, std::string> remove(std::uint64_t first, std::uint64_t end);
  // Sets metadata keys alone.
  std::expected<void, std::string> set_meta(const std::vector<std::pair<std::string, std::string>>& meta);
  // Rewrites the store so what remove() deleted leaves the disk: the write-ahead log and the
  // tables that still held it are replaced. Camera images must not outlive their delivery.
  std::expected<void, std::string> purge();
  // Puts every write so far on the disk (one fsync of the write-ahead log, however many appends
  // it covers: group commit). What was appended before a successful sync() survives a power cut.
  std::expected<void, std::string> sync();
  // The sequence up to which (exclusive) records are on the disk: what sync() last covered.
  std::uint64_t synced_end() const;
  std::optional<std::string> meta(const std::string& key) const;
  std::uint64_t first_seq() const;  // sequence of the oldest record still held (next_seq if none)
  std::uint64_t next_seq() const;

 private:
  Spool() = default;
  std::expected<void, std::string> write(rocksdb::WriteBatch& batch);  // under mu_
  std::expected<void, std::string> writable();  // under mu_: after a failed write, reopened first (may move next_seq_)
  std::expected<void, std::string> reopen();                           // under mu_
  std::string dir_;
  rocksdb::Env* env_ = nullptr;
  std::unique_ptr<rocksdb::DB> db_;  // replaced by reopen() under db_mu_; every use holds db_mu_ shared
  mutable std::shared_mutex db_mu_;
  std::chrono::steady_clock::time_point last_reopen_{};
  mutable std::mutex mu_;
  std::mutex sync_mu_;  // one sync at a time (RocksDB's own would serialise them anyway)
  std::uint64_t next_seq_ = 0;
  std::atomic<std::uint64_t> synced_end_{0};
  std::atomic<bool> failing_{false};  // the last write failed: reopen before the next (written under mu_)
};

}  // namespace courtyard::ingest
