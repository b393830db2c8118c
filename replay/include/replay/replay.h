#pragma once
// Auditor replay: rebuild the projections from the Kafka log into a fresh store with the very
// projector and folds the hub runs, digest a store's projections, and compare two stores.
// Never writes to the live store (it is opened read-only). A rebuild reads (and checks chains) on
// the calling thread and folds on fold lanes, a thread each; long calls report progress through
// a callback, called on the calling thread.
#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/kafka.h"
#include "processors/projector.h"
#include "processors/store.h"

namespace courtyard::replay {

struct Progress {
  std::uint64_t messages = 0;  // read so far
  std::uint64_t total = 0;     // to read in all
  double seconds = 0;          // since the start
};

struct RebuildConfig {
  KafkaConfig kafka;
  processors::ProjectorConfig projector;  // the same rules and local time as the hub's
  std::string dir;                        // the new store; must not exist or be empty (unless resume)
  // Continue the store already in `dir` (a previous rebuild, or a hub checkpoint) from its offsets;
  // chains are followed on from the heads it holds.
  bool resume = false;
  // Where to stop, per partition (next offset not to apply); partitions not named are read to
  // the end they had when the rebuild started. Unset: everything up to that end.
  std::optional<processors::Offsets> until_offsets;
  bool only_named_partitions = false;     // with until_offsets: partitions it does not name are not read
  // Refuse a log that no longer starts at offset 0 (retention or a topic re-pointed removed its
  // head): the rebuild would lack what was there. A store being replaced needs the whole history.
  bool require_log_start = false;
  // Or: stop at the first message appended after this time (ms since the epoch, broker time).
  std::optional<std::int64_t> until_time_ms;
  std::size_t max_batch = 5000;           // messages per store write (per fold lane)
  // Threads folding (each the partitions whose number modulo this is its own); 0: one per core.
  // The rebuilt projections are the same for any number.
  std::size_t fold_lanes = 0;
  std::chrono::milliseconds timeout{120000};  // longest wait for the broker without progress
  std::function<void(const Progress&)> on_progress;  // about once a second
  // The deployment's chain key (ingest.chain_key_file): with it every chain link, tick and dead
  // letter is checked and every break reported; without it (the hub's own as-of reads) none is.
  std::optional<std::string> chain_key;
};

// A community's hash chain as the rebuild found it.
struct ChainHead {
  std::uint64_t seq = 0;      // of its last event
  std::string link;           // of its last event
  std::uint64_t events = 0;   // chained events read
  std::uint64_t repeats = 0;  // byte-identical re-appends (ingest re-producing after a crash)
  std::uint64_t unchained = 0;  // events of the community without a chain position (each one is a break)
};

// Where the log does not match its chains: an altered event, a missing one, or a foreign one.
struct ChainBreak {
  std::string community;
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::uint64_t seq = 0;  // the chain position the event claims
  std::string what;       // in words: "altered: ...", "missing events 41..41 before this one", ...
};

struct RebuildSummary {
  processors::Offsets offsets;  // what the rebuilt store reflects (next offset per partition)
  std::uint64_t messages = 0, applied = 0, duplicates = 0, corrupt = 0, quarantined = 0, dead_letters = 0;
  double seconds = 0;
  std::map<std::string, ChainHead> chains;  // by community
  std::vector<ChainBreak> breaks;           // in log order per partition
};

std::expected<RebuildSummary, std::string> rebuild(const RebuildConfig& config);

// The projections as they were at `time_ms` (broker time): the newest hub checkpoint taken at or
// before it (var/hub/checkpoints/{ms}) copied into `config.dir`, and the log from the checkpoint's
// offsets up to the time replayed on top; from offset 0 when no checkpoint is old enough.
struct AsOfResult {
  RebuildSummary summary;
  std::optional<std::int64_t> checkpoint_ms;  // the checkpoint it started from
};
std::expected<AsOfResult, std::string> build_as_of(RebuildConfig config, const std::string& checkpoints_dir,
                                                   std::int64_t time_ms);

// Makes the hub's store in `config.dir` one of this build's format (decision 0021). A store of
// another format (an older or newer version's, or one from before stores were marked) is rebuilt
// from the log beside it, up to the offsets it had reached, and then put in its place. Its outbox
// (alerts and commands not yet confirmed by Kafka) is carried over and the rebuild's own is
// dropped, so nothing the old store sent is sent again. A store of this format, or none, is left
// as it is: nullopt. A rebuild a crash interrupted is undone first (the old store is kept until
// the new one is complete), so it is simply done again.
struct Reformat {
  std::uint32_t from = 0;  // the old store's format (0: before stores were marked)
  std::size_t outbox_kept = 0;  // the old store's alerts and commands not yet confirmed, carried over
  RebuildSummary summary;
};
std::expected<std::optional<Reformat>, std::string> ensure_store_format(RebuildConfig config);

// Per projection (devices, alerts, ...): how many records and the SHA-256 of all of them in key
// order. Two stores holding the same records have the same digests.
struct ProjectionDigest {
  std::uint64_t records = 0;
  std::string sha256;
  bool operator==(const ProjectionDigest&) const = default;
};
using Digests = std::map<std::string, ProjectionDigest>;
Digests digest(const processors::Store::View& view);

// The first projection record (in key order) two stores disagree on; nullopt when they agree.
struct Difference {
  std::string key;
  std::optional<std::string> left, right;  // nullopt: the store lacks the key
};
std::optional<Difference> first_difference(const processors::Store::View& left, const processors::Store::View& right);

// The projections the digests and comparisons cover (the served records, not the folds'
// working state, the outbox or the offsets).
const std::vector<std::string>& projection_prefixes();

}  // namespace courtyard::replay
