#pragma once
// Kafka connection settings shared by every process, and construction of librdkafka handles.
#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/handles.h"

namespace courtyard {

struct KafkaConfig {
  std::string host = "127.0.0.1";  // broker host for bootstrap
  int port = 9092;                 // broker port for bootstrap
  std::string bootstrap_servers;   // overrides host:port when set (a production cluster list)
  std::string events_topic = "courtyard.events.v1";          // the source of truth
  std::string deadletter_topic = "courtyard.deadletter.v1";  // every rejected payload
  std::string registry_topic = "courtyard.registry.v1";      // device registrations (compacted)
  std::string alerts_topic = "courtyard.alerts.v1";
  std::string commands_topic = "courtyard.commands.v1";
  // The hub's events for a community (operator actions, registry changes, commands, notices), on
  // their way to ingest, the single writer (and chainer) of each community's stream.
  std::string requests_topic = "courtyard.requests.v1";
  // Periodic digests of the projections and the chains' heads (compacted; one record per digest).
  std::string audit_topic = "courtyard.audit.v1";
  // Gate cameras' snapshots with their images, for the vision processor only: kept for a limited
  // time (ingest sets its retention), never part of the log that is replayed.
  std::string snapshots_topic = "courtyard.snapshots.v1";
  // Ingest's delivery marks (compacted, keyed by ingest's client id): up to which spool record an
  // instance's transactions are committed, written in each transaction (decision 14).
  std::string progress_topic = "courtyard.progress.v1";
  // The changelogs of the hub's state (decision 0024; compacted): every write a partition's owner
  // makes to its store, in the partition of the same number as its source's.
  std::string state_topic = "courtyard.state.v1";                        // of the events topic
  std::string state_deadletter_topic = "courtyard.state.deadletter.v1";  // of the dead-letter topic

  // Who this process is at the broker. The CLI wiring fills username and password for the role
  // it runs as (ingest, hub, auditor, admin: docs/security.md); an empty mechanism talks to a
  // broker without authentication.
  std::string sasl_mechanism = "PLAIN";  // SASL over the loopback listener; "" for none
  std::string sasl_username;
  std::string sasl_password;

  std::string bootstrap() const {
    return bootstrap_servers.empty() ? host + ":" + std::to_string(port) : bootstrap_servers;
  }
};

using KafkaProperties = std::map<std::string, std::string>;

// Builds a producer or consumer. `extra` are librdkafka properties on top of bootstrap.servers.
// Errors name the offending property.
std::expected<KafkaPtr, std::string> make_producer(const KafkaConfig& config, const KafkaProperties& extra,
                                                   void (*delivery_cb)(rd_kafka_t*, const rd_kafka_message_t*,
                                                                       void*) = nullptr,
                                                   void* opaque = nullptr);
std::expected<KafkaPtr, std::string> make_consumer(
    const KafkaConfig& config, const KafkaProperties& extra,
    void (*rebalance_cb)(rd_kafka_t*, rd_kafka_resp_err_t, rd_kafka_topic_partition_list_t*, void*) = nullptr,
    void* opaque = nullptr);

// The high watermark (offset of the next message to be written) of one partition, asked of the broker.
std::expected<std::int64_t, std::string> query_high_watermark(rd_kafka_t* rk, const std::string& topic,
                                                              std::int32_t partition,
                                                              std::chrono::milliseconds timeout);

// How many partitions `topic` has, asked of the broker; 0 when the topic does not exist.
std::expected<std::int32_t, std::string> partition_count(rd_kafka_t* rk, const std::string& topic,
                                                         std::chrono::milliseconds timeout);

// Where a consumer stands in one assigned partition: the offset of the next message it will hand
// out, past any transaction markers it has stepped over (-1 when unknown). A partition written in
// transactions ends with a commit marker, never handed out as a message, so "read to the end"
// means this position reaching the high watermark, not the last message's offset + 1.
std::int64_t consumer_position(rd_kafka_t* consumer, const std::string& topic, std::int32_t partition);

// A message's headers, in order (a header without a value has an empty one).
std::vector<std::pair<std::string, std::string>> message_headers(const rd_kafka_message_t& message);

// Reads every partition of `topic` from its start to the end it had when called, calling
// `on_message` for each message (per partition in order). For tools, tests and start-up, not hot
// paths. `group_id` only names the reader to the broker (a role may use the groups granted to it).
std::expected<void, std::string> read_to_end(const KafkaConfig& config, const std::string& topic,
                                             const std::function<void(const rd_kafka_message_t&)>& on_message,
                                             std::chrono::milliseconds timeout = std::chrono::seconds(60),
                                             const std::string& group_id = "courtyard-reader");

// Creates `topic` with `configs` if it does not exist, or sets its configs to exactly `configs`
// (every other dynamic setting of the topic returns to the broker's default) if it does.
std::expected<void, std::string> ensure_topic(const KafkaConfig& config, const std::string& topic, int partitions,
                                              const KafkaProperties& configs,
                                              std::chrono::milliseconds timeout = std::chrono::seconds(30));
// The topic's configs as the broker reports them (defaults included).
std::expected<KafkaProperties, std::string> describe_topic(const KafkaConfig& config, const std::string& topic,
                                                           std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace courtyard
