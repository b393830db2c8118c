#pragma once
// The projector folds a batch of log messages into the store, exactly once per offset: messages
// below the stored offset of their partition are skipped, and the new state of every key the
// batch touched is written together with the batch's offsets in one atomic write. A crash at any
// point therefore leaves state and offsets agreeing, and a restart resumes where the store says.
//
// No message can stop it. A message it cannot fold (it does not decode, or folding it throws) is
// quarantined: a record under quarantine/{topic}/{partition}/{offset} with the reason, written
// with the offset, and folding goes on. When a batch throws, its messages are folded again one
// at a time, so the decision is made for each message alone, the same way live and in a replay.
// Single-threaded. One store may have several projectors (fold lanes), each folding its own
// partitions on a thread of its own, and several hubs may share the partitions (decision 0024):
// every key a fold writes belongs to one source partition (a community's state and outbox, a
// device's, a partition's offset and counters), so no two writers ever write the same key.
#include <cstdint>
#include <expected>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "processors/alerts_fold.h"
#include "processors/community_folds.h"
#include "processors/store.h"

namespace courtyard::processors {

class Projections;

// One message as read from Kafka (or from a test).
struct LogMessage {
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::string key;
  std::string value;
  std::vector<std::pair<std::string, std::string>> headers;
  // `value` decoded, when its reader decoded it already (replay's chain check): the projector
  // folds this instead of decoding it again. It must be schemas::decode(value).
  std::shared_ptr<const schemas::Event> decoded;
};

struct ProjectorTopics {
  std::string events = "courtyard.events.v1";
  std::string deadletter = "courtyard.deadletter.v1";
};

// The fold lane (of `lanes`) that folds a message: its partition's number modulo the lanes for
// an event, lane 0 for every dead letter (those of a topic ingest could not parse share one
// record, rejections/_unknown, across the dead-letter topic's partitions). The hub's runner and a
// replay hand messages out by this, so a key is always one lane's.
std::size_t fold_lane(const LogMessage& m, const ProjectorTopics& topics, std::size_t lanes);

// An outbox entry: what the runner produces once the state that made it is committed.
struct OutboxEntry {
  std::string topic;  // "alerts" or "commands"
  std::string key, value;
  std::int32_t partition = -1;  // of the events topic, whose owner sends it (-1: not recorded)
};
// The stored form of an entry, and the entry of a stored form (nullopt: not one this build wrote).
std::string outbox_record(const OutboxEntry& entry);
std::optional<OutboxEntry> outbox_entry(std::string_view record);

// One source partition's part of a batch's write, as the store is about to take it: the records
// that partition's folds changed and removed, and its offset after them.
struct PartitionWrite {
  std::string topic;
  std::int32_t partition = 0;
  KeyValues puts;
  std::vector<std::string> deletes;
  std::int64_t next_offset = 0;
  // Positions of other topics the store records with this write (before_write's: where the
  // changelog stands after it).
  Offsets also_offsets;
};
// Called with a batch's writes, one per source partition read, before the store takes them; an
// error fails the batch as a failed store write does (nothing of it is applied). The changelog
// (decision 0024) is written here, which may add records of the store's own bookkeeping (puts,
// also_offsets) to the write.
using BeforeWrite = std::function<std::expected<void, std::string>(std::vector<PartitionWrite>&)>;

// What the projector needs besides the store: topic names and the alert rules.
struct ProjectorConfig {
  ProjectorTopics topics;
  RuleBook rules;
  FoldContext context;  // local time for hour and day buckets
  // Parsed states kept between batches, per kind of state (devices, homes, commands, ...): the
  // least recently used beyond this are dropped (the store has them) so memory does not grow
  // with history. A compound's devices, homes and communities should fit.
  std::size_t cache_entries = 20'000;
  BeforeWrite before_write;  // unset: the store alone
  // This hub sends notifications to a webhook: index the ones not yet sent (notifypending/).
  bool notify_webhook = false;
};

struct BatchResult {
  std::uint64_t applied = 0;     // events folded for the first time
  std::uint64_t duplicates = 0;  // events recognised as seen (device, boot, seq)
  std::uint64_t replayed = 0;    // messages below the stored offset (already in the store)
  std::uint64_t corrupt = 0;     // messages that did not decode (quarantined)
  std::uint64_t quarantined = 0;  // messages set aside with their reason: corrupt, or their fold threw
  std::uint64_t dead_letters = 0;
  std::vector<std::int64_t> fresh_device_times_ms;  // device time of each event folded, for latency
  std::uint64_t alerts_changed = 0;                 // alert records written
  std::uint64_t outbox_entries = 0;                 // records put in the outbox (alerts and commands)
  std::uint64_t bytes_written = 0;  // keys and values this batch wrote to the store
  KeyValues changes;  // the projection records this batch wrote (Projector::is_projection_key), in write order
  KeyValues outbox;   // the outbox entries it wrote (kOutboxPrefix), in order
};

class Projector {
 public:
  Projector(Store& store, ProjectorConfig config);
  ~Projector();
  // Errors only when the store cannot be written or read; nothing of the batch is then applied.
  std::expected<BatchResult, std::string> apply(std::span<const LogMessage> batch);
  // Next offset to read, per partition, as stored.
  const Offsets& offsets() const { return offsets_; }
  // Parsed states held in memory between batches, over every kind.
  std::size_t cached_states() const;
  // Forgets every state held in memory and reads the offsets again: another writer (a changelog
  // applied while another hub owned a partition) changed the store under it.
  void reload();

