#include "registry_view.h"

#include <spdlog/spdlog.h>

namespace courtyard::ingest {

std::expected<std::unique_ptr<RegistryView>, std::string> RegistryView::open(const KafkaConfig& kafka,
                                                                             const std::string& client_id) {
  auto consumer = make_consumer(kafka, {{"group.id", client_id + "-registry"},
                                        {"enable.auto.commit", "false"},
                                        {"enable.auto.offset.store", "false"},
                                        {"enable.partition.eof", "false"}});
  if (!consumer) return std::unexpected(consumer.error());
  std::unique_ptr<RegistryView> view(new RegistryView());
  view->consumer_ = std::move(*consumer);
  view->topic_ = kafka.registry_topic;
  KafkaPartitionsPtr parts(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(parts.get(), view->topic_.c_str(), 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
  if (auto err = rd_kafka_assign(view->consumer_.get(), parts.get())) {
    return std::unexpected("cannot assign " + view->topic_ + ": " + rd_kafka_err2str(err));
  }
  return view;
}

std::vector<RegistryRecord> RegistryView::read(std::chrono::milliseconds timeout) {
  std::vector<RegistryRecord> out;
  for (;;) {
    KafkaMessagePtr m(rd_kafka_consumer_poll(consumer_.get(), static_cast<int>(timeout.count())));
    if (!m) break;
    timeout = std::chrono::milliseconds(0);
    if (m->err) {
      spdlog::warn("registry consumer: {}", rd_kafka_message_errstr(m.get()));
      continue;
    }
    next_offset_ = m->offset + 1;
    const std::string key = m->key ? std::string(static_cast<const char*>(m->key), m->key_len) : std::string();
    if (!m->payload) {  // tombstone: the device was removed
      if (!key.empty()) out.push_back({m->offset, DeviceId(key), std::nullopt});
      continue;
    }
    auto r = schemas::parse_registration(std::string_view(static_cast<const char*>(m->payload), m->len));
    if (!r) {
      spdlog::error("registry record at offset {} ignored: {}", m->offset, r.error());
      continue;
    }
    const DeviceId device = r->device;
    out.push_back({m->offset, device, std::move(*r)});
  }
  // The fetch position also moves past offsets that compaction removed.
  KafkaPartitionsPtr parts(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(parts.get(), topic_.c_str(), 0);
  if (!rd_kafka_position(consumer_.get(), parts.get()) && parts->elems[0].offset > next_offset_) {
    next_offset_ = parts->elems[0].offset;
  }
  return out;
}

std::vector<RegistryRecord> RegistryView::poll() { return read(std::chrono::milliseconds(0)); }

std::expected<std::vector<RegistryRecord>, std::string> RegistryView::catch_up(std::chrono::milliseconds timeout) {
  auto high = high_watermark(timeout);
  if (!high) return std::unexpected(high.error());
  std::vector<RegistryRecord> out;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (next_offset_ < *high) {
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return std::unexpected(std::string("registry catch-up timed out"));
    auto more = read(std::chrono::duration_cast<std::chrono::milliseconds>(
        std::min<std::chrono::steady_clock::duration>(deadline - now, std::chrono::milliseconds(100))));
    out.insert(out.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
  }
  return out;
}

std::int64_t RegistryView::read_offset() const { return next_offset_; }

std::expected<std::int64_t, std::string> RegistryView::high_watermark(std::chrono::milliseconds timeout) const {
  auto high = query_high_watermark(consumer_.get(), topic_, 0, timeout);
  if (!high) return std::unexpected("registry high watermark: " + high.error());
  return *high;
}

}  // namespace courtyard::ingest
