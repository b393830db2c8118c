#include "common/kafka.h"

#include <array>
#include <map>

namespace courtyard {
namespace {

std::expected<KafkaConfPtr, std::string> make_conf(const KafkaConfig& config, const KafkaProperties& extra) {
  KafkaConfPtr conf(rd_kafka_conf_new());
  std::array<char, 512> err{};
  auto set = [&](const std::string& k, const std::string& v) -> bool {
    return rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), err.data(), err.size()) == RD_KAFKA_CONF_OK;
  };
  if (!set("bootstrap.servers", config.bootstrap())) return std::unexpected(std::string(err.data()));
  if (!config.sasl_mechanism.empty() && !config.sasl_username.empty()) {
    if (!set("security.protocol", "sasl_plaintext") || !set("sasl.mechanisms", config.sasl_mechanism) ||
        !set("sasl.username", config.sasl_username) || !set("sasl.password", config.sasl_password)) {
      return std::unexpected("kafka SASL settings: " + std::string(err.data()));
    }
  }
  for (const auto& [k, v] : extra) {
    if (!set(k, v)) return std::unexpected("kafka property " + k + ": " + err.data());
  }
  return conf;
}

std::expected<KafkaPtr, std::string> make_client(rd_kafka_type_t type, KafkaConfPtr conf) {
  std::array<char, 512> err{};
  rd_kafka_t* rk = rd_kafka_new(type, conf.get(), err.data(), err.size());
  if (!rk) return std::unexpected(std::string(err.data()));
  (void)conf.release();  // rd_kafka_new owns the conf only once it succeeded
  return KafkaPtr(rk);
}

}  // namespace

std::expected<KafkaPtr, std::string> make_producer(const KafkaConfig& config, const KafkaProperties& extra,
                                                   void (*delivery_cb)(rd_kafka_t*, const rd_kafka_message_t*,
                                                                       void*),
                                                   void* opaque) {
  auto conf = make_conf(config, extra);
  if (!conf) return std::unexpected(conf.error());
  if (delivery_cb) rd_kafka_conf_set_dr_msg_cb(conf->get(), delivery_cb);
  if (opaque) rd_kafka_conf_set_opaque(conf->get(), opaque);
  return make_client(RD_KAFKA_PRODUCER, std::move(*conf));
}

std::expected<KafkaPtr, std::string> make_consumer(
    const KafkaConfig& config, const KafkaProperties& extra,
    void (*rebalance_cb)(rd_kafka_t*, rd_kafka_resp_err_t, rd_kafka_topic_partition_list_t*, void*),
    void* opaque) {
  auto conf = make_conf(config, extra);
  if (!conf) return std::unexpected(conf.error());
  if (rebalance_cb) rd_kafka_conf_set_rebalance_cb(conf->get(), rebalance_cb);
  if (opaque) rd_kafka_conf_set_opaque(conf->get(), opaque);
  auto rk = make_client(RD_KAFKA_CONSUMER, std::move(*conf));
  if (rk) rd_kafka_poll_set_consumer(rk->get());
  return rk;
}

std::expected<std::int64_t, std::string> query_high_watermark(rd_kafka_t* rk, const std::string& topic,
                                                              std::int32_t partition,
                                                              std::chrono::milliseconds timeout) {
  std::int64_t low = 0, high = 0;
  auto err = rd_kafka_query_watermark_offsets(rk, topic.c_str(), partition, &low, &high,
                                              static_cast<int>(timeout.count()));
  if (err) return std::unexpected(std::string(rd_kafka_err2str(err)));
  return high;
}

