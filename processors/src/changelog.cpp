#include "processors/changelog.h"

#include <algorithm>
#include <charconv>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/handles.h"

namespace courtyard::processors {

namespace {

using KafkaGroupMetadataPtr =
    std::unique_ptr<rd_kafka_consumer_group_metadata_t, CDeleter<rd_kafka_consumer_group_metadata_destroy>>;

constexpr std::string_view kOffsetPrefix = "offsets/";

// A batch's end record says the store format its records are in: a reader of another format
// must not apply them.
constexpr const char* kFormatHeader = "format";

// Produces one record, waiting while the producer's queue is full. `end`: a batch's end (with
// its format, and `note` for its delivery report).
rd_kafka_resp_err_t produce(rd_kafka_t* rk, const std::string& topic, std::int32_t partition, const std::string& key,
                            const std::string* value, bool end = false, void* note = nullptr) {
  const std::string format = std::to_string(Projector::kStoreFormat);
  for (;;) {
    rd_kafka_headers_t* headers = nullptr;
    if (end) {
      headers = rd_kafka_headers_new(1);
      rd_kafka_header_add(headers, kFormatHeader, -1, format.data(), static_cast<ssize_t>(format.size()));
    }
    auto err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
                                 RD_KAFKA_V_KEY(key.data(), key.size()),
                                 RD_KAFKA_V_VALUE(value ? const_cast<char*>(value->data()) : nullptr,
                                                  value ? value->size() : 0),
                                 RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                 RD_KAFKA_V_OPAQUE(note), RD_KAFKA_V_END);
    if (err && headers) rd_kafka_headers_destroy(headers);  // taken only when produced
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) return err;
    rd_kafka_poll(rk, 10);
  }
}

// The error's text, and whether it says this writer may never write again: fenced by a newer
// writer with the id, or by the group (a member the group has moved on from).
ChangelogWriteError write_error(rd_kafka_error_t* error, const char* step) {
  KafkaErrorPtr owned(error);
  const auto code = rd_kafka_error_code(error);
  // (Another fatal error, a broker that lost the transaction's state say, is no fence: the writer
  // starts a new producer.)
  const bool fenced = code == RD_KAFKA_RESP_ERR__FENCED || code == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
                      code == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID || code == RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID;
  // A cooperative rebalance moves the generation on while members keep their partitions: the
  // same transaction again, with the group's new generation, is right.
  const bool rebalancing =
      code == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION || code == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS;
  return {std::string("changelog ") + step + ": " + rd_kafka_error_string(error), fenced && !rebalancing, rebalancing};
}

// Throws what a failed librdkafka call said.
void throw_if(rd_kafka_error_t* error, const char* what) {
  if (!error) return;
  KafkaErrorPtr owned(error);
  throw std::runtime_error(std::string(what) + ": " + rd_kafka_error_string(error));
}

// A key of this store's own bookkeeping (its format, its changelog times, its cluster marks):
// never an owner's record, so never taken from the changelog, whoever wrote it there.
bool local_bookkeeping(std::string_view key) {
  return key.starts_with("meta/changelog") || key == Projector::kStoreFormatKey || key == "meta/cluster" ||
         key.starts_with("meta/partitions/");
}

}  // namespace

bool may_have_missed_removals(std::string_view at_ms) {
  std::int64_t at = 0;  // unreadable: as if long ago
  std::from_chars(at_ms.data(), at_ms.data() + at_ms.size(), at);
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count();
  return std::chrono::milliseconds(now - at) > kChangelogKeepsRemovals - std::chrono::hours(24);
}

std::string changelog_at_key(const std::pair<std::string, std::int32_t>& changelog) {
  return kChangelogAtPrefix + changelog.first + "/" + std::to_string(changelog.second);
}

std::string changelog_topic(const KafkaConfig& kafka, const std::string& source_topic) {
  if (source_topic == kafka.events_topic) return kafka.state_topic;
  if (source_topic == kafka.deadletter_topic) return kafka.state_deadletter_topic;
  return {};
}

// ---------------------------------------------------------------------------------------------
// Writer

std::expected<std::unique_ptr<ChangelogWriter>, std::string> ChangelogWriter::open(
    const KafkaConfig& kafka, const std::string& transactional_id, std::chrono::milliseconds transaction_timeout) {
  std::unique_ptr<ChangelogWriter> writer(new ChangelogWriter());
  writer->kafka_ = kafka;
  writer->transactional_id_ = transactional_id;
  writer->timeout_ = transaction_timeout;
  if (auto ok = writer->start(); !ok) return std::unexpected(ok.error());
  return writer;
}

