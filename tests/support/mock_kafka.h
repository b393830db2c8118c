#pragma once
// librdkafka's in-process mock cluster with Courtyard's topics: the events and dead-letter topics
// and their changelogs (decision 0024). For fault-injection unit tests; the real broker is the
// integration tests'.
#include <doctest/doctest.h>

#include <string>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "common/handles.h"
#include "common/kafka.h"

namespace courtyard::test {

struct MockKafka {
  KafkaPtr handle;
  rd_kafka_mock_cluster_t* cluster = nullptr;
  std::string bootstrap;
  explicit MockKafka(int events_partitions = 3) {
    auto p = make_producer(KafkaConfig{.bootstrap_servers = "unused:1"}, {{"test.mock.num.brokers", "1"}});
    REQUIRE(p);
    handle = std::move(*p);
    cluster = rd_kafka_handle_mock_cluster(handle.get());
    REQUIRE(cluster);
    bootstrap = rd_kafka_mock_cluster_bootstraps(cluster);
    rd_kafka_mock_topic_create(cluster, "courtyard.events.v1", events_partitions, 1);
    rd_kafka_mock_topic_create(cluster, "courtyard.deadletter.v1", 3, 1);
    rd_kafka_mock_topic_create(cluster, "courtyard.state.v1", events_partitions, 1);
    rd_kafka_mock_topic_create(cluster, "courtyard.state.deadletter.v1", 3, 1);
  }
  KafkaConfig config() const { return KafkaConfig{.bootstrap_servers = bootstrap}; }
};

}  // namespace courtyard::test
