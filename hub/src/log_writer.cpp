#include "log_writer.h"

#include <future>
#include <mutex>


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
    if (!d) return;  // nobody waits
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

  rd_kafka_resp_err_t produce(const schemas::Event& e, Delivery* d) {
    // A community's events are ingest's to append (and chain).
    return produce(kafka.requests_topic, std::nullopt, e.community.str(), schemas::encode(e), d);
  }

  // Produces through `send` (which hands on the Delivery) and waits for Kafka's confirmation.
  template <class Send>
  std::expected<std::int64_t, std::string> confirmed(Send send, std::chrono::milliseconds timeout,
                                                     bool may_stay_queued = false) {
    auto* delivery = new Delivery();
    auto result = delivery->done.get_future();
    if (auto err = send(delivery)) {
      delete delivery;
      return std::unexpected(std::string(rd_kafka_err2str(err)));
    }
    // Whoever waits serves the delivery reports (any of them may be ours).
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (result.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
      if (std::chrono::steady_clock::now() > deadline) {
        if (may_stay_queued) return -1;
        return std::unexpected("Kafka did not confirm within " + std::to_string(timeout.count()) + " ms");
      }
      rd_kafka_poll(producer.get(), 10);
    }
    return result.get();
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

std::expected<std::int64_t, std::string> LogWriter::append(schemas::Event event, std::chrono::milliseconds timeout,
                                                          bool may_stay_queued) {
  if (event.community.empty()) return std::unexpected(std::string("the hub appends events of a community only"));
  impl_->stamp(event);
  return impl_->confirmed([&](Delivery* d) { return impl_->produce(event, d); }, timeout, may_stay_queued);
}

std::expected<std::int64_t, std::string> LogWriter::publish(const std::string& topic, const std::string& key,
                                                            const std::string& value, std::chrono::milliseconds timeout) {
  return impl_->confirmed([&](Delivery* d) { return impl_->produce(topic, std::nullopt, key, value, d); }, timeout);
}

}  // namespace courtyard::hub