std::expected<void, std::string> ChangelogWriter::start() {
  producer_.reset();
  auto producer = make_producer(kafka_, {{"transactional.id", transactional_id_},
                                         {"transaction.timeout.ms", std::to_string(timeout_.count())},
                                         {"enable.idempotence", "true"},
                                         {"acks", "all"},
                                         {"linger.ms", "1"}},
                                &ChangelogWriter::on_delivery, this);
  if (!producer) return std::unexpected("changelog producer: " + producer.error());
  if (auto* error = rd_kafka_init_transactions(producer->get(), 30'000)) {
    KafkaErrorPtr owned(error);
    return std::unexpected(std::string("changelog producer ") + transactional_id_ + ": " + rd_kafka_error_string(error));
  }
  producer_ = std::move(*producer);
  return {};
}

ChangelogWriter::~ChangelogWriter() = default;

struct ChangelogWriter::EndRecord {
  std::uint64_t write = 0;
  std::size_t index = 0;
};

// On the writing thread (the commit flushes the producer, which serves delivery reports).
void ChangelogWriter::on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
  std::unique_ptr<EndRecord> end(static_cast<EndRecord*>(m->_private));
  if (!end) return;
  auto* self = static_cast<ChangelogWriter*>(opaque);
  if (!m->err && end->write == self->writes_ && end->index < self->ends_.size()) self->ends_[end->index] = m->offset;
}

// Calls `step` until it does not fail with a retriable error (librdkafka: a timed-out commit or
// abort goes on in the background and must be called again), at most a minute.
rd_kafka_error_t* ChangelogWriter::until_done(const std::function<rd_kafka_error_t*()>& step) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(1);
  for (;;) {
    rd_kafka_error_t* error = step();
    if (!error || !rd_kafka_error_is_retriable(error) || std::chrono::steady_clock::now() > deadline) return error;
    rd_kafka_error_destroy(error);
  }
}