std::int64_t consumer_position(rd_kafka_t* consumer, const std::string& topic, std::int32_t partition) {
  KafkaPartitionsPtr one(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(one.get(), topic.c_str(), partition);
  if (rd_kafka_position(consumer, one.get()) || one->elems[0].err) return -1;
  return one->elems[0].offset;
}

std::vector<std::pair<std::string, std::string>> message_headers(const rd_kafka_message_t& message) {
  std::vector<std::pair<std::string, std::string>> out;
  rd_kafka_headers_t* headers = nullptr;
  if (rd_kafka_message_headers(&message, &headers) || !headers) return out;
  const char* name = nullptr;
  const void* value = nullptr;
  std::size_t size = 0;
  for (std::size_t i = 0; !rd_kafka_header_get_all(headers, i, &name, &value, &size); ++i) {
    out.emplace_back(name, value ? std::string(static_cast<const char*>(value), size) : std::string());
  }
  return out;
}

std::expected<std::int32_t, std::string> partition_count(rd_kafka_t* rk, const std::string& topic,
                                                         std::chrono::milliseconds timeout) {
  const rd_kafka_metadata_t* md = nullptr;
  if (auto err = rd_kafka_metadata(rk, 1, nullptr, &md, static_cast<int>(timeout.count()))) {
    return std::unexpected("metadata of " + topic + ": " + rd_kafka_err2str(err));
  }
  std::int32_t count = 0;
  for (int t = 0; t < md->topic_cnt; ++t) {
    if (topic == md->topics[t].topic && !md->topics[t].err) count = md->topics[t].partition_cnt;
  }
  rd_kafka_metadata_destroy(md);
  return count;
}

std::expected<void, std::string> read_to_end(const KafkaConfig& config, const std::string& topic,
                                             const std::function<void(const rd_kafka_message_t&)>& on_message,
                                             std::chrono::milliseconds timeout, const std::string& group_id) {
  auto consumer = make_consumer(config, {{"group.id", group_id}, {"enable.auto.commit", "false"}});
  if (!consumer) return std::unexpected(consumer.error());
  rd_kafka_t* rk = consumer->get();
  const rd_kafka_metadata_t* md = nullptr;
  if (auto err = rd_kafka_metadata(rk, 0, nullptr, &md, static_cast<int>(timeout.count()))) {
    return std::unexpected(std::string("metadata: ") + rd_kafka_err2str(err));
  }
  KafkaPartitionsPtr parts(rd_kafka_topic_partition_list_new(16));
  std::map<std::int32_t, std::int64_t> ends;  // partitions still to finish -> their end
  for (int t = 0; t < md->topic_cnt; ++t) {
    if (topic != md->topics[t].topic) continue;
    for (int p = 0; p < md->topics[t].partition_cnt; ++p) {
      std::int32_t id = md->topics[t].partitions[p].id;
      std::int64_t low = 0, high = 0;
      if (auto err = rd_kafka_query_watermark_offsets(rk, topic.c_str(), id, &low, &high, static_cast<int>(timeout.count()))) {
        rd_kafka_metadata_destroy(md);
        return std::unexpected("where " + topic + " [" + std::to_string(id) + "] ends: " + rd_kafka_err2str(err));
      }
      if (high <= low) continue;
      ends[id] = high;
      rd_kafka_topic_partition_list_add(parts.get(), topic.c_str(), id)->offset = low;
    }
  }
  rd_kafka_metadata_destroy(md);
  if (auto err = rd_kafka_assign(rk, parts.get())) return std::unexpected(std::string(rd_kafka_err2str(err)));
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!ends.empty()) {
    if (std::chrono::steady_clock::now() > deadline) return std::unexpected("reading " + topic + " timed out");
    KafkaMessagePtr m(rd_kafka_consumer_poll(rk, 200));
    if (!m || m->err) {
      // Nothing more to hand out: a partition whose last records are transaction markers is done
      // once the consumer has stepped over them.
      std::erase_if(ends, [&](const auto& e) { return consumer_position(rk, topic, e.first) >= e.second; });
      continue;
    }
    auto end = ends.find(m->partition);
    if (end == ends.end()) continue;  // past the end we were asked for
    if (m->offset + 1 >= end->second) ends.erase(end);
    on_message(*m);
  }
  return {};
}

