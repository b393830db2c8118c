#include "spool.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdlib>

#include "common/rocksdb_log.h"

namespace courtyard::ingest {
namespace {

// Queue keys: 'q' + big-endian sequence, so iteration order is append order. Metadata: 'm' + name.
std::string queue_key(std::uint64_t seq) {
  std::string k(9, '\0');
  k[0] = 'q';
  for (int i = 0; i < 8; ++i) k[1 + i] = static_cast<char>((seq >> (56 - 8 * i)) & 0xff);
  return k;
}

std::uint64_t seq_of(const rocksdb::Slice& key) {
  std::uint64_t seq = 0;
  for (int i = 0; i < 8; ++i) seq = (seq << 8) | static_cast<unsigned char>(key[1 + i]);
  return seq;
}

void put_str(std::string& out, const std::string& s) {
  auto n = static_cast<std::uint32_t>(s.size());
  out.append(reinterpret_cast<const char*>(&n), sizeof n);
  out.append(s);
}

bool get_str(std::string_view& in, std::string& s) {
  std::uint32_t n = 0;
  if (in.size() < sizeof n) return false;
  std::memcpy(&n, in.data(), sizeof n);
  in.remove_prefix(sizeof n);
  if (in.size() < n) return false;
  s.assign(in.substr(0, n));
  in.remove_prefix(n);
  return true;
}

std::string serialize(const SpoolRecord& r) {
  std::string out;
  put_str(out, r.topic);
  put_str(out, r.key);
  put_str(out, r.value);
  for (const auto& [k, v] : r.headers) {
    put_str(out, k);
    put_str(out, v);
  }
  return out;
}

std::optional<SpoolRecord> deserialize(std::string_view in) {
  SpoolRecord r;
  if (!get_str(in, r.topic) || !get_str(in, r.key) || !get_str(in, r.value)) return std::nullopt;
  while (!in.empty()) {
    std::string k, v;
    if (!get_str(in, k) || !get_str(in, v)) return std::nullopt;
    r.headers.emplace_back(std::move(k), std::move(v));
  }
  return r;
}

constexpr std::string_view kNextSeqKey = "next_seq";
// A spool that failed a write is opened again at most this often while the disk stays full.
constexpr auto kReopenEvery = std::chrono::milliseconds(500);

// The sequence after the last record the store holds. An emptied spool goes on from where it
// was, never from 0: a delivery mark in Kafka names sequences, and a reused one would make a
// restart skip a new record as delivered.
std::uint64_t stored_next_seq(rocksdb::DB& db) {
  std::unique_ptr<rocksdb::Iterator> it(db.NewIterator(rocksdb::ReadOptions()));
  it->SeekForPrev(queue_key(~std::uint64_t{0}));
  std::uint64_t next_seq = it->Valid() && it->key().starts_with("q") ? seq_of(it->key()) + 1 : 0;
  std::string next;
  if (db.Get(rocksdb::ReadOptions(), "m" + std::string(kNextSeqKey), &next).ok()) {
    next_seq = std::max<std::uint64_t>(next_seq, std::strtoull(next.c_str(), nullptr, 10));
  }
  return next_seq;
}

// Where in the memtable the next write of a key goes is remembered per stream of keys: the queue
// (appended at its end, deleted from its front) is one stream, each metadata key (a device's
// window, a community's chain head, rewritten with every event) one of its own. Without it every
// event's writes interleave the queue with the metadata and each insert searches the skip
// list from the top; measured, that search was 12-24% of ingest's MQTT thread.
class InsertStreams final : public rocksdb::SliceTransform {
 public:
  const char* Name() const override { return "courtyard.spool.InsertStreams"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    return key.starts_with("q") ? rocksdb::Slice(key.data(), 1) : key;
  }
  bool InDomain(const rocksdb::Slice&) const override { return true; }
};

rocksdb::Options spool_options(rocksdb::Env* env) {
  rocksdb::Options options;
  options.memtable_insert_with_hint_prefix_extractor = std::make_shared<InsertStreams>();
  options.create_if_missing = true;
  options.info_log = rocksdb_log("spool");  // not a LOG file on the spool's own disk (common/rocksdb_log.h)
  if (env) options.env = env;
  return options;
}

}  // namespace

std::expected<std::unique_ptr<Spool>, std::string> Spool::open(const std::string& dir, rocksdb::Env* env) {
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(spool_options(env), dir, &raw);
  if (!s.ok()) return std::unexpected("cannot open spool " + dir + ": " + s.ToString());
  std::unique_ptr<Spool> spool(new Spool());
  spool->dir_ = dir;
  spool->env_ = env;
  spool->db_.reset(raw);
  spool->next_seq_ = stored_next_seq(*raw);
  // What a previous run left in the page cache goes to the disk before anything is produced from it.
  if (auto synced = raw->SyncWAL(); !synced.ok()) return std::unexpected("cannot sync spool " + dir + ": " + synced.ToString());
  spool->synced_end_ = spool->next_seq_;
  return spool;
}

Spool::~Spool() = default;

std::expected<std::uint64_t, std::string> Spool::append(const SpoolRecord& record,
                                                         const std::vector<std::pair<std::string, std::string>>& meta) {
  return append(std::span(&record, 1), meta);
}

std::expected<std::uint64_t, std::string> Spool::append(std::span<const SpoolRecord> records,
                                                         const std::vector<std::pair<std::string, std::string>>& meta) {
  std::lock_guard lock(mu_);
  // Before the batch names its sequences: reopening after a failed write may move next_seq_ on.
  if (auto ok = writable(); !ok) return std::unexpected(ok.error());
  rocksdb::WriteBatch batch;
  for (std::size_t i = 0; i < records.size(); ++i) batch.Put(queue_key(next_seq_ + i), serialize(records[i]));
  for (const auto& [key, value] : meta) batch.Put("m" + key, value);
  if (auto ok = write(batch); !ok) return std::unexpected(ok.error());
  const std::uint64_t first = next_seq_;
  next_seq_ += records.size();
  return first;
}

std::vector<std::pair<std::uint64_t, SpoolRecord>> Spool::read(std::uint64_t first, std::size_t max) const {
  std::vector<std::pair<std::uint64_t, SpoolRecord>> out;
  std::shared_lock db(db_mu_);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(queue_key(first)); it->Valid() && it->key().starts_with("q") && out.size() < max; it->Next()) {
    if (auto r = deserialize(it->value().ToStringView())) out.emplace_back(seq_of(it->key()), std::move(*r));
  }
  return out;
}