  static std::string device_key(const std::string& device) { return "devices/" + device; }
  static std::string rejection_key(const std::string& device) { return "rejections/" + device; }
  // An alert's record is also where its community's state reads an active or recently closed
  // episode from (decision 0017): only the projector writes or deletes these.
  static std::string alert_key(const std::string& id) { return "alerts/" + id; }
  // notifications/{community}/{id}: what the fold decided to tell whom, and what became of it;
  // notifypending/{community}/{id}: those a webhook has still to carry (not served).
  static std::string notification_key(const std::string& community, const std::string& id) {
    return "notifications/" + community + "/" + id;
  }
  static constexpr const char* kNotifyPendingPrefix = "notifypending/";
  static std::string notify_pending_key(const std::string& community, const std::string& id) {
    return kNotifyPendingPrefix + community + "/" + id;
  }
  static std::string alert_state_key(const std::string& community) { return "alertstate/" + community; }
  static std::string meter_key(const std::string& device) { return "meters/" + device; }
  static std::string gate_key(const std::string& device) { return "gates/" + device; }
  static std::string elder_key(const std::string& device) { return "elders/" + device; }
  static std::string camera_key(const std::string& device) { return "cameras/" + device; }
  static std::string home_key(const std::string& community, const std::string& unit) {
    return "homes/" + community + "/" + unit;
  }
  static std::string registry_key(const std::string& community, const std::string& kind, const std::string& id) {
    return "registry/" + community + "/" + kind + "/" + id;
  }
  static std::string command_key(const std::string& id) { return "commands/" + id; }
  // Messages set aside: {topic, partition, offset, reason, key, bytes, sha256}. Admin and auditor read them.
  static std::string quarantine_key(const std::string& topic, std::int32_t partition, std::int64_t offset);
  static std::string notice_key(const std::string& community, const std::string& id) {
    return "notices/" + community + "/" + id;
  }
  // The last chain position and link seen of a community's stream (for audit digests).
  static std::string chain_head_key(const std::string& community) { return std::string(kChainHeadPrefix) + community; }
  static constexpr const char* kChainHeadPrefix = "chainhead/";
  static std::string community_key(const std::string& community, const std::string& what) {
    return "communities/" + community + "/" + what;
  }
  // Alerts and commands to publish, per community in order (outbox/{community}/{n}): written with
  // the state that produced them, deleted once Kafka has them. Entries are outbox_record()s.
  static constexpr const char* kOutboxPrefix = "outbox/";
  static std::string outbox_key(const std::string& community, std::uint64_t n);
  // A community's next entry number: meta/outbox_next/{community}.
  static constexpr const char* kOutboxNextKey = "meta/outbox_next";
  // Commands for the community's staff rather than one device (ingest publishes them on
  // courtyard/v1/{community}/alerts).
  static constexpr const char* kStaffTarget = "_staff";
  // Notices for the community's home panels (ingest publishes them on courtyard/v1/{community}/notices).
  static constexpr const char* kNoticesTarget = "_notices";
  // Records the API serves (devices/, alerts/, ...), as opposed to the folds' working state,
  // offsets and the outbox.
  static bool is_projection_key(std::string_view key);
  static const std::vector<std::string>& projection_prefixes();  // in key order
  // A record as the API serves it, from the stored one: most are served as stored; a community's
  // presence is stored without who is inside, which is kept one record per person and vehicle
  // (inside/{community}/...) and put back here. Audit digests are over this form, which is what
  // the version before stored, so digests published before an upgrade still verify.
  static std::string served_record(const Store::View& view, std::string_view key, std::string record);
  // Whether served_record reads more than the record for `key` (then it needs a view).
  static bool served_in_pieces(std::string_view key) {
    return key.starts_with("communities/") && key.ends_with("/presence");
  }
  // Counters over every community ({name: count}), one record per source partition
  // ("stats/events/{partition}" of the events topic, "stats/rejected/{partition}" of the dead-letter
  // topic); counts() adds them up.
  static constexpr const char* kEventStatsKey = "stats/events";
  static constexpr const char* kRejectionStatsKey = "stats/rejected";
  static std::string counter_key(const char* counter, std::int32_t partition);
  static std::map<std::string, std::uint64_t> counts(const Store::View& view, const char* counter);

