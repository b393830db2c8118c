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

// Appends `n` records through a spool on a file system whose power is then cut; returns how many
// of them are there when the machine comes back.
std::size_t survivors_of_a_power_cut(bool sync, std::size_t n) {
  test::TempDir dir;
  auto fs = std::make_shared<PowerCutFs>(rocksdb::FileSystem::Default());
  auto env = rocksdb::NewCompositeEnv(fs);
  {
    auto spool = Spool::open(dir.str("spool"), sync, env.get());
    REQUIRE(spool);
    for (std::size_t i = 0; i < n; ++i) {
      // append() returning is what lets ingest acknowledge the device.
      REQUIRE((*spool)->append({"courtyard.events.v1", "c1", "event-" + std::to_string(i), {}}, {{"chain/c1", std::to_string(i)}}));
    }
    fs->cut();
  }  // the process "dies" with the machine: whatever it writes or syncs now never reaches the disk
  fs->restore_disk();
  auto back = Spool::open(dir.str("spool"), sync);
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
  TEST_CASE("with sync on, every record the spool acknowledged is on the disk after a power cut") {
    CHECK(survivors_of_a_power_cut(true, 300) == 300);
  }

  TEST_CASE("with sync off, a power cut takes acknowledged records with it: the cut is real") {
    CHECK(survivors_of_a_power_cut(false, 300) < 300);
  }
}