std::expected<void, std::string> Spool::remove(std::uint64_t first, std::uint64_t end) {
  std::lock_guard lock(mu_);
  if (auto ok = writable(); !ok) return std::unexpected(ok.error());
  rocksdb::WriteBatch batch;
  for (std::uint64_t seq = first; seq < end; ++seq) batch.Delete(queue_key(seq));
  // While the queue holds records its last one says where sequences go on; once it may be empty,
  // this does (what was appended so far, never what this removal reaches: a removal retried
  // after a later one must not move it back).
  batch.Put("m" + std::string(kNextSeqKey), std::to_string(next_seq_));
  return write(batch);
}

std::expected<void, std::string> Spool::set_meta(const std::vector<std::pair<std::string, std::string>>& meta) {
  std::lock_guard lock(mu_);
  rocksdb::WriteBatch batch;
  for (const auto& [key, value] : meta) batch.Put("m" + key, value);
  return write(batch);
}

std::expected<void, std::string> Spool::sync() {
  std::lock_guard one(sync_mu_);
  const std::uint64_t end = next_seq();  // appends that returned before this point are in the WAL
  // Not after a failed write (a full disk): RocksDB has not recovered its log yet, and syncing
  // it then trips an assertion inside Debian's RocksDB 7.8 (the process aborts). The caller
  // treats it as any failed sync: nothing of this round is acknowledged.
  std::shared_lock db(db_mu_);
  if (failing_) return std::unexpected("spool sync skipped: the last spool write failed");
  auto s = db_->SyncWAL();
  if (!s.ok()) return std::unexpected("spool sync failed: " + s.ToString());
  std::uint64_t was = synced_end_.load();
  while (was < end && !synced_end_.compare_exchange_weak(was, end)) {
  }
  return {};
}

