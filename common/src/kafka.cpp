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

std::expected<void, std::string> read_to_end(const KafkaConfig& config, const std::string& topic,
                                             const std::function<void(const rd_kafka_message_t&)>& on_message,
                                             std::chrono::milliseconds timeout) {
  auto consumer = make_consumer(config, {{"group.id", "courtyard-reader"}, {"enable.auto.commit", "false"}});
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
      rd_kafka_query_watermark_offsets(rk, topic.c_str(), id, &low, &high, static_cast<int>(timeout.count()));
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
    if (!m || m->err) continue;
    auto end = ends.find(m->partition);
    if (end == ends.end()) continue;  // past the end we were asked for
    if (m->offset + 1 >= end->second) ends.erase(end);
    on_message(*m);
  }
  return {};
}

}  // namespace courtyard
