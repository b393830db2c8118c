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
inline constexpr const char* kChangelogAppliedAtKey = "meta/changelog_applied_at";
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
  // Returns once the transaction is committed; on an error nothing of it is visible to readers.
  std::expected<void, ChangelogWriteError> write(const std::vector<PartitionWrite>& writes, rd_kafka_t* consumer);

 private:
  ChangelogWriter() = default;
  std::expected<void, std::string> start();  // a producer, its transactions initialised
  static rd_kafka_error_t* until_done(const std::function<rd_kafka_error_t*()>& step);
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
  // Waits until the store holds the source partition's changelog up to the end it has now
  // (whatever a previous owner committed), or `timeout` passes or the applier stops. The runner
  // calls it before it folds a partition it was just given.
  std::expected<void, std::string> catch_up(const TopicPartition& source, std::chrono::milliseconds timeout);
  // Batches applied since start.
  std::uint64_t batches_applied() const;
  Progress progress() const;

 private:
  void run_applying(std::stop_token stop);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace courtyard::processors
