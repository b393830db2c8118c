// A disk that fills and empties under a busy spool. Debian's RocksDB 7.8 aborted ingest here
// twice over: its own LOG file on the full disk, then a write to the log file whose write had
// failed (facebook/rocksdb#12448). The full disk is a file system under RocksDB that refuses
// every write while it is "full", so the test needs no mount and is the same on every run.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include "spool.h"
#include "temp_dir.h"

using namespace courtyard;
using namespace courtyard::ingest;
using namespace std::chrono_literals;

namespace {

class FullDiskFs : public rocksdb::FileSystemWrapper {
 public:
  explicit FullDiskFs(std::shared_ptr<rocksdb::FileSystem> base) : FileSystemWrapper(std::move(base)) {}
  static const char* kClassName() { return "FullDiskFs"; }
  const char* Name() const override { return kClassName(); }
  std::atomic<bool> full{false};

  rocksdb::IOStatus NewWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* dbg) override {
    if (full) return no_space();
    auto s = target()->NewWritableFile(name, options, result, dbg);
    if (s.ok()) *result = std::make_unique<File>(std::move(*result), full);
    return s;
  }

 private:
  static rocksdb::IOStatus no_space() { return rocksdb::IOStatus::NoSpace("No space left on device (test)"); }
  class File : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile> f, std::atomic<bool>& full) : FSWritableFileOwnerWrapper(std::move(f)), full_(full) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o, rocksdb::IODebugContext* d) override {
      return full_ ? no_space() : target()->Append(data, o, d);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o, const rocksdb::DataVerificationInfo& v,
                             rocksdb::IODebugContext* d) override {
      return full_ ? no_space() : target()->Append(data, o, v, d);
    }

   private:
    std::atomic<bool>& full_;
  };
};

template <class Condition>
bool within(std::chrono::seconds limit, Condition done) {
  for (auto until = std::chrono::steady_clock::now() + limit; std::chrono::steady_clock::now() < until;) {
    if (done()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return done();
}

}  // namespace

TEST_SUITE("ingest spool disk full") {
  TEST_CASE("attack: a disk that fills and empties under concurrent appends, removals and syncs never stops the spool, "
            "and every record it acknowledged is kept") {
    test::TempDir dir;
    auto fs = std::make_shared<FullDiskFs>(rocksdb::FileSystem::Default());
    auto env = rocksdb::NewCompositeEnv(fs);
    auto opened = Spool::open(dir.str("spool"), env.get());
    REQUIRE(opened);
    Spool& spool = **opened;

    std::mutex mu;
    std::map<std::uint64_t, std::string> acknowledged;  // sequence -> value, as ingest would PUBACK it
    std::atomic<std::uint64_t> removed_below{0}, refused{0};
    std::atomic<bool> stop{false};
    std::vector<std::jthread> threads;
    for (int t = 0; t < 2; ++t) {  // two MQTT sessions: telemetry and camera images
      threads.emplace_back([&, t] {
        for (int i = 0; !stop; ++i) {
          const std::string value = "t" + std::to_string(t) + "-" + std::to_string(i);
          auto seq = spool.append({"courtyard.events.v1", "c1", value, {}}, {{"seq/d" + std::to_string(t), value}});
          if (!seq) {
            ++refused;
            continue;
          }
          std::lock_guard lock(mu);
          CHECK_MESSAGE(acknowledged.emplace(*seq, value).second, "sequence " << *seq << " acknowledged twice");
        }
      });
    }
    threads.emplace_back([&] {  // the pump forgets what Kafka took
      while (!stop) {
        const auto first = spool.first_seq(), next = spool.next_seq();
        if (next > first + 100 && spool.remove(first, next - 50)) removed_below = next - 50;
        std::this_thread::sleep_for(1ms);
      }
    });
    threads.emplace_back([&] {  // group commit
      while (!stop) (void)spool.sync();
    });

    auto taken = [&] {
      std::lock_guard lock(mu);
      return acknowledged.size();
    };
    for (int round = 0; round < 3; ++round) {
      const auto before = taken();
      REQUIRE(within(30s, [&] { return taken() >= before + 2000; }));
      const auto refused_before = refused.load();
      fs->full = true;
      REQUIRE(within(30s, [&] { return refused >= refused_before + 100; }));  // the writes themselves meet the full disk
      fs->full = false;
    }
    const auto before = taken();
    CHECK_MESSAGE(within(30s, [&] { return taken() >= before + 2000; }), "appends did not succeed again once space returned");
    stop = true;
    threads.clear();

    // Every acknowledged record not yet forgotten is there, with its value, after a reopen too.
    auto check_kept = [&](const Spool& s) {
      const auto from = removed_below.load();
      std::map<std::uint64_t, std::string> held;
      for (auto& [seq, record] : s.read(from, acknowledged.size() + 1)) held[seq] = record.value;
      std::size_t missing = 0;
      for (auto it = acknowledged.lower_bound(from); it != acknowledged.end(); ++it) {
        if (held[it->first] != it->second) ++missing;
      }
      CHECK(missing == 0);
    };
    check_kept(spool);
    CHECK(spool.sync());  // the spool takes its group commit again
    CHECK(spool.synced_end() == spool.next_seq());
    const auto next = spool.next_seq();
    CHECK(next > acknowledged.rbegin()->first);
    opened->reset();
    auto again = Spool::open(dir.str("spool"));
    REQUIRE(again);
    check_kept(**again);
    CHECK((*again)->next_seq() == next);  // no sequence is used twice across the restart
  }
}
