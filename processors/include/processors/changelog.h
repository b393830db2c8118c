#pragma once
// The changelog (decision 0024): every write a partition's owner makes to its store, first put on
// a compacted topic whose partition is the source partition's, so any hub can hold (and take over)
// any partition's state without folding the events log again.
//
// A record is a store record: key = the store key, value = the record, no value = removed. A
// source partition's part of a batch ends with its offset record (key Store::offset_key(source
// topic, partition), value = the next offset in decimal): a reader applies everything up to it in
// one store write. Owners write in Kafka transactions that carry the consumer group's generation,
// so an owner the group has moved on from is fenced by the broker and writes nothing.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <expected>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stop_token>
#include <string>
#include <vector>

#include "common/kafka.h"
#include "processors/projector.h"
#include "processors/runner.h"
#include "processors/store.h"

namespace courtyard::processors {

using TopicPartition = std::pair<std::string, std::int32_t>;

// When the store last applied the changelog (wall-clock ms): a store away from it for longer than
// the changelog keeps removals (kChangelogKeepsRemovals) has missed some, and is restored whole.
// Stores of this version keep it per changelog partition (changelog_at_key), written with each
// batch an owner folds or an applier applies; the one key is for stores from before.
inline constexpr const char* kChangelogAppliedAtKey = "meta/changelog_applied_at";
std::string changelog_at_key(const std::pair<std::string, std::int32_t>& changelog);
inline constexpr const char* kChangelogAtPrefix = "meta/changelog_at/";
// Whether a copy last brought up to date at `at_ms` (a changelog_at_key's value) may have missed
// removals the cleaner has dropped since (unreadable: as if it may).
bool may_have_missed_removals(std::string_view at_ms);
// Set when a copy turned out too old to restore from its position: the next start restores the
// store whole.
inline constexpr const char* kRestoreWholeKey = "meta/changelog_restore_whole";
inline constexpr std::chrono::hours kChangelogKeepsRemovals{24 * 7};  // the topics' delete.retention.ms

// The changelog topic of a source topic (events or dead letters); empty for any other.
std::string changelog_topic(const KafkaConfig& kafka, const std::string& source_topic);

struct ChangelogWriteError {
  std::string message;
  bool fenced = false;       // the group moved on (or another writer took the id): stop, never retry
  bool rebalancing = false;  // the group's generation moved (a member joined or left): try again at once
};

// One owner's writer (one per fold lane): a transactional producer.
class ChangelogWriter {
 public:
  // Blocks until the broker has fenced any earlier writer with the same id (init_transactions).
  static std::expected<std::unique_ptr<ChangelogWriter>, std::string> open(
      const KafkaConfig& kafka, const std::string& transactional_id,
      std::chrono::milliseconds transaction_timeout = std::chrono::seconds(5));
  ~ChangelogWriter();
  // Writes `writes` in one transaction with the source partitions' next offsets sent to the
  // transaction for `consumer`'s group, which fences a member the group has moved on from.
  // Returns once the transaction is committed, having added to each write the store's own
  // bookkeeping: where its changelog partition stands after the batch (also_offsets) and when
  // (changelog_at_key), so a later restore of it reads only what others wrote after. On an error
  // nothing of it is visible to readers, and the writes are as they were.
  std::expected<void, ChangelogWriteError> write(std::vector<PartitionWrite>& writes, rd_kafka_t* consumer);

 private:
  ChangelogWriter() = default;
  std::expected<void, std::string> start();  // a producer, its transactions initialised
  static rd_kafka_error_t* until_done(const std::function<rd_kafka_error_t*()>& step);
  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque);
  struct EndRecord;  // a delivery report's note: which write, which of its end records
  std::uint64_t writes_ = 0;          // write() calls so far: an older write's late reports are ignored
  std::vector<std::int64_t> ends_;  // this write's end records' offsets, as reported (-1: not yet)
  KafkaConfig kafka_;
  std::string transactional_id_;
  KafkaPtr producer_;  // null after a failure it cannot go on from: made anew by the next write
  std::chrono::milliseconds timeout_{5000};
};

// Applies the changelog of every partition this hub does not own to its store, batch by batch,
// each with the changelog offset it reached, on a thread of its own (run()). Records of an owned
// partition are skipped: its owner wrote them to this store itself. Without standbys it reads a
// partition's changelog only while catch_up() restores it.
class ChangelogApplier {
 public:
  struct Config {
    KafkaConfig kafka;
    std::vector<std::string> source_topics;  // events and dead letters
    // After each applied batch, with the projection records it wrote (a live subscription's feed).
    std::function<void(KeyValues)> on_apply;
    // Hold every partition (a standby for each, and what a hub serving the API needs); false: only
    // the partitions being restored.
    bool standby = true;
  };
  // restored: every changelog partition applied up to where it ended when the applier started
  // (without standbys: always); lag: over the partitions read now.
  using Progress = ChangelogProgress;
  ChangelogApplier(Config config, Store& store);
  ~ChangelogApplier();
  void run(std::stop_token stop);

  // Ownership, from the runner's rebalance callback.
  void own(const TopicPartition& source);
  void disown(const TopicPartition& source);
  // Waits until the store holds the source partitions' changelog up to the end each has now
  // (whatever a previous owner committed), or `timeout` passes or the applier stops. The runner
  // calls it before it folds partitions it was just given (without standbys they are read side by
  // side). A copy held too long ago to restore from its position is refused, and the store is
  // marked to be restored whole at the next start (kRestoreWholeKey).
  std::expected<void, std::string> catch_up(const std::vector<TopicPartition>& sources, std::chrono::milliseconds timeout);
  std::expected<void, std::string> catch_up(const TopicPartition& source, std::chrono::milliseconds timeout) {
    return catch_up(std::vector<TopicPartition>{source}, timeout);
  }
  // Batches applied since start.
  std::uint64_t batches_applied() const;
  Progress progress() const;

 private:
  void run_applying(std::stop_token stop);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace courtyard::processors
