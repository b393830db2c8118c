#pragma once
// Owning pointers for the C libraries' handles. One deleter template for all of them.
#include <memory>

#include <librdkafka/rdkafka.h>
#include <mosquitto.h>

// Include this header from .cpp files only: it brings the C libraries' declarations.
namespace courtyard {

template <auto Fn>
struct CDeleter {
  template <class T>
  void operator()(T* p) const noexcept {
    if (p) Fn(p);
  }
};

using KafkaPtr = std::unique_ptr<rd_kafka_s, CDeleter<rd_kafka_destroy>>;
using KafkaConfPtr = std::unique_ptr<rd_kafka_conf_s, CDeleter<rd_kafka_conf_destroy>>;
using KafkaPartitionsPtr =
    std::unique_ptr<rd_kafka_topic_partition_list_s, CDeleter<rd_kafka_topic_partition_list_destroy>>;
using KafkaMessagePtr = std::unique_ptr<rd_kafka_message_s, CDeleter<rd_kafka_message_destroy>>;
using KafkaErrorPtr = std::unique_ptr<rd_kafka_error_s, CDeleter<rd_kafka_error_destroy>>;
using MosquittoPtr = std::unique_ptr<mosquitto, CDeleter<mosquitto_destroy>>;
// Kafka's admin API: a reply queue, its events, and ACL bindings (also used as filters).
using AdminQueuePtr = std::unique_ptr<rd_kafka_queue_t, CDeleter<rd_kafka_queue_destroy>>;
using AdminEventPtr = std::unique_ptr<rd_kafka_event_t, CDeleter<rd_kafka_event_destroy>>;
using AclBindingPtr = std::unique_ptr<rd_kafka_AclBinding_t, CDeleter<rd_kafka_AclBinding_destroy>>;

}  // namespace courtyard
