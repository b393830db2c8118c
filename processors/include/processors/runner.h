#pragma once
// The runner: the Kafka side of the processors. It consumes the events and dead-letter topics in
// a consumer group (cooperative-sticky), starts each assigned partition at the offset the store
// holds (never at Kafka's committed offset), hands batches to fold lanes and reports how fresh
// the store is. A fold lane is a Projector on a thread of its own, folding the partitions whose
// number modulo the lanes is its own and committing their state with their offsets; a lane takes
// everything handed to it so far (up to max_batch) as one batch, so batches grow with the lag.
// Lifecycle: construct, call run() on one thread until the stop token fires; read freshness() and
// stats() from any thread. Alerts the projector put in the store's outbox are produced to the
// alerts topic (key: alert id) and removed once Kafka confirms them; one Kafka refused is
// produced again, with everything after it, on a timer (1 s, doubling to a minute). When the
// store cannot be written (a full disk), a lane stops folding and nothing is lost: the same batch
// is folded again after 1 s, doubling to 30 s, until the store takes it; stats().store_error says
// why meanwhile. run() throws when the store is corrupt (a restart resumes from its offsets).
// With `changelog` (hub.cluster, decision 0024) hubs share the partitions: each batch goes to the
// changelog before the store, the partitions other hubs fold are applied to the store from their
// changelog, a partition this hub is given is caught up from the changelog before it is folded,
// and run() throws when the group has moved on from this hub (fenced).
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>

#include "common/kafka.h"
#include "common/metrics.h"
#include "processors/projector.h"
#include "processors/store.h"

namespace courtyard::processors {

struct RunnerConfig {
  KafkaConfig kafka;
  std::string group_id = "courtyard-hub";            // consumer group of the hub's processors
  // Static group membership: a restarted process with the same id gets its partitions back at
  // once instead of waiting for the broker to expire its previous session.
  std::string instance_id = "courtyard-hub-0";
  std::chrono::milliseconds session_timeout{10000};  // how long a silent member keeps its partitions
  std::size_t max_batch = 5000;                      // messages folded per store write
  // Threads folding, each its share of the partitions; 0: one per core but one (for the poll
  // loop, the outbox and the HTTP server).
  std::size_t fold_lanes = 0;
  std::chrono::milliseconds poll_timeout{100};       // wait for the first message of a batch
  // Share the partitions with other hubs in the group (decision 0024): each batch goes to the
  // changelog (kafka.state_topic, ...) before the store, the changelog of every partition another
  // hub owns is applied to the store, and a partition given to this hub is restored from it
  // (within restore_timeout) before it is folded. false: one hub, no changelog.
  bool changelog = false;
  std::chrono::milliseconds restore_timeout{60'000};
  // Sharing the partitions: false folds nothing (hub.role = api): the store holds every partition
  // from the changelog, and the group never sees this hub.
  bool fold = true;
  // Sharing the partitions: hold the partitions other hubs fold too (a failover then restores
  // nothing); false: a partition is read from the changelog only when this hub is given it.
  bool standby = true;
  RuleBook rules;                                    // alert rules in force
  FoldContext context;                               // local time for hour and day buckets
  bool notify_webhook = false;                       // index notifications a webhook has still to carry
  // Called after each store write with the write's sequence number (1, 2, ...) and the projection
  // records it wrote, on the thread of the lane that wrote them: lanes may call it at the same
  // time, and numbers may arrive out of order across lanes, but a key's changes come in commit
  // order (one lane writes it). Must not block: hand the changes off.
  std::function<void(std::uint64_t, KeyValues)> on_commit;
};

struct PartitionFreshness {
  std::int64_t next_offset = -1;     // next offset the store will apply
  std::int64_t high_watermark = -1;  // end of the partition as last seen
  std::int64_t lag() const { return high_watermark < 0 || next_offset < 0 ? 0 : std::max<std::int64_t>(0, high_watermark - next_offset); }
};
using Freshness = std::map<std::pair<std::string, std::int32_t>, PartitionFreshness>;

// Sharing the partitions: the store's progress through the changelog.
struct ChangelogProgress {
  bool restored = false;  // every partition held up to where its changelog ended at start
  std::int64_t lag = 0;   // changelog records written and not applied yet
  std::string store_error;  // why the store takes no changelog batch now (a full disk); empty while it does
};

struct RunnerStats {
  std::uint64_t applied = 0, duplicates = 0, replayed = 0, corrupt = 0, quarantined = 0, dead_letters = 0, batches = 0;
  std::uint64_t alerts_published = 0;
  std::string store_error;  // why folding is stopped (the store refuses writes); empty while it runs
  std::uint64_t store_failures = 0;  // store writes that failed since start
};

class Runner {
 public:
  Runner(RunnerConfig config, Store& store);
  ~Runner();
  void run(std::stop_token stop);
  std::size_t fold_lanes() const;
  Freshness freshness() const;
  RunnerStats stats() const;
  // Sequence number of the last store write whose changes went to on_commit (0: none yet). A view
  // taken after reading it contains every change up to and including it.
  std::uint64_t committed() const;
  // Sharing the partitions: how far the store is behind the changelog (nullopt: one hub alone).
  std::optional<ChangelogProgress> changelog_progress() const;
  // Seconds from an event's device time to the commit of its projection (same-clock devices only).
  const Histogram& latency() const;
  // Seconds the projector took per batch (fold and store write).
  const Histogram& batch_seconds() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A message as librdkafka delivered it, copied into what the projector folds.
LogMessage log_message_of(const rd_kafka_message_t& message);

}  // namespace courtyard::processors