std::expected<void, ChangelogWriteError> ChangelogWriter::write(std::vector<PartitionWrite>& writes,
                                                                rd_kafka_t* consumer) {
  ++writes_;
  ends_.assign(writes.size(), -1);
  if (!producer_) {  // the last one failed for good: a new one, which fences whatever is left of it
    if (auto ok = start(); !ok) return std::unexpected(ChangelogWriteError{ok.error(), false, false});
  }
  rd_kafka_t* rk = producer_.get();
  const int timeout = static_cast<int>(timeout_.count());
  // Every failure ends the transaction: aborted when it may be, the producer made anew when not
  // (a fence is the exception: this hub may write nothing more).
  auto fail = [&](rd_kafka_error_t* error, const char* step) -> std::unexpected<ChangelogWriteError> {
    const bool abortable = rd_kafka_error_txn_requires_abort(error), fatal = rd_kafka_error_is_fatal(error);
    auto why = write_error(error, step);  // takes the error
    if (why.fenced) return std::unexpected(std::move(why));
    if (abortable || !fatal) {
      if (auto* e = until_done([&] { return rd_kafka_abort_transaction(rk, timeout); })) {
        spdlog::warn("changelog: aborting a transaction failed ({}); starting a new producer", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        producer_.reset();
      }
    } else {
      producer_.reset();  // fatal but no fence (a broker that lost the transaction's state)
    }
    return std::unexpected(std::move(why));
  };
  if (auto* error = rd_kafka_begin_transaction(rk)) return fail(error, "begin");
  KafkaPartitionsPtr offsets(rd_kafka_topic_partition_list_new(static_cast<int>(writes.size())));
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  for (std::size_t i = 0; i < writes.size(); ++i) {
    const auto& w = writes[i];
    const auto topic = changelog_topic(kafka_, w.topic);
    if (topic.empty()) {
      err = RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
      break;
    }
    // Removals first, as Store::write applies them: a key both removed and put keeps the record.
    for (const auto& key : w.deletes) {
      if ((err = produce(rk, topic, w.partition, key, nullptr))) break;
    }
    for (const auto& [key, value] : w.puts) {
      if (err || (err = produce(rk, topic, w.partition, key, &value))) break;
    }
    // Last: where a reader's batch ends.
    const auto next = std::to_string(w.next_offset);
    auto* note = new EndRecord{writes_, i};
    if (err || (err = produce(rk, topic, w.partition, Store::offset_key(w.topic, w.partition), &next, true, note))) {
      delete note;  // not produced: no report will take it
      break;
    }
    rd_kafka_topic_partition_list_add(offsets.get(), w.topic.c_str(), w.partition)->offset = w.next_offset;
  }
  if (err) {
    if (auto* e = until_done([&] { return rd_kafka_abort_transaction(rk, timeout); })) {
      rd_kafka_error_destroy(e);
      producer_.reset();
    }
    return std::unexpected(ChangelogWriteError{std::string("changelog produce: ") + rd_kafka_err2str(err), false, false});
  }
  if (consumer) {
    KafkaGroupMetadataPtr group(rd_kafka_consumer_group_metadata(consumer));
    if (auto* error = rd_kafka_send_offsets_to_transaction(rk, offsets.get(), group.get(), timeout)) {
      return fail(error, "offsets");
    }
  }
  if (auto* error = until_done([&] { return rd_kafka_commit_transaction(rk, timeout); })) return fail(error, "commit");
  rd_kafka_poll(rk, 0);  // any report the commit's flush left
  const auto now = std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::system_clock::now().time_since_epoch()).count());
  for (std::size_t i = 0; i < writes.size(); ++i) {
    if (ends_[i] < 0) continue;  // no report: the position is not recorded, a restore reads a little more
    const TopicPartition changelog{changelog_topic(kafka_, writes[i].topic), writes[i].partition};
    writes[i].also_offsets[changelog] = ends_[i] + 1;
    writes[i].puts.emplace_back(changelog_at_key(changelog), now);
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// Applier

struct ChangelogApplier::Impl {
  struct Pending {
    KeyValues puts;
    std::vector<std::string> deletes;
  };

  Impl(Config c, Store& s) : config(std::move(c)), store(s) {
    for (const auto& source : config.source_topics) changelog_of[changelog_topic(config.kafka, source)] = source;
  }

  Config config;
  Store& store;
  std::map<std::string, std::string> changelog_of;  // changelog topic -> its source topic
  KafkaPtr consumer;
  std::map<TopicPartition, Pending> pending;  // applier thread: records of a batch not yet ended
  // Applier thread: whole batches read and not yet written, coalesced into one store write (a
  // restore reads thousands of small batches; each its own write would cost a write each).
  struct Ready {
    std::map<std::string, std::optional<std::string>> ops;  // the last of each key: a record or removed
    Offsets offsets;                                        // sources' and changelogs' next offsets
    std::uint64_t batches = 0;
    KeyValues changes;  // projection records, in the order read, for on_apply
    std::chrono::steady_clock::time_point since;
  } ready;
  static constexpr std::size_t kReadyRecords = 5000;
  static constexpr std::chrono::milliseconds kReadyFor{20};

  mutable std::mutex mu;  // guards what follows
  std::condition_variable changed;
  std::set<TopicPartition> owned;         // source partitions
  std::map<TopicPartition, std::int64_t> applied;  // changelog partition -> the store holds all before it
  bool started = false, stopped = false;
  std::uint64_t batches = 0;
  // Without standbys: the changelog partitions being restored, for the applier thread to read.
  std::set<TopicPartition> wanted;
  bool wanted_changed = false;
  std::map<TopicPartition, std::int64_t> start_ends;  // where each changelog ended at start (restored: all reached)
  Progress progress;

  // Applier thread: the changelog partitions read now.
  std::set<TopicPartition> reading;
  std::chrono::steady_clock::time_point progress_at;

  // Without standbys: reads what catch_up() wants and stops reading what it no longer does.
  void follow_wanted() {
    std::set<TopicPartition> want;
    {
      std::lock_guard lock(mu);
      if (!wanted_changed) return;
      wanted_changed = false;
      want = wanted;
    }
    const auto stored = store.view().offsets();
    KafkaPartitionsPtr add(rd_kafka_topic_partition_list_new(4)), drop(rd_kafka_topic_partition_list_new(4));
    for (const auto& tp : want) {
      if (reading.contains(tp)) continue;
      auto it = stored.find(tp);
      rd_kafka_topic_partition_list_add(add.get(), tp.first.c_str(), tp.second)->offset =
          it == stored.end() ? RD_KAFKA_OFFSET_BEGINNING : it->second;
    }
    for (const auto& tp : reading) {
      if (!want.contains(tp)) rd_kafka_topic_partition_list_add(drop.get(), tp.first.c_str(), tp.second);
    }
    if (drop->cnt > 0) {
      throw_if(rd_kafka_incremental_unassign(consumer.get(), drop.get()), "changelog unassign");
      for (int i = 0; i < drop->cnt; ++i) {
        reading.erase({drop->elems[i].topic, drop->elems[i].partition});
        pending.erase({drop->elems[i].topic, drop->elems[i].partition});
      }
    }
    if (add->cnt > 0) {
      throw_if(rd_kafka_incremental_assign(consumer.get(), add.get()), "changelog assign");
      for (int i = 0; i < add->cnt; ++i) {
        reading.insert({add->elems[i].topic, add->elems[i].partition});
        if (add->elems[i].offset >= 0) mark_applied({add->elems[i].topic, add->elems[i].partition}, add->elems[i].offset);
      }
    }
  }

  bool progress_due() const { return std::chrono::steady_clock::now() - progress_at >= std::chrono::milliseconds(200); }
  // Restored yet, and how far behind: from the ends the consumer last saw.
  void update_progress() {
    progress_at = std::chrono::steady_clock::now();
    std::map<TopicPartition, std::int64_t> ends;
    for (const auto& tp : reading) {
      std::int64_t low = 0, high = -1;
      rd_kafka_get_watermark_offsets(consumer.get(), tp.first.c_str(), tp.second, &low, &high);
      ends[tp] = high;
    }
    std::lock_guard lock(mu);
    Progress p{true, 0, progress.store_error};
    for (const auto& [tp, end] : start_ends) {
      auto it = applied.find(tp);
      if (end > 0 && (it == applied.end() || it->second < end)) p.restored = false;
    }
    for (const auto& [tp, end] : ends) {
      auto it = applied.find(tp);
      if (end >= 0) p.lag += std::max<std::int64_t>(0, end - (it == applied.end() ? 0 : it->second));
    }
    progress = p;
  }

  bool is_owned(const TopicPartition& source) {
    std::lock_guard lock(mu);
    return owned.contains(source);
  }

  // A store write that must happen: tried again every second while the store refuses (a full disk).
  bool write(const KeyValues& puts, const Offsets& offsets, const std::vector<std::string>& deletes,
             std::stop_token stop) {
    for (;;) {
      auto ok = store.write(puts, offsets, deletes);
      {
        std::lock_guard lock(mu);
        progress.store_error = ok ? std::string() : ok.error();
      }
      if (ok) return true;
      spdlog::error("changelog: the store cannot be written ({}); trying again in 1 s", ok.error());
      std::mutex m;
      std::condition_variable_any cv;
      std::unique_lock lock(m);
      if (cv.wait_for(lock, stop, std::chrono::seconds(1), [] { return false; }); stop.stop_requested()) return false;
    }
  }

  void mark_applied(const TopicPartition& changelog, std::int64_t next) {
    std::lock_guard lock(mu);
    auto& at = applied[changelog];
    at = std::max(at, next);
    changed.notify_all();
  }

  void apply(const rd_kafka_message_t& m) {
    const TopicPartition changelog{rd_kafka_topic_name(m.rkt), m.partition};
    auto source_topic = changelog_of.find(changelog.first);
    if (source_topic == changelog_of.end()) return;
    const TopicPartition source{source_topic->second, m.partition};
    if (!m.key || m.key_len == 0) {  // no store record has an empty key: nothing to apply
      spdlog::warn("changelog: {} [{}]@{} has no key; skipped", changelog.first, changelog.second, m.offset);
      return;
    }
    std::string key(static_cast<const char*>(m.key), m.key_len);
    if (local_bookkeeping(key)) {
      spdlog::warn("changelog: {} [{}]@{} carries {}, this store's own bookkeeping; skipped", changelog.first,
                   changelog.second, m.offset, key);
      return;
    }
    auto& batch = pending[changelog];
    if (!key.starts_with(kOffsetPrefix)) {
      if (is_owned(source)) return;  // its owner wrote it here itself
      if (!m.payload && key.starts_with(Projector::kOutboxPrefix) && batch.puts.empty() && batch.deletes.empty()) {
        // An outbox entry its owner has sent, removed outside any batch: with what is ready.
        start_ready();
        ready.ops[key] = std::nullopt;
        ready.offsets[changelog] = m.offset + 1;
        return;
      }
      if (m.payload) {
        batch.puts.emplace_back(std::move(key), std::string(static_cast<const char*>(m.payload), m.len));
      } else {
        batch.deletes.push_back(std::move(key));
      }
      return;
    }
    // The end of a batch: everything up to here, with the source's offset and ours, in one write.
    const void* format = nullptr;
    std::size_t format_size = 0;
    rd_kafka_headers_t* headers = nullptr;
    if (rd_kafka_message_headers(&m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(headers, kFormatHeader, &format, &format_size) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      const std::string written(static_cast<const char*>(format), format_size);
      if (written != std::to_string(Projector::kStoreFormat)) {
        throw std::runtime_error(fmt::format("{} [{}] holds records of store format {} and this build's is {}: a "
                                             "cluster changing format needs changelog topics of its own "
                                             "(docs/operations.md, \"Several hubs\")",
                                             changelog.first, changelog.second, written, Projector::kStoreFormat));
      }
    }
    std::int64_t next = -1;
    if (m.payload) std::from_chars(static_cast<const char*>(m.payload), static_cast<const char*>(m.payload) + m.len, next);
    if (is_owned(source)) {
      // Its owner writes the batch to the store after its commit, maybe not yet: the position is
      // not stored past it (a restart reads the owner's batches again, to the same state).
      batch = {};
      if (ready.offsets.find(changelog) == ready.offsets.end()) mark_applied(changelog, m.offset + 1);
      return;
    }
    start_ready();
    ready.offsets[changelog] = m.offset + 1;
    {
      // Store::write removes before it puts: a key a batch both removes and puts keeps the record.
      for (auto& k : batch.deletes) ready.ops[std::move(k)] = std::nullopt;
      for (auto& [k, v] : batch.puts) {
        if (Projector::is_projection_key(k)) ready.changes.emplace_back(k, v);
        ready.ops[std::move(k)] = std::move(v);
      }
      if (next >= 0) ready.offsets[source] = next;
      ++ready.batches;
    }
    batch = {};
  }

  void start_ready() {
    if (ready.ops.empty() && ready.offsets.empty()) ready.since = std::chrono::steady_clock::now();
  }
  bool ready_full() const {
    return ready.ops.size() >= kReadyRecords ||
           (!ready.offsets.empty() && std::chrono::steady_clock::now() - ready.since >= kReadyFor);
  }

  // Writes what is ready in one store write, then says so (applied offsets, live subscriptions).
  void flush(std::stop_token stop) {
    if (ready.ops.empty() && ready.offsets.empty()) return;
    KeyValues puts;
    std::vector<std::string> deletes;
    for (auto& [k, v] : ready.ops) {
      if (v) {
        puts.emplace_back(k, std::move(*v));
      } else {
        deletes.push_back(k);
      }
    }
    const auto now = std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch()).count());
    puts.emplace_back(kChangelogAppliedAtKey, now);
    for (const auto& [tp, _] : ready.offsets) {
      if (changelog_of.contains(tp.first)) puts.emplace_back(changelog_at_key(tp), now);
    }
    if (!write(puts, ready.offsets, deletes, stop)) return;
    Ready done = std::move(ready);
    ready = {};
    {
      std::lock_guard lock(mu);
      batches += done.batches;
    }
    if (config.on_apply && !done.changes.empty()) config.on_apply(std::move(done.changes));
    for (const auto& [tp, next] : done.offsets) {
      if (changelog_of.contains(tp.first)) mark_applied(tp, next);
    }
  }

  // Past transaction markers: a partition with no batch half read holds everything before the
  // consumer's position.
  void mark_positions() {
    for (const auto& [tp, at] : positions()) {
      auto p = pending.find(tp);
      if (p != pending.end() && (!p->second.puts.empty() || !p->second.deletes.empty())) continue;
      if (at >= 0) mark_applied(tp, at);
    }
  }
  std::map<TopicPartition, std::int64_t> positions() {
    std::map<TopicPartition, std::int64_t> out;
    rd_kafka_topic_partition_list_t* raw = nullptr;
    if (rd_kafka_assignment(consumer.get(), &raw)) return out;
    KafkaPartitionsPtr assigned(raw);
    rd_kafka_position(consumer.get(), assigned.get());
    for (int i = 0; i < assigned->cnt; ++i) out[{assigned->elems[i].topic, assigned->elems[i].partition}] = assigned->elems[i].offset;
    return out;
  }
};

