#pragma once
// ingest::Bridge moves device events from MQTT into Kafka.
//
// For every message on courtyard/v1/{community}/+/telemetry (and .../snapshot, camera images) of the communities it owns, it admits
// or rejects (see admit.h); an accepted event is enriched (event id, ingest time), written to the
// durable spool and produced to the events topic keyed by community (in transactions, acks=all);
// a rejection goes to the dead-letter topic (through the same spool) and to the device's errors
// topic. Spooled records are deleted only when their transaction commits, and re-produced in
// order after a restart, so an accepted event survives a SIGKILL; each transaction carries the
// instance's delivery mark, so a restart never produces a record twice (decision 14), and a
// message the broker delivers again is recognised by the device's (boot, seq) window. A device's message is acknowledged only once the
// spool holds it (or its dead letter): when the disk refuses a write (full), the message goes back
// to the broker unacknowledged (the connection is cut before the PUBACK; the persistent session
// keeps it) and ingest keeps retrying, taking messages again by itself once space returns.
//
// Snapshots arrive on a second persistent MQTT session ("{client_id}-snapshots") with its own
// thread, so images never queue telemetry behind them. A camera snapshot is two records in one spool write: the whole event, image included, for the
// snapshots topic (limited retention; ingest sets it at start), and the event without its image
// for the log. A refused snapshot's image never reaches the dead-letter topic, only its digest.
//
// Lifecycle: construct with a config, call run() on one thread until the stop token fires.
// run() throws only at start-up (spool, broker or credentials unusable).
#include <chrono>
#include <expected>
#include <cstdint>
#include <stop_token>
#include <string>
#include <vector>

#include "common/kafka.h"
#include "common/mqtt.h"
#include "schemas/event.h"

namespace courtyard::ingest {

struct BridgeConfig {
  KafkaConfig kafka;
  MqttConfig mqtt;
  std::string mqtt_password;                    // for mqtt.username
  std::string client_id = "courtyard-ingest-0"; // persistent MQTT session; one per ingest instance
  std::vector<std::string> communities;         // communities this instance owns; empty: all
  std::string spool_dir = "var/ingest/spool";   // RocksDB directory of the durable spool
  // A device is acknowledged only once its record is on the disk (group commit: one fsync per
  // read of the MQTT socket), so a power cut loses nothing acknowledged. false: acknowledged once
  // the OS has it (survives a crash of the process, not of the machine).
  bool spool_sync = true;
  unsigned instance = 0;                        // 0..255, part of every event id it assigns
  schemas::Limits limits;                       // payload size and value limits
  // How long a message of a device not yet known waits for the registry to be applied up to its
  // end (the broker query, then the loop's reading); past it the message is handed back, not refused.
  std::chrono::milliseconds registry_wait{5000};
  std::size_t max_in_flight = 50000;            // spooled records handed to the producer at once
  std::chrono::milliseconds command_max_age{3'600'000};  // older commands are not delivered to devices
  std::chrono::minutes snapshot_retention{120};  // camera images (unblurred) are gone from Kafka after this at the latest
  // The log's clock: a tick to every partition of the events topic this often (0: none). Ingest,
  // the events topic's only writer, stamps ticks with the clock that stamps every event; one
  // instance of a deployment ticks.
  std::chrono::milliseconds tick_interval{1000};
  // Spooled records go to Kafka in transactions (exactly once across a restart: decision 14);
  // one is committed this often, and readers see its records at the commit.
  std::chrono::milliseconds commit_interval{20};
  // How long the producer holds records to send them in fewer requests. A commit waits for what
  // lingers, so up to the commit interval it trades latency for broker and ingest CPU: 20 ms
  // instead of 2 raised ingest's ceiling from 11.7k to 14.7k events/s and cost 8-10 ms of p50
  // (bench/ingest; docs/decisions/0020).
  std::chrono::milliseconds linger{2};
  // Keys every chain link, tick and dead letter (docs/security.md): without it nobody can extend
  // a chain, forge a tick or a dead letter that passes `replay verify`. Required.
  std::string chain_key;
};

// The snapshots topic's settings for a retention: its segments roll and the broker's cleaner runs
// often enough that no image outlives `retention` (the broker deletes whole segments only, checks
// every 5 minutes and removes a deleted segment's file a minute later; all of that is subtracted).
// Errors when the retention is too short to honour (under 10 minutes).
std::expected<KafkaProperties, std::string> snapshot_topic_configs(std::chrono::minutes retention);

struct BridgeStats {
  std::uint64_t accepted = 0;
  std::uint64_t rejected = 0;
  std::uint64_t delivered = 0;
  std::uint64_t spooled = 0;  // not yet confirmed by Kafka
  std::uint64_t handed_back = 0;  // devices' messages left unacknowledged because the spool failed
  std::uint64_t repeats = 0;      // devices' messages delivered again that the spool held already (acknowledged, not appended again)
};

class Bridge {
 public:
  explicit Bridge(BridgeConfig config);
  ~Bridge();
  void run(std::stop_token stop);
  BridgeStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace courtyard::ingest