std::uint64_t Spool::synced_end() const { return synced_end_.load(); }

std::expected<void, std::string> Spool::writable() {
  if (failing_) {
    if (auto ok = reopen(); !ok) return std::unexpected("spool write failed: " + ok.error());
  }
  return {};
}

std::expected<void, std::string> Spool::write(rocksdb::WriteBatch& batch) {
  if (auto ok = writable(); !ok) return ok;
  std::shared_lock db(db_mu_);
  auto s = db_->Write(rocksdb::WriteOptions(), &batch);
  failing_ = !s.ok();
  if (!s.ok()) return std::unexpected("spool write failed: " + s.ToString());
  return {};
}

// After a failed write (a full disk) the store is closed and opened again before the next one,
// never resumed: RocksDB before 9.1 may write again to the log file whose write failed (fixed
// upstream in facebook/rocksdb#12448), and Debian's 7.8 asserts on it: ingest aborted under
// load. Opening replays the log up to its last whole record, which is exactly what was
// acknowledged. While the disk has no room to open it for writing, it is open read-only, so the
// records already spooled can still be read and produced.
std::expected<void, std::string> Spool::reopen() {
  const auto now = std::chrono::steady_clock::now();
  if (now - last_reopen_ < kReopenEvery) {
    return std::unexpected("the spool is opened again at most every " + std::to_string(kReopenEvery.count()) + " ms");
  }
  last_reopen_ = now;
  std::unique_lock db(db_mu_);
  db_->Close();  // its status is the failure we know of
  db_.reset();
  const auto options = spool_options(env_);
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(options, dir_, &raw);
  if (s.ok()) {
    db_.reset(raw);
    failing_ = false;
    // A write reported as failed is expected to have left no whole record; should one have
    // reached the log after all, its sequence is not used again.
    if (const auto stored = stored_next_seq(*db_); stored > next_seq_) {
      spdlog::warn("spool: a write reported as failed is in the spool after all; sequences go on from {} (not {})", stored,
                   next_seq_);
      next_seq_ = stored;
    }
    return {};
  }
  if (auto ro = rocksdb::DB::OpenForReadOnly(options, dir_, &raw); !ro.ok()) {
    // Neither way: the spool's directory itself is gone or unreadable. What was acknowledged is
    // in its files; stopping keeps the broker's session (and its messages) for a restart.
    spdlog::critical("spool {} cannot be opened again ({}; read-only: {}); ingest stops", dir_, s.ToString(), ro.ToString());
    std::_Exit(70);
  }
  db_.reset(raw);
  return std::unexpected("cannot open spool for writing: " + s.ToString());
}

std::expected<void, std::string> Spool::purge() {
  std::shared_lock db(db_mu_);
  // Not after a failed write: a flush would write to the failed log (the RocksDB bug reopen() avoids).
  if (failing_) return std::unexpected("spool purge skipped: the last spool write failed");
  rocksdb::FlushOptions flush;
  flush.wait = true;
  auto s = db_->Flush(flush);  // the memtable to a table: the WAL holding deleted records is retired
  if (s.ok()) {
    rocksdb::CompactRangeOptions compact;
    compact.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
    s = db_->CompactRange(compact, nullptr, nullptr);  // the tables without what was deleted
  }
  if (!s.ok()) return std::unexpected("spool purge failed: " + s.ToString());
  return {};
}

std::optional<std::string> Spool::meta(const std::string& key) const {
  std::string value;
  std::shared_lock db(db_mu_);
  if (!db_->Get(rocksdb::ReadOptions(), "m" + key, &value).ok()) return std::nullopt;
  return value;
}

std::uint64_t Spool::first_seq() const {
  {
    std::shared_lock db(db_mu_);  // released before mu_: writers take mu_, then db_mu_
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
    it->Seek(queue_key(0));
    if (it->Valid() && it->key().starts_with("q")) return seq_of(it->key());
  }
  std::lock_guard lock(mu_);
  return next_seq_;
}

std::uint64_t Spool::next_seq() const {
  std::lock_guard lock(mu_);
  return next_seq_;
}

}  // namespace courtyard::ingest