ChangelogApplier::ChangelogApplier(Config config, Store& store)
    : impl_(std::make_unique<Impl>(std::move(config), store)) {}
ChangelogApplier::~ChangelogApplier() = default;

void ChangelogApplier::run(std::stop_token stop) {
  auto& m = *impl_;
  try {
    run_applying(stop);
  } catch (...) {
    std::lock_guard lock(m.mu);
    m.stopped = true;  // nobody waits on an applier that is gone
    m.changed.notify_all();
    throw;
  }
}

void ChangelogApplier::run_applying(std::stop_token stop) {
  auto& m = *impl_;
  std::stop_callback wake(stop, [&] {
    std::lock_guard lock(m.mu);
    m.stopped = true;
    m.changed.notify_all();
  });
  auto consumer = make_consumer(m.config.kafka, {{"group.id", "courtyard-reader"},
                                                 {"auto.offset.reset", "earliest"},
                                                 {"enable.auto.commit", "false"},
                                                 {"enable.auto.offset.store", "false"},
                                                 {"enable.partition.eof", "false"},
                                                 {"isolation.level", "read_committed"},
                                                 {"fetch.wait.max.ms", "50"}});
  if (!consumer) throw std::runtime_error("changelog consumer: " + consumer.error());
  m.consumer = std::move(*consumer);
  // Every partition of every changelog, from where the store says it stopped.
  const auto stored = m.store.view().offsets();
  KafkaPartitionsPtr parts(rd_kafka_topic_partition_list_new(16));
  for (const auto& [topic, _] : m.changelog_of) {
    std::int32_t count = 0;
    while (!stop.stop_requested()) {
      auto n = partition_count(m.consumer.get(), topic, std::chrono::seconds(5));
      if (n && *n > 0) {
        count = *n;
        break;
      }
      spdlog::warn("changelog: waiting for topic {} ({})", topic, n ? "it does not exist" : n.error());
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    for (std::int32_t p = 0; p < count && m.config.standby; ++p) {
      auto it = stored.find({topic, p});
      rd_kafka_topic_partition_list_add(parts.get(), topic.c_str(), p)->offset =
          it == stored.end() ? RD_KAFKA_OFFSET_BEGINNING : it->second;
      // Restored once each is applied up to where it ends now.
      auto end = query_high_watermark(m.consumer.get(), topic, p, std::chrono::seconds(10));
      while (!end && !stop.stop_requested()) {
        spdlog::warn("changelog: where {} [{}] ends: {}; asking again", topic, p, end.error());
        std::this_thread::sleep_for(std::chrono::seconds(1));
        end = query_high_watermark(m.consumer.get(), topic, p, std::chrono::seconds(10));
      }
      if (!end) return;
      std::lock_guard lock(m.mu);
      m.start_ends[{topic, p}] = *end;
    }
  }
  if (stop.stop_requested()) return;
  if (auto err = rd_kafka_assign(m.consumer.get(), parts.get())) {
    throw std::runtime_error(std::string("changelog assign: ") + rd_kafka_err2str(err));
  }
  for (int i = 0; i < parts->cnt; ++i) {
    m.reading.insert({parts->elems[i].topic, parts->elems[i].partition});
    // The store holds everything before where it starts reading.
    if (parts->elems[i].offset >= 0) m.mark_applied({parts->elems[i].topic, parts->elems[i].partition}, parts->elems[i].offset);
  }
  {
    std::lock_guard lock(m.mu);
    m.started = true;
    m.changed.notify_all();
  }
  if (m.config.standby) {
    spdlog::info("changelog: applying {} partition(s) of {} topic(s)", parts->cnt, m.changelog_of.size());
  } else {
    spdlog::info("changelog: no standbys; a partition's changelog is read while it is restored");
  }
  while (!stop.stop_requested()) {
    m.follow_wanted();
    KafkaMessagePtr msg(rd_kafka_consumer_poll(m.consumer.get(), 100));
    if (msg && !msg->err) m.apply(*msg);
    else if (msg && msg->err) spdlog::warn("changelog: {}", rd_kafka_message_errstr(msg.get()));
    if (!msg || m.ready_full()) m.flush(stop);
    if (!msg) m.mark_positions();  // idle: up to the end, markers included
    if (m.progress_due()) {  // and busy: a quiet partition's markers count too, now and then
      m.flush(stop);
      m.mark_positions();
      m.update_progress();
    }
  }
  rd_kafka_consumer_close(m.consumer.get());
}

void ChangelogApplier::own(const TopicPartition& source) {
  std::lock_guard lock(impl_->mu);
  impl_->owned.insert(source);
  // Without standbys, its changelog is read no more: its owner is this hub.
  if (!impl_->config.standby && impl_->wanted.erase({changelog_topic(impl_->config.kafka, source.first), source.second})) {
    impl_->wanted_changed = true;
  }
}

void ChangelogApplier::disown(const TopicPartition& source) {
  std::lock_guard lock(impl_->mu);
  impl_->owned.erase(source);
}

ChangelogApplier::Progress ChangelogApplier::progress() const {
  std::lock_guard lock(impl_->mu);
  return impl_->progress;
}

std::uint64_t ChangelogApplier::batches_applied() const {
  std::lock_guard lock(impl_->mu);
  return impl_->batches;
}

std::expected<void, std::string> ChangelogApplier::catch_up(const std::vector<TopicPartition>& sources,
                                                            std::chrono::milliseconds timeout) {
  auto& m = *impl_;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<TopicPartition> changelogs;
  for (const auto& source : sources) {
    changelogs.emplace_back(changelog_topic(m.config.kafka, source.first), source.second);
    if (changelogs.back().first.empty()) return std::unexpected("no changelog for " + source.first);
  }
  {
    std::unique_lock lock(m.mu);
    if (!m.changed.wait_until(lock, deadline, [&] { return m.started || m.stopped; }) || m.stopped) {
      return std::unexpected("the changelog applier is not running");
    }
  }
  auto left = [&] {
    return std::max(std::chrono::milliseconds(1), std::chrono::duration_cast<std::chrono::milliseconds>(
                                                      deadline - std::chrono::steady_clock::now()));
  };
  std::vector<std::int64_t> ends;
  for (const auto& changelog : changelogs) {
    auto end = query_high_watermark(m.consumer.get(), changelog.first, changelog.second, left());
    if (!end) return std::unexpected("where " + changelog.first + " [" + std::to_string(changelog.second) + "] ends: " + end.error());
    ends.push_back(*end);
    // A copy brought up to date too long ago, with records written since: the cleaner may have
    // dropped removals among them, which no restore from its position would see.
    auto view = m.store.view();
    auto at = view.get(changelog_at_key(changelog));
    const auto positions = view.offsets();
    auto position = positions.find(changelog);
    // (One short of the end is nothing written since: a batch's commit marker.)
    if (at && may_have_missed_removals(*at) && position != positions.end() && position->second + 1 < *end) {
      if (auto ok = m.store.write({{kRestoreWholeKey, "1"}}, {}); !ok) return std::unexpected(ok.error());
      return std::unexpected(fmt::format("this hub's copy of {} [{}] is older than the changelog keeps removals: it "
                                         "stops, and restores its store whole at its next start",
                                         changelog.first, changelog.second));
    }
  }
  if (!m.config.standby) {  // read them side by side, from where the store stopped, for as long as this takes
    std::lock_guard lock(m.mu);
    for (const auto& changelog : changelogs) m.wanted_changed |= m.wanted.insert(changelog).second;
  }
  for (std::size_t i = 0; i < changelogs.size(); ++i) {
    const auto& changelog = changelogs[i];
    const auto end = ends[i];
    std::unique_lock lock(m.mu);
    const bool reached = m.changed.wait_until(lock, deadline, [&] {
      auto it = m.applied.find(changelog);
      return m.stopped || end == 0 || (it != m.applied.end() && it->second >= end);
    });
    if (m.stopped) return std::unexpected("the changelog applier stopped");
    if (!reached) {
      auto it = m.applied.find(changelog);
      return std::unexpected(fmt::format("{} [{}] restored up to {} of {} in {} ms", changelog.first, changelog.second,
                                         it == m.applied.end() ? 0 : it->second, end, timeout.count()));
    }
  }
  return {};
}

}  // namespace courtyard::processors
