#include "processors/runner.h"

#include <algorithm>
#include <atomic>
#include <optional>
#include <mutex>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/handles.h"

namespace courtyard::processors {

struct Runner::Impl {
  Impl(RunnerConfig c, Store& s)
      : config(std::move(c)),
        store(s),
        projector(s, ProjectorConfig{{config.kafka.events_topic, config.kafka.deadletter_topic}, config.rules,
                                     config.context}) {}

  RunnerConfig config;
  Store& store;
  Projector projector;
  KafkaPtr consumer;
  KafkaPtr producer;        // the alerts outbox
  std::string outbox_cursor;  // last outbox key handed to the producer
  // When the outbox is handed to the producer again without waiting for a new entry: after a
  // failed delivery (with back-off) or a full producer queue (at once). Main thread only.
  using Clock = std::chrono::steady_clock;
  std::optional<Clock::time_point> outbox_retry_at;
  std::chrono::milliseconds outbox_backoff{0};

  Histogram latency{{0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
                     0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60}};
  Histogram batch_seconds{{0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1}};
  mutable std::mutex mu;
  Freshness freshness;
  RunnerStats stats;
  std::atomic<std::uint64_t> committed{0};

  static void on_rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts,
                           void* opaque) {
    auto* self = static_cast<Impl*>(opaque);
    bool cooperative = std::string_view(rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE";
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      // Start where the store says, not where the group committed: the store is the truth.
      const auto& offsets = self->projector.offsets();
      for (int i = 0; i < parts->cnt; ++i) {
        auto& p = parts->elems[i];
        auto it = offsets.find({p.topic, p.partition});
        p.offset = it == offsets.end() ? RD_KAFKA_OFFSET_BEGINNING : it->second;
      }
      spdlog::info("runner: assigned {} partition(s)", parts->cnt);
      auto* error = cooperative ? rd_kafka_incremental_assign(rk, parts) : nullptr;
      if (!cooperative) rd_kafka_assign(rk, parts);
      if (error) {
        spdlog::error("runner: assign failed: {}", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
      }
    } else {
      spdlog::info("runner: revoked {} partition(s)", parts->cnt);
      {
        std::lock_guard lock(self->mu);
        for (int i = 0; i < parts->cnt; ++i) self->freshness.erase({parts->elems[i].topic, parts->elems[i].partition});
      }
      if (cooperative) {
        if (auto* error = rd_kafka_incremental_unassign(rk, parts)) rd_kafka_error_destroy(error);
      } else {
        rd_kafka_assign(rk, nullptr);
      }
    }
  }

  // Hands outbox entries not yet in flight to the producer, in order.
  void publish_outbox() {
    auto view = store.view();
    for (;;) {
      auto entries = view.scan(Projector::kOutboxPrefix, outbox_cursor, 1000);
      if (entries.empty()) return;
      for (auto& [key, raw] : entries) {
        auto entry = nlohmann::json::parse(raw);
        const std::string& topic = entry.value("topic", "") == "commands" ? config.kafka.commands_topic
                                                                           : config.kafka.alerts_topic;
        std::string message_key = entry.value("key", ""), value = entry.value("value", "");
        auto* opaque = new std::string(key);
        auto err = rd_kafka_producev(producer.get(), RD_KAFKA_V_TOPIC(topic.c_str()),
                                     RD_KAFKA_V_KEY(message_key.data(), message_key.size()),
                                     RD_KAFKA_V_VALUE(value.data(), value.size()),
                                     RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
        if (err) {  // queue full: try again after the next poll
          delete opaque;
          outbox_retry_at = Clock::now();
          return;
        }
        outbox_cursor = key;
      }
    }
  }

  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* self = static_cast<Impl*>(opaque);
    std::unique_ptr<std::string> key(static_cast<std::string*>(m->_private));
    if (m->err) {
      // Produce again from the oldest entry (ids make it idempotent), on a timer: no new alert
      // may be coming to carry it. 1 s, doubling up to a minute, until Kafka takes one.
      // (One retry per round: a batch of failures doubles the wait once.)
      self->outbox_cursor.clear();
      if (!self->outbox_retry_at) {
        self->outbox_backoff = std::clamp(self->outbox_backoff * 2, std::chrono::milliseconds(1000),
                                          std::chrono::milliseconds(60'000));
        spdlog::warn("alert not published yet ({}); retrying in {} ms", rd_kafka_err2str(m->err),
                     self->outbox_backoff.count());
        self->outbox_retry_at = Clock::now() + self->outbox_backoff;
      }
      return;
    }
    self->outbox_backoff = std::chrono::milliseconds(0);
    if (auto ok = self->store.remove(*key); !ok) spdlog::error("{}", ok.error());
    std::lock_guard lock(self->mu);
    ++self->stats.alerts_published;
  }

  // The store refused a batch: nothing of it was applied. Says why in the stats (first, so
  // /healthz agrees with the log line) and waits 1 s, doubling to 30 s. A corrupt store is not a
  // full disk and waiting will not mend it: that stops the processors (and the hub) as before.
  std::optional<Clock::time_point> stalled_since;
  std::chrono::milliseconds stall_backoff{0};
  void stall(const std::string& error, std::stop_token stop) {
    if (error.find("Corruption") != std::string::npos) throw std::runtime_error(error);
    stall_backoff = std::clamp(stall_backoff * 2, std::chrono::milliseconds(1000), std::chrono::milliseconds(30'000));
    if (!stalled_since) stalled_since = Clock::now();
    {
      std::lock_guard lock(mu);
      stats.store_error = error;
      ++stats.store_failures;
    }
    spdlog::error("runner: folding stopped, the store cannot be written ({}); nothing is lost: the log keeps the "
                  "events, trying again in {} s",
                  error, stall_backoff.count() / 1000);
    for (auto until = Clock::now() + stall_backoff; Clock::now() < until && !stop.stop_requested();) {
      rd_kafka_poll(producer.get(), 100);  // outbox deliveries go on
    }
  }
  void resume() {
    spdlog::info("runner: the store takes writes again; folding resumed after {} s",
                 std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - *stalled_since).count());
    stalled_since.reset();
    stall_backoff = std::chrono::milliseconds(0);
    std::lock_guard lock(mu);
    stats.store_error.clear();
  }

  void update_freshness() {
    KafkaPartitionsPtr assigned;
    rd_kafka_topic_partition_list_t* raw = nullptr;
    if (rd_kafka_assignment(consumer.get(), &raw)) return;
    assigned.reset(raw);
    std::lock_guard lock(mu);
    for (int i = 0; i < assigned->cnt; ++i) {
      const auto& p = assigned->elems[i];
      std::int64_t low = 0, high = -1;
      rd_kafka_get_watermark_offsets(consumer.get(), p.topic, p.partition, &low, &high);
      auto& f = freshness[{p.topic, p.partition}];
      auto it = projector.offsets().find({p.topic, p.partition});
      f.next_offset = it == projector.offsets().end() ? low : it->second;
      // Past the transaction markers the consumer stepped over: they are no lag.
      f.next_offset = std::max(f.next_offset, consumer_position(consumer.get(), p.topic, p.partition));
      if (high >= 0) f.high_watermark = high;
    }
  }
};

Runner::Runner(RunnerConfig config, Store& store) : impl_(std::make_unique<Impl>(std::move(config), store)) {}
Runner::~Runner() = default;

void Runner::run(std::stop_token stop) {
  auto& m = *impl_;
  auto consumer = make_consumer(m.config.kafka,
                                {{"group.id", m.config.group_id},
                                 {"group.instance.id", m.config.instance_id},
                                 {"session.timeout.ms", std::to_string(m.config.session_timeout.count())},
                                 {"enable.auto.commit", "false"},
                                 {"enable.auto.offset.store", "false"},
                                 {"partition.assignment.strategy", "cooperative-sticky"},
                                 {"auto.offset.reset", "earliest"},
                                 {"enable.partition.eof", "false"},
                                 // The log becomes readable at each ingest commit (every few tens of ms);
                                 // a fetch waiting the default 500 ms for more would sit on it.
                                 {"fetch.wait.max.ms", "50"}},
                                &Impl::on_rebalance, &m);
  if (!consumer) throw std::runtime_error("runner consumer: " + consumer.error());
  m.consumer = std::move(*consumer);
  auto producer = make_producer(m.config.kafka, {{"enable.idempotence", "true"}, {"acks", "all"}, {"linger.ms", "5"}},
                                &Impl::on_delivery, &m);
  if (!producer) throw std::runtime_error("runner producer: " + producer.error());
  m.producer = std::move(*producer);
  m.publish_outbox();  // what a previous run committed but never saw confirmed
  KafkaPartitionsPtr topics(rd_kafka_topic_partition_list_new(2));
  rd_kafka_topic_partition_list_add(topics.get(), m.config.kafka.events_topic.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_topic_partition_list_add(topics.get(), m.config.kafka.deadletter_topic.c_str(), RD_KAFKA_PARTITION_UA);
  if (auto err = rd_kafka_subscribe(m.consumer.get(), topics.get())) {
    throw std::runtime_error(std::string("runner subscribe: ") + rd_kafka_err2str(err));
  }

  std::vector<LogMessage> batch;
  batch.reserve(m.config.max_batch);
  auto last_freshness = std::chrono::steady_clock::time_point{};
  while (!stop.stop_requested()) {
    batch.clear();
    auto timeout = static_cast<int>(m.config.poll_timeout.count());
    while (batch.size() < m.config.max_batch) {
      KafkaMessagePtr msg(rd_kafka_consumer_poll(m.consumer.get(), timeout));
      if (!msg) break;
      timeout = 0;
      if (msg->err) {
        if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) spdlog::warn("runner: {}", rd_kafka_message_errstr(msg.get()));
        continue;
      }
      batch.push_back(log_message_of(*msg));
    }
    if (!batch.empty()) {
      auto started = std::chrono::steady_clock::now();
      auto result = m.projector.apply(batch);
      m.batch_seconds.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
      // The store refused the batch (nothing of it was applied): the same batch again after a
      // back-off, until the store takes it. The consumer is not polled meanwhile; a stall longer
      // than max.poll.interval.ms costs a rejoin, which starts from the store's offsets anyway.
      while (!result && !stop.stop_requested()) {
        m.stall(result.error(), stop);
        result = m.projector.apply(batch);
      }
      if (!result) break;
      if (m.stalled_since) m.resume();
      {
        std::lock_guard lock(m.mu);
        m.stats.applied += result->applied;
        m.stats.duplicates += result->duplicates;
        m.stats.replayed += result->replayed;
        m.stats.corrupt += result->corrupt;
        m.stats.quarantined += result->quarantined;
        m.stats.dead_letters += result->dead_letters;
        ++m.stats.batches;
      }
      // The one clock read of the processors: after the commit, never inside a fold.
      auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch()).count();
      for (auto t : result->fresh_device_times_ms) m.latency.observe(static_cast<double>(now_ms - t) / 1000.0);
      if (result->outbox_entries) m.publish_outbox();
      if (!result->changes.empty()) {
        auto seq = m.committed.load() + 1;
        m.committed.store(seq);
        if (m.config.on_commit) m.config.on_commit(seq, std::move(result->changes));
      }
    }
    rd_kafka_poll(m.producer.get(), 0);
    if (m.outbox_retry_at && Impl::Clock::now() >= *m.outbox_retry_at) {
      m.outbox_retry_at.reset();
      m.publish_outbox();
    }
    if (auto now = std::chrono::steady_clock::now(); !batch.empty() || now - last_freshness > std::chrono::milliseconds(200)) {
      last_freshness = now;
      m.update_freshness();
    }
  }
  rd_kafka_consumer_close(m.consumer.get());
  rd_kafka_flush(m.producer.get(), 5000);
}

Freshness Runner::freshness() const {
  std::lock_guard lock(impl_->mu);
  return impl_->freshness;
}

std::uint64_t Runner::committed() const { return impl_->committed.load(); }

const Histogram& Runner::latency() const { return impl_->latency; }
const Histogram& Runner::batch_seconds() const { return impl_->batch_seconds; }

RunnerStats Runner::stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->stats;
}

LogMessage log_message_of(const rd_kafka_message_t& message) {
  LogMessage lm;
  lm.topic = rd_kafka_topic_name(message.rkt);
  lm.partition = message.partition;
  lm.offset = message.offset;
  if (message.key) lm.key.assign(static_cast<const char*>(message.key), message.key_len);
  if (message.payload) lm.value.assign(static_cast<const char*>(message.payload), message.len);
  lm.headers = message_headers(message);
  return lm;
}

}  // namespace courtyard::processors