namespace {

using ConfigResourcePtr = std::unique_ptr<rd_kafka_ConfigResource_t, CDeleter<rd_kafka_ConfigResource_destroy>>;

// Runs one admin request on a short-lived client and waits for its result event.
template <class Request>
std::expected<AdminEventPtr, std::string> admin_call(const KafkaConfig& config, std::chrono::milliseconds timeout,
                                                     Request request) {
  auto client = make_producer(config, {});
  if (!client) return std::unexpected(client.error());
  AdminQueuePtr queue(rd_kafka_queue_new(client->get()));
  request(client->get(), queue.get());
  AdminEventPtr event(rd_kafka_queue_poll(queue.get(), static_cast<int>(timeout.count())));
  if (!event) return std::unexpected(std::string("the broker did not answer in time"));
  if (rd_kafka_event_error(event.get())) return std::unexpected(std::string(rd_kafka_event_error_string(event.get())));
  return event;
}

}  // namespace

std::expected<void, std::string> ensure_topic(const KafkaConfig& config, const std::string& topic, int partitions,
                                              const KafkaProperties& configs, std::chrono::milliseconds timeout) {
  char error[256] = {0};
  std::unique_ptr<rd_kafka_NewTopic_t, CDeleter<rd_kafka_NewTopic_destroy>> fresh(
      rd_kafka_NewTopic_new(topic.c_str(), partitions, -1, error, sizeof error));
  if (!fresh) return std::unexpected("topic " + topic + ": " + error);
  for (const auto& [k, v] : configs) rd_kafka_NewTopic_set_config(fresh.get(), k.c_str(), v.c_str());
  auto created = admin_call(config, timeout, [&](rd_kafka_t* rk, rd_kafka_queue_t* q) {
    rd_kafka_NewTopic_t* list[] = {fresh.get()};
    rd_kafka_CreateTopics(rk, list, 1, nullptr, q);
  });
  if (!created) return std::unexpected("create topic " + topic + ": " + created.error());
  std::size_t count = 0;
  const auto** results = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(created->get()), &count);
  const auto err = count == 1 ? rd_kafka_topic_result_error(results[0]) : RD_KAFKA_RESP_ERR__FAIL;
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return {};
  if (err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
    return std::unexpected("create topic " + topic + ": " +
                           (count == 1 ? rd_kafka_topic_result_error_string(results[0]) : "no result"));
  }
  ConfigResourcePtr resource(rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str()));
  for (const auto& [k, v] : configs) rd_kafka_ConfigResource_set_config(resource.get(), k.c_str(), v.c_str());
  auto altered = admin_call(config, timeout, [&](rd_kafka_t* rk, rd_kafka_queue_t* q) {
    rd_kafka_ConfigResource_t* list[] = {resource.get()};
    rd_kafka_AlterConfigs(rk, list, 1, nullptr, q);
  });
  if (!altered) return std::unexpected("configure topic " + topic + ": " + altered.error());
  const auto** resources =
      rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(altered->get()), &count);
  if (count != 1 || rd_kafka_ConfigResource_error(resources[0]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return std::unexpected("configure topic " + topic + ": " +
                           (count == 1 ? rd_kafka_ConfigResource_error_string(resources[0]) : "no result"));
  }
  return {};
}

std::expected<KafkaProperties, std::string> describe_topic(const KafkaConfig& config, const std::string& topic,
                                                           std::chrono::milliseconds timeout) {
  ConfigResourcePtr resource(rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str()));
  auto described = admin_call(config, timeout, [&](rd_kafka_t* rk, rd_kafka_queue_t* q) {
    rd_kafka_ConfigResource_t* list[] = {resource.get()};
    rd_kafka_DescribeConfigs(rk, list, 1, nullptr, q);
  });
  if (!described) return std::unexpected("describe topic " + topic + ": " + described.error());
  std::size_t count = 0;
  const auto** resources =
      rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(described->get()), &count);
  if (count != 1 || rd_kafka_ConfigResource_error(resources[0]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return std::unexpected("describe topic " + topic + ": " +
                           (count == 1 ? rd_kafka_ConfigResource_error_string(resources[0]) : "no result"));
  }
  KafkaProperties out;
  std::size_t n = 0;
  const auto** entries = rd_kafka_ConfigResource_configs(resources[0], &n);
  for (std::size_t i = 0; i < n; ++i) {
    const char* value = rd_kafka_ConfigEntry_value(entries[i]);
    out[rd_kafka_ConfigEntry_name(entries[i])] = value ? value : "";
  }
  return out;
}

}  // namespace courtyard
