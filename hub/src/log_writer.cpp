#include "log_writer.h"

#include <future>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/event_ids.h"
#include "common/handles.h"

namespace courtyard::hub {
namespace {

struct Delivery {
  std::promise<std::expected<std::int64_t, std::string>> done;
};

constexpr unsigned kHubInstance = 255;  // event ids the hub assigns never collide with ingest's (0..254)

}  // namespace

struct LogWriter::Impl {
  KafkaConfig kafka;
  KafkaPtr producer;
  EventIdClock ids{kHubInstance};

  void stamp(schemas::Event& e) {
    auto stamp = ids.next();
    e.event_id = stamp.id;
    e.ingest_time_ms = e.device_time_ms = stamp.ms;
  }

  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void*) {
    std::unique_ptr<Delivery> d(static_cast<Delivery*>(m->_private));
    if (!d) return;  // a tick: nobody waits
    if (m->err) {
      d->done.set_value(std::unexpected(std::string(rd_kafka_err2str(m->err))));
    } else {
      d->done.set_value(m->offset);
    }
  }

  // `d` receives the delivery report (nullptr: nobody waits).
  rd_kafka_resp_err_t produce(const std::string& topic, std::optional<std::int32_t> partition, std::string key,
                              std::string value, Delivery* d) {
    return rd_kafka_producev(producer.get(), RD_KAFKA_V_TOPIC(topic.c_str()),
                             RD_KAFKA_V_PARTITION(partition.value_or(RD_KAFKA_PARTITION_UA)),
                             RD_KAFKA_V_KEY(key.data(), key.size()), RD_KAFKA_V_VALUE(value.data(), value.size()),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
  }

  rd_kafka_resp_err_t produce(const schemas::Event& e, std::optional<std::int32_t> partition, Delivery* d) {
    // A community's events are ingest's to append (and chain); ticks go straight to their partition.
    const std::string& topic = e.community.empty() ? kafka.events_topic : kafka.requests_topic;
    return produce(topic, partition, e.community.empty() ? "tick" : e.community.str(), schemas::encode(e), d);
  }

  // Produces through `send` (which hands on the Delivery) and waits for Kafka's confirmation.
  template <class Send>
  std::expected<std::int64_t, std::string> confirmed(Send send, std::chrono::milliseconds timeout) {
    auto* delivery = new Delivery();
    auto result = delivery->done.get_future();
    if (auto err = send(delivery)) {
      delete delivery;
      return std::unexpected(std::string(rd_kafka_err2str(err)));
    }
    if (result.wait_for(timeout) != std::future_status::ready) {
      return std::unexpected("Kafka did not confirm within " + std::to_string(timeout.count()) + " ms");
    }
    return result.get();
  }

  int partitions() {
    const rd_kafka_metadata_t* md = nullptr;
    KafkaPtr& p = producer;
    rd_kafka_topic_t* topic = rd_kafka_topic_new(p.get(), kafka.events_topic.c_str(), nullptr);
    int count = 0;
    if (rd_kafka_metadata(p.get(), 0, topic, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (md->topic_cnt == 1 && !md->topics[0].err) count = md->topics[0].partition_cnt;
      rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(topic);
    return count;
  }
};

LogWriter::LogWriter(const KafkaConfig& kafka) : impl_(std::make_unique<Impl>()) {
  impl_->kafka = kafka;
  auto p = make_producer(kafka, {{"enable.idempotence", "true"}, {"acks", "all"}, {"linger.ms", "0"}},
                         &Impl::on_delivery, impl_.get());
  if (!p) throw std::runtime_error("hub producer: " + p.error());
  impl_->producer = std::move(*p);
}

LogWriter::~LogWriter() { rd_kafka_flush(impl_->producer.get(), 5000); }

std::expected<std::int64_t, std::string> LogWriter::append(schemas::Event event, std::optional<std::int32_t> partition,
                                                           std::chrono::milliseconds timeout) {
  impl_->stamp(event);
  return impl_->confirmed([&](Delivery* d) { return impl_->produce(event, partition, d); }, timeout);
}

std::expected<std::int64_t, std::string> LogWriter::publish(const std::string& topic, const std::string& key,
                                                            const std::string& value, std::chrono::milliseconds timeout) {
  return impl_->confirmed([&](Delivery* d) { return impl_->produce(topic, std::nullopt, key, value, d); }, timeout);
}

void LogWriter::run_ticks(std::stop_token stop, std::chrono::milliseconds interval) {
  int partitions = 0;
  auto next = std::chrono::steady_clock::now();
  while (!stop.stop_requested()) {
    rd_kafka_poll(impl_->producer.get(), 20);
    if (std::chrono::steady_clock::now() < next) continue;
    next += interval;
    if (partitions == 0 && (partitions = impl_->partitions()) == 0) {
      spdlog::warn("ticker: {} has no partitions yet", impl_->kafka.events_topic);
      continue;
    }
    for (std::int32_t p = 0; p < partitions; ++p) {
      schemas::Event tick;
      tick.device = DeviceId("courtyard-hub");
      tick.body = schemas::Tick{p};
      impl_->stamp(tick);
      if (auto err = impl_->produce(tick, p, nullptr)) spdlog::warn("tick to partition {}: {}", p, rd_kafka_err2str(err));
    }
  }
}

}  // namespace courtyard::hub
