// A power cut, not a crash of the process: what the spool acknowledged with sync on is on the
// disk; without it, what sat in the page cache is gone. The cut is simulated under RocksDB by a
// file system that remembers how much of each file the last fsync covered and, at the cut,
// throws the rest away.
#include <doctest/doctest.h>

#include <filesystem>
#include <map>
#include <mutex>

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include "spool.h"
#include "temp_dir.h"

using namespace courtyard;
using namespace courtyard::ingest;

namespace {

class PowerCutFs : public rocksdb::FileSystemWrapper {
 public:
  explicit PowerCutFs(std::shared_ptr<rocksdb::FileSystem> base) : FileSystemWrapper(std::move(base)) {}
  static const char* kClassName() { return "PowerCutFs"; }
  const char* Name() const override { return kClassName(); }

  rocksdb::IOStatus NewWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* dbg) override {
    auto s = target()->NewWritableFile(name, options, result, dbg);
    if (s.ok()) {
      {
        std::lock_guard lock(mu_);
        files_[name] = {};
      }
      *result = std::make_unique<File>(std::move(*result), name, *this);
    }
    return s;
  }

  rocksdb::IOStatus RenameFile(const std::string& from, const std::string& to, const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override {
    auto s = target()->RenameFile(from, to, options, dbg);
    std::lock_guard lock(mu_);
    if (s.ok() && files_.contains(from)) {
      files_[to] = files_[from];
      files_.erase(from);
    }
    return s;
  }

  // The power goes: from now on nothing more reaches the disk.
  void cut() {
    std::lock_guard lock(mu_);
    cut_ = true;
  }
  // What the disk holds when the machine comes back: each file as far as its last fsync.
  void restore_disk() {
    std::lock_guard lock(mu_);
    for (const auto& [name, f] : files_) {
      std::error_code ec;
      if (std::filesystem::exists(name, ec)) std::filesystem::resize_file(name, f.synced, ec);
    }
  }

 private:
  struct Sizes {
    std::uint64_t written = 0, synced = 0;
  };
  class File : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile> f, std::string name, PowerCutFs& fs)
        : FSWritableFileOwnerWrapper(std::move(f)), name_(std::move(name)), fs_(fs) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o, rocksdb::IODebugContext* d) override {
      fs_.wrote(name_, data.size());
      return target()->Append(data, o, d);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             const rocksdb::DataVerificationInfo& v, rocksdb::IODebugContext* d) override {
      fs_.wrote(name_, data.size());
      return target()->Append(data, o, v, d);
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* d) override {
      fs_.synced(name_);
      return target()->Sync(o, d);
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* d) override {
      fs_.synced(name_);
      return target()->Fsync(o, d);
    }
    rocksdb::IOStatus RangeSync(std::uint64_t, std::uint64_t, const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
      return rocksdb::IOStatus::OK();  // a hint to write back, not a promise of durability
    }

   private:
    std::string name_;
    PowerCutFs& fs_;
  };

  void wrote(const std::string& name, std::size_t n) {
    std::lock_guard lock(mu_);
    files_[name].written += n;
  }
  void synced(const std::string& name) {
    std::lock_guard lock(mu_);
    if (!cut_) files_[name].synced = files_[name].written;
  }

  std::mutex mu_;
  std::map<std::string, Sizes> files_;
  bool cut_ = false;
};

// Appends `synced` records, each acknowledged only after a sync() (as ingest acknowledges a
// device with `ingest.spool_sync`), then `unsynced` more without one; cuts the power; returns
// the records that are there when the machine comes back.
std::size_t survivors_of_a_power_cut(std::size_t synced, std::size_t unsynced) {
  test::TempDir dir;
  auto fs = std::make_shared<PowerCutFs>(rocksdb::FileSystem::Default());
  auto env = rocksdb::NewCompositeEnv(fs);
  const std::size_t n = synced + unsynced;
  {
    auto spool = Spool::open(dir.str("spool"), env.get());
    REQUIRE(spool);
    for (std::size_t i = 0; i < n; ++i) {
      REQUIRE((*spool)->append({"courtyard.events.v1", "c1", "event-" + std::to_string(i), {}}, {{"chain/c1", std::to_string(i)}}));
      if (i < synced && i % 7 == 6) REQUIRE((*spool)->sync());  // one sync covers the last seven
      if (i + 1 == synced) REQUIRE((*spool)->sync());
    }
    CHECK((*spool)->synced_end() == synced);
    fs->cut();
  }  // the process "dies" with the machine: whatever it writes or syncs now never reaches the disk
  fs->restore_disk();
  auto back = Spool::open(dir.str("spool"));
  REQUIRE(back);
  auto records = (*back)->read(0, n + 1);
  for (std::size_t i = 0; i < records.size(); ++i) {
    REQUIRE(records[i].first == i);  // a prefix, never a hole
    CHECK(records[i].second.value == "event-" + std::to_string(i));
  }
  if (!records.empty()) CHECK((*back)->meta("chain/c1") == std::to_string(records.size() - 1));  // with its metadata
  return records.size();
}

}  // namespace

TEST_SUITE("ingest spool power cut") {
  TEST_CASE("every record acknowledged after a sync is on the disk after a power cut; what followed the last sync is not") {
    CHECK(survivors_of_a_power_cut(300, 0) == 300);
    CHECK(survivors_of_a_power_cut(200, 100) == 200);
  }

  TEST_CASE("without a sync, a power cut takes appended records with it: the cut is real") {
    CHECK(survivors_of_a_power_cut(0, 300) < 300);
  }
}