  // The form of the records this build's projections write and read. Any change to a record's
  // form (a record split into pieces, a field's meaning, an encoding) increments it. A projector
  // marks the empty store it is given; a hub rebuilds a store of another format from the log when
  // it starts (replay::ensure_store_format, decision 0021), and a rebuild never continues one.
  // 2: the records written per event are binary (decision 0022): devices/, watch/, elders/,
  // meters/, gates/, homes/, cameras/ and a community's meter totals.
  // 3: counters are kept per fold lane, and a batch writes the offsets of the partitions it read
  // only.
  // 4: every key belongs to one source partition (decision 0024): counters are kept per partition
  // (counter_key) and outbox entries are numbered per community (outbox_key).
  // 5: the alerts fold reads roster.set and site.entry (dispatch, issue 16), and notifications/ and
  // responses/ are folded from alerts: a store of 4 is rebuilt so they hold for the whole log.
  // 6: staff are also told when an alert is taken from them (relieved) and when it is resolved.
  static constexpr std::uint32_t kStoreFormat = 6;
  static constexpr const char* kStoreFormatKey = "meta/format";
  // nullopt: the store is empty (of no format yet); 0: written before stores were marked (or a
  // marker no version wrote).
  static std::optional<std::uint32_t> store_format(const Store::View& view);

 private:
  // One partition's messages folded, not yet written.
  struct Folding {
    BatchResult result;
    PartitionWrite write;
    bool empty = true;  // nothing to write, not even an offset
  };
  // Folds one partition's messages (in order) into the states held in memory and says what to
  // write; throws when a message cannot be folded (apply() then quarantines it).
  Folding fold(const std::vector<const LogMessage*>& messages);
  // Folds one message alone, or quarantines it when its fold throws.
  Folding fold_or_quarantine(const LogMessage& m);
  // Writes what was folded (after before_write) in one atomic write; on failure forgets every
  // state held in memory, which holds what the store does not.
  std::expected<BatchResult, std::string> commit(std::vector<Folding> folded);
  Store& store_;
  ProjectorConfig config_;
  Offsets offsets_;
  std::map<std::string, std::uint64_t> outbox_next_;  // community -> its next entry number, as stored
  // Drops every state held in memory (after a failed batch): the store has what was written.
  void forget_state();
  // The projections, with the states they keep between batches (made on the first batch).
  std::unique_ptr<Projections> projections_;
  struct ChainHead {
    std::uint64_t seq = 0;
    std::string link;
    std::uint64_t event_id = 0;
  };
  std::map<std::string, ChainHead> chain_heads_;  // community -> its last chained event, as stored
};

}  // namespace courtyard::processors
