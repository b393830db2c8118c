#pragma once
// Courtyard's configuration: every setting with its default, read from config/courtyard.toml and
// overridden by COURTYARD_<SECTION>_<KEY> environment variables (e.g. COURTYARD_HTTP_PORT).
// Only the CLI wiring reads files and the environment; modules receive their own structs.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/kafka.h"
#include "common/kafka_access.h"
#include "common/mqtt.h"
#include "processors/alerts_fold.h"

namespace courtyard::hub {

struct Config {
  std::string var = "var";           // runtime data: state, spool, secrets (COURTYARD_VAR)
  std::string log_level = "info";    // trace|debug|info|warn|error
  KafkaConfig kafka;
  // Where each role's Kafka password is (kafka-ingest, kafka-hub, kafka-auditor, kafka-admin),
  // relative to var; scripts/services makes them.
  std::string kafka_credentials_dir = "secrets";
  MqttConfig mqtt;
  struct Http {
    std::string host = "127.0.0.1";  // address the hub's HTTP API listens on
    int port = 8080;                 // 0: any free port (printed at start)
    std::string tokens_file = "hub/tokens.json";  // API tokens (hashed), relative to var
    std::string web_root = "web";    // the dashboard's static files ("": no dashboard)
    std::int64_t ws_max_pending = 4096;  // changes a WebSocket client may have waiting before it is dropped
    std::int64_t ws_frame_interval_ms = 100; // least time between two frames of changes to one client (coalescing)
    std::int64_t max_connections = 1024;     // open HTTP and WebSocket connections; more are answered 503
    std::int64_t max_connections_per_address = 256;  // of those, from one client address (behind a proxy: the proxy's)
    std::int64_t max_websockets_per_token = 32;      // open WebSockets of one token; more are answered 429
    std::int64_t workers = 8;                // threads answering /api/ requests and building subscription snapshots
    std::int64_t max_queued_requests = 256;  // requests and snapshots waiting for a worker; more are answered 503
    std::int64_t max_requests_per_token = 4; // of those, of one token; more are answered 429 (keep it below workers)
    std::int64_t write_timeout_ms = 30000;   // a client that reads nothing for this long is dropped
    std::int64_t as_of_stores_keep = 4;      // as-of stores kept on disk for repeated queries (var/hub/as-of)
  } http;
  struct Ingest {
    std::string client_id = "courtyard-ingest-0";  // its persistent MQTT session
    std::vector<std::string> communities;          // owned communities; empty: all
    int instance = 0;                              // 0..255, part of event ids
    bool spool_sync = true;                        // acknowledge a device once its record is on the disk (group commit)
    std::int64_t max_payload_bytes = 16384;        // larger payloads are rejected (too_large)
    std::int64_t max_snapshot_bytes = 524288;      // the same for camera snapshots (.../snapshot)
    std::int64_t tick_interval_ms = 1000;          // the log's clock: a tick to every partition this often (0: this instance does not tick)
    std::int64_t commit_interval_ms = 20;          // a transaction of spooled records is committed this often (decision 14)
    std::int64_t linger_ms = 2;                    // the producer holds records this long to batch them: throughput for latency (decision 20)
    std::string chain_key_file = "secrets/chain-key";  // keys chain links, ticks and dead letters; ingest and auditors (relative to var; made by ingest's first start)
  } ingest;
  struct Hub {
    std::string group_id = "courtyard-hub";        // consumer group of the processors
    std::string instance_id = "courtyard-hub-0";   // static member id: a restart resumes at once
    std::int64_t block_cache_mb = 64;              // RocksDB block cache for all projections
    std::int64_t max_batch = 5000;                 // events folded per store write
    std::int64_t fold_lanes = 0;                   // threads folding partitions (0: one per core; the hub: but one)
    bool cluster = false;                          // share the partitions with the group's other hubs through the changelog (decision 0024)
    // What this hub does, sharing the partitions: "all" (fold its share, hold every partition,
    // serve the API), "processors" (fold its share; no API but /healthz and /metrics) or "api"
    // (fold nothing, hold every partition from the changelog, serve the API).
    std::string role = "all";
    bool standby = true;                           // processors: hold the other hubs' partitions too, for a failover with no restore
    std::int64_t restore_timeout_ms = 60000;       // cluster: a partition given to this hub is restored from the changelog within this
    std::int64_t session_timeout_ms = 10000;       // how long the group waits for a silent hub before its partitions move (the broker's minimum: 6000)
    std::string rules_file = "config/rules.toml";  // alert thresholds (defaults and per community)
    int utc_offset_minutes = 480;                  // local time for hour and day buckets (China: UTC+8)
    std::int64_t audit_interval_s = 3600;          // digests to the audit topic and a store checkpoint this often
    std::int64_t checkpoints_keep = 48;            // store checkpoints kept for as-of queries (oldest go first)
    std::string audit_key_file = "secrets/audit-key";  // Ed25519 key signing audit records, relative to var (made on first start)
  } hub;
  struct Vision {
    bool enabled = true;                           // the hub analyses camera snapshots
    std::string group_id = "courtyard-vision";     // its own consumer group: never in the event path's way
    std::int64_t workers = 1;                      // snapshots analysed at once
    std::int64_t raw_retention_minutes = 120;      // unblurred images on Kafka (awaiting analysis): gone after this
    std::int64_t snapshot_retention_minutes = 4320;  // blurred copies in the hub: gone after this
    std::string plate_key_file = "secrets/plate-key";  // key of plate tokens, relative to var (made on first use)
    std::int64_t min_face_px = 24;                 // smallest face side looked for, pixels
  } vision;
  struct Privacy {
    // The vault's keys, one file per person (relative to var). Back it up on its own, never with
    // the log: docs/operations.md "The vault's keys".
    std::string keys_dir = "vault/keys";
    std::string master_key_file = "secrets/vault-master-key";  // wraps every person's key (made on first start, 0600)
    std::int64_t visitor_retention_days = 30;      // a visitor's record is erased (key destroyed) this long after it was made (0: kept)
    std::int64_t sweep_interval_s = 3600;          // how often the retention sweep runs
  } privacy;
  struct Notify {
    // Notifications the alerts fold decides (dispatch, families: docs/alerts.md) are POSTed here,
    // signed (docs/api.md "Notifications"); empty: none sent (they are still recorded).
    std::string webhook_url;
    std::string webhook_secret_file = "secrets/webhook-secret";  // the signing key, relative to var (made on first start)
    std::int64_t webhook_attempts = 5;             // then the notification is failed (listed, never retried)
    std::int64_t webhook_timeout_ms = 3000;        // per attempt
    std::int64_t webhook_backoff_ms = 1000;        // before the 2nd attempt; doubled for each after
  } notify;
  struct Simulate {
    std::vector<std::string> communities = {"sunny-garden", "river-view"};
    std::int64_t devices = 300;
    double rate = 200;                             // events per second, whole fleet
    double bad_fraction = 0.01;
    double flatbuffer_fraction = 0.1;
    std::int64_t seed = 1;
    double scenes_per_minute = 6;                  // gate scenes: a pass, then the camera's snapshot (0: none)
    std::string photos_dir = "/usr/share/doc/opencv-doc/examples/data";  // OpenCV's sample photographs (opencv-doc)
  } simulate;

  std::filesystem::path var_path(const std::string& relative) const { return std::filesystem::path(var) / relative; }
};

// Looks up an environment variable; nullopt when unset.
using Environment = std::function<std::optional<std::string>(const std::string&)>;
Environment process_environment();

// Loads `path` (or, when empty, $COURTYARD_CONFIG, else ./config/courtyard.toml if present, else
// defaults), then applies the environment. Throws std::runtime_error naming the bad key.
Config load_config(const std::optional<std::string>& path, const Environment& env = process_environment());

// Reads alert rules: [defaults] and [communities.<id>] tables. Throws naming the bad key.
processors::RuleBook load_rules(const std::string& path);

// The Kafka consumer groups each role uses under this configuration (what `courtyard kafka setup`
// grants): ingest's sessions' groups, the hub's processors and vision, the tools' readers.
ConsumerGroups consumer_groups(const Config& config);

// Every key with its environment variable name (for --help and the docs test).
std::vector<std::pair<std::string, std::string>> config_keys();

}  // namespace courtyard::hub
