#include "processors/runner.h"

#include <algorithm>
#include <charconv>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <limits>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/handles.h"
#include "common/handoff.h"
#include "processors/changelog.h"

namespace courtyard::processors {

namespace {

// The events topic's partition count this store was folded from, per topic: the key's suffix.
constexpr const char* kEventsPartitionsKey = "meta/partitions/";

// Marks a store folded through the changelog (hub.cluster) from its first batch.
constexpr const char* kClusterKey = "meta/cluster";

// Batches handed to a fold lane and not yet taken, at most: the poll loop waits beyond this.
constexpr std::size_t kBatchesInFlight = 4;

}  // namespace

struct Runner::Impl {
  using Clock = std::chrono::steady_clock;

  // A fold lane: the partitions whose number modulo the lanes is its own, folded by its own
  // projector on its own thread. It commits on its own (state and its partitions' offsets in one
  // write), so lanes never wait for each other.
  struct Lane {
    Handoff<std::vector<LogMessage>> queue{kBatchesInFlight};
    std::unique_ptr<Projector> projector;
    std::jthread thread;
    std::optional<Clock::time_point> stalled_since;  // its thread only
    std::chrono::milliseconds stall_backoff{0};
    // Sharing the partitions (decision 0024): each batch goes to the changelog before the store.
    std::unique_ptr<ChangelogWriter> writer;
    std::atomic<bool> fenced{false};  // the group moved on from this hub: it may write nothing more
    std::atomic<bool> reload{false};  // the store changed under the projector: read it again first
    // Held while a batch goes to the changelog: a hand-over waits for it, so no batch of a partition
    // given away reaches the changelog after the new owner's.
    std::mutex write_mu;
    std::atomic<bool> handed_over{false};  // a batch held a partition this hub no longer owns
  };

  Impl(RunnerConfig c, Store& s)
      : config(std::move(c)), store(s), topics{config.kafka.events_topic, config.kafka.deadletter_topic} {
    const auto cores = std::max(1u, std::thread::hardware_concurrency());
    if (!config.fold && !config.changelog) throw std::invalid_argument("a runner that folds nothing holds the changelog");
    std::size_t n = config.fold_lanes ? config.fold_lanes : std::max(1u, cores - 1);  // a core for I/O
    if (!config.fold) n = 0;
    for (std::size_t i = 0; i < n; ++i) {
      auto lane = std::make_unique<Lane>();
      ProjectorConfig pc{topics, config.rules, config.context};
      pc.notify_webhook = config.notify_webhook;
      if (config.changelog) {
        pc.before_write = [this, &lane = *lane](std::vector<PartitionWrite>& writes) -> std::expected<void, std::string> {
          std::lock_guard guard(lane.write_mu);
          auto owns_all = [&] {
            std::lock_guard lock(mu);
            return std::all_of(writes.begin(), writes.end(),
                               [&](const auto& w) { return owned_shared.contains({w.topic, w.partition}); });
          };
          if (!owns_all()) {
            lane.handed_over = true;
            return std::unexpected(std::string("a partition of the batch was handed over"));
          }
          auto ok = lane.writer->write(writes, consumer.get());
          // The group's generation moved under a member that keeps its partitions (cooperative
          // rebalancing): the same writes again, with the generation the consumer has now, for
          // as long as this hub still owns them.
          for (int tries = 0; !ok && ok.error().rebalancing && tries < 100; ++tries) {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            if (!owns_all()) {
              lane.handed_over = true;
              return std::unexpected(std::string("a partition of the batch was handed over"));
            }
            ok = lane.writer->write(writes, consumer.get());
          }
          if (ok) return {};  // with where the changelog stands after it, for the store to record
          if (ok.error().fenced) lane.fenced = true;
          return std::unexpected(ok.error().message);
        };
      }
      lane->projector = std::make_unique<Projector>(store, std::move(pc));
      lanes.push_back(std::move(lane));
    }
    if (config.changelog) {
      applier = std::make_unique<ChangelogApplier>(
          ChangelogApplier::Config{config.kafka, {topics.events, topics.deadletter}, [this](KeyValues changes) {
                                     const auto seq = committed.fetch_add(1) + 1;
                                     if (config.on_commit) config.on_commit(seq, std::move(changes));
                                   },
                                   config.standby || !config.fold},
          store);
    }
    stored = store.view().offsets();
  }
  // The consumer's last callbacks (a revoke) run while it is destroyed: before what they use.
  ~Impl() {
    consumer.reset();
    producer.reset();
  }


  RunnerConfig config;
  Store& store;
  ProjectorTopics topics;
  std::vector<std::unique_ptr<Lane>> lanes;
  KafkaPtr consumer;
  KafkaPtr producer;  // the alerts outbox
  std::unique_ptr<ChangelogApplier> applier;  // sharing the partitions: the others' changelogs into the store
  // Sharing the partitions: the events partitions this hub owns (main thread), whose outbox it sends.
  std::set<std::int32_t> owned_events;
  std::set<TopicPartition> owned_shared;  // guarded by mu: what lanes may still write to the changelog

  // The outbox, main thread only: entries committed and not yet handed to the producer, in
  // order. Filled from the store at start and after a failed delivery (everything still there),
  // and with what each lane commits in between.
  std::deque<KeyValues::value_type> unsent;
  // Keys in unsent or handed to the producer and not yet reported on: not queued again (a reload
  // and a lane's commit may both bring one).
  std::set<std::string> queued;
  // When unsent is handed to the producer again without a new entry: after a failed delivery
  // (with back-off, from the store) or a full producer queue (at once).
  std::optional<Clock::time_point> outbox_retry_at;
  bool outbox_reload = false;
  std::chrono::milliseconds outbox_backoff{0};

  Histogram latency{{0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
                     0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60}};
  Histogram batch_seconds{{0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1}};
  mutable std::mutex mu;  // guards what follows
  Freshness freshness;
  RunnerStats stats;
  Offsets stored;                 // next offset per partition, as committed by the lanes
  std::size_t stalled_lanes = 0;  // lanes whose store write failed and who wait to try again
  KeyValues committed_outbox;     // outbox entries lanes committed, for the main thread to send
  std::size_t batches_pending = 0;  // handed to lanes, not yet folded (or given up)
  std::optional<std::string> fatal;  // a lane met a corrupt store: run() stops and throws
  bool stopping = false;             // run()'s stop was requested: nothing waits for lanes any more
  std::condition_variable drained;
  Offsets handed;  // main thread: the next offset past what was handed to lanes, per partition
  std::set<TopicPartition> owned;  // main thread: the partitions assigned to this hub now
  // How many partitions the events topic had when this store began folding it (0: not known yet).
  // A community's events are all in one partition, and so in one lane, only while that holds.
  std::atomic<std::int32_t> events_partitions{0};
  std::atomic<std::uint64_t> committed{0};

  static void on_rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts,
                           void* opaque) {
    auto* self = static_cast<Impl*>(opaque);
    bool cooperative = std::string_view(rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE";
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      for (int i = 0; i < parts->cnt; ++i) self->owned.insert({parts->elems[i].topic, parts->elems[i].partition});
      if (self->config.changelog) self->take_over(parts);
      // Start where the store says, not where the group committed: the store is the truth.
      Offsets offsets;
      {
        std::lock_guard lock(self->mu);
        offsets = self->stored;
      }
      const auto pinned = self->events_partitions.load();
      for (int i = 0; i < parts->cnt; ++i) {
        auto& p = parts->elems[i];
        if (pinned && p.partition >= pinned && self->config.kafka.events_topic == p.topic) {
          self->fail(partitions_changed(p.topic, pinned, p.partition + 1, true));
        }
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
      // What lanes were handed of them is folded first: a later assignment starts from what is
      // stored. (Messages read but not yet handed are folded after; they are skipped as stored
      // when read again.)
      self->drain();
      {
        std::lock_guard lock(self->mu);
        for (int i = 0; i < parts->cnt; ++i) self->freshness.erase({parts->elems[i].topic, parts->elems[i].partition});
      }
      for (int i = 0; i < parts->cnt; ++i) self->owned.erase({parts->elems[i].topic, parts->elems[i].partition});
      if (self->config.changelog) self->hand_over(parts);
      if (cooperative) {
        if (auto* error = rd_kafka_incremental_unassign(rk, parts)) rd_kafka_error_destroy(error);
      } else {
        rd_kafka_assign(rk, nullptr);
      }
    }
  }

  // `at_least`: `now` is only the highest partition assigned, not the topic's count.
  static std::string partitions_changed(const std::string& topic, std::int32_t pinned, std::int32_t now,
                                        bool at_least = false) {
    return fmt::format("the events topic {} has {}{} partitions but this store was folded from {}: a community's "
                       "events would be split between partitions and folded out of order. Nothing was folded; "
                       "see docs/operations.md, \"The events topic's partitions\"",
                       topic, at_least ? "at least " : "", now, pinned);
  }

  // Records the events topic's partition count in the store the first time it is known, and stops
  // the processors when it differs from the one recorded (a topic given more partitions, or made
  // again with fewer). Throws when it differs; false while the topic does not exist yet.
  bool pin_events_partitions(std::chrono::milliseconds timeout) {
    const auto& topic = config.kafka.events_topic;
    auto count = partition_count(consumer.get(), topic, timeout);
    if (!count) {
      spdlog::warn("runner: {}", count.error());
      return false;
    }
    if (*count == 0) return false;
    const std::string key = std::string(kEventsPartitionsKey) + topic;
    auto view = store.view();
    std::int32_t pinned = 0;
    if (auto held = view.get(key)) {
      if (std::from_chars(held->data(), held->data() + held->size(), pinned).ec != std::errc() || pinned <= 0) {
        throw std::runtime_error("the store's " + key + " is no partition count: " + *held);
      }
    } else {
      for (const auto& [tp, next] : view.offsets()) {
        if (tp.first == topic) pinned = std::max(pinned, tp.second + 1);  // a store from before the record
      }
      if (pinned <= *count) {
        pinned = *count;
        if (auto ok = store.write({{key, std::to_string(pinned)}}, {}); !ok) throw std::runtime_error(ok.error());
      }
    }
    if (pinned != *count) throw std::runtime_error(partitions_changed(topic, pinned, *count));
    events_partitions = pinned;
    return true;
  }

  // Sharing the partitions: before folding partitions just given to this hub, the store takes
  // whatever their previous owners committed to the changelog, and the lanes read it again.
  void take_over(const rd_kafka_topic_partition_list_t* parts) {
    if (parts->cnt == 0) return;
    const auto started = Clock::now();
    std::vector<TopicPartition> given;
    for (int i = 0; i < parts->cnt; ++i) given.emplace_back(parts->elems[i].topic, parts->elems[i].partition);
    if (auto ok = applier->catch_up(given, config.restore_timeout); !ok) {
      fail("restoring partitions from the changelog: " + ok.error());
      return;
    }
    for (const auto& tp : given) {
      applier->own(tp);
      if (tp.first == topics.events) owned_events.insert(tp.second);
      std::lock_guard lock(mu);
      owned_shared.insert(tp);
    }
    {
      std::lock_guard lock(mu);
      for (const auto& [tp, next] : store.view().offsets()) stored[tp] = next;
    }
    for (auto& lane : lanes) lane->reload = true;
    reload_outbox();  // what the previous owners left unsent, this hub sends now
    spdlog::info("runner: took over {} partition(s), restored from the changelog in {} ms", parts->cnt,
                 std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count());
  }

  // Sharing the partitions: what lanes folded of revoked partitions is committed (drained); from
  // now on their new owner's changelog is applied here, and their outbox is the new owner's.
  void hand_over(const rd_kafka_topic_partition_list_t* parts) {
    {
      std::lock_guard lock(mu);
      for (int i = 0; i < parts->cnt; ++i) owned_shared.erase({parts->elems[i].topic, parts->elems[i].partition});
    }
    // A lane writing to the changelog now finishes first; after that none writes these partitions.
    for (auto& lane : lanes) std::lock_guard wait(lane->write_mu);
    for (int i = 0; i < parts->cnt; ++i) {
      const TopicPartition tp{parts->elems[i].topic, parts->elems[i].partition};
      applier->disown(tp);
      if (tp.first == topics.events) owned_events.erase(tp.second);
    }
    // What was handed to the producer is delivered (or not) before the new owner sends again.
    rd_kafka_flush(producer.get(), 2000);
    std::erase_if(unsent, [&](const auto& kv) {
      if (sends(kv.second)) return false;
      queued.erase(kv.first);
      return true;
    });
  }

  // Sharing the partitions, before anything is folded: the store may join (it was folded through
  // the changelog, recently enough), the changelog topics fit their sources, and each lane has its
  // changelog writer.
  void start_cluster() {
    // A store folded by a hub alone holds state its changelog never had: another hub restoring
    // from the changelog would get only what changed since. A cluster starts from empty stores.
    auto view = store.view();
    if (!view.get(kClusterKey)) {
      for (const auto& [tp, _] : view.offsets()) {
        if (tp.first == topics.events || tp.first == topics.deadletter) {
          throw std::runtime_error("this store was folded by a hub alone, without the changelog: a hub sharing the "
                                   "partitions starts on an empty store (docs/operations.md, \"Several hubs\")");
        }
      }
      if (auto ok = store.write({{kClusterKey, "1"}}, {}); !ok) throw std::runtime_error(ok.error());
    }
    // Away from the changelog longer than it keeps removals: some were missed, and records they
    // removed would stay here. The store is restored whole from the changelog instead.
    if (auto why = missed_removals(view)) {
      {
        spdlog::warn("runner: {}: restoring the store whole from the changelog", *why);
        if (auto ok = store.clear(); !ok) throw std::runtime_error(ok.error());
        if (auto ok = store.write({{Projector::kStoreFormatKey, std::to_string(Projector::kStoreFormat)}, {kClusterKey, "1"}}, {});
            !ok) {
          throw std::runtime_error(ok.error());
        }
        events_partitions = 0;
        pin_events_partitions(std::chrono::seconds(30));
        {
          std::lock_guard lock(mu);
          stored.clear();
        }
        for (auto& lane : lanes) lane->reload = true;
      }
    }
    // Each changelog has a partition for each of its source's.
    for (const auto& [source, state] : {std::pair{topics.events, config.kafka.state_topic},
                                        std::pair{topics.deadletter, config.kafka.state_deadletter_topic}}) {
      auto sources = partition_count(consumer.get(), source, std::chrono::seconds(30));
      auto states = partition_count(consumer.get(), state, std::chrono::seconds(30));
      if (!sources || !states) throw std::runtime_error("runner: " + (sources ? states.error() : sources.error()));
      if (*states == 0) throw std::runtime_error("the changelog topic " + state + " does not exist (courtyard kafka setup makes it)");
      if (*sources != 0 && *states != *sources) {
        throw std::runtime_error(fmt::format("the changelog topic {} has {} partitions and {} has {}: they must be equal",
                                             state, *states, source, *sources));
      }
    }
    // Each lane's transactions fence whichever earlier process had its id (a previous run).
    for (std::size_t i = 0; i < lanes.size(); ++i) {
      // courtyard-state-*: the hub's transactional ids (docs/security.md).
      auto writer = ChangelogWriter::open(config.kafka, fmt::format("courtyard-state-{}-{}-{}", config.group_id,
                                                                       config.instance_id, i));
      if (!writer) throw std::runtime_error(writer.error());
      lanes[i]->writer = std::move(*writer);
    }
  }

  // Why the store may have missed removals the changelog's cleaner has dropped (nullopt: it has
  // not). Per changelog partition (a copy brought up to date too long ago, with records written
  // since), or for a store from before those times, when it last applied anything.
  std::optional<std::string> missed_removals(const Store::View& view) {
    if (view.get(kRestoreWholeKey)) return "a partition's copy was found too old to restore from its position";
    const auto times = view.scan(kChangelogAtPrefix, "", std::numeric_limits<std::size_t>::max());
    if (times.empty()) {
      auto at = view.get(kChangelogAppliedAtKey);
      if (at && may_have_missed_removals(*at)) return std::string("the store last applied the changelog too long ago");
      return std::nullopt;
    }
    const auto offsets = view.offsets();
    for (const auto& [key, at] : times) {
      if (!may_have_missed_removals(at)) continue;
      const auto name = key.substr(std::string_view(kChangelogAtPrefix).size());
      const auto slash = name.rfind('/');
      std::int32_t partition = -1;
      if (slash == std::string::npos ||
          std::from_chars(name.data() + slash + 1, name.data() + name.size(), partition).ec != std::errc()) {
        return "unreadable " + key;
      }
      const TopicPartition changelog{name.substr(0, slash), partition};
      auto end = query_high_watermark(consumer.get(), changelog.first, changelog.second, std::chrono::seconds(30));
      if (!end) throw std::runtime_error("where " + changelog.first + " ends: " + end.error());
      auto position = offsets.find(changelog);
      if (position == offsets.end() || position->second + 1 < *end) {  // one short: the last commit's marker
        return fmt::format("its copy of {} [{}] was brought up to date longer ago than the changelog keeps removals",
                           changelog.first, changelog.second);
      }
    }
    return std::nullopt;
  }

  // Waits until every batch handed to a lane is folded (or its lane gave up, or run() stops).
  void drain() {
    std::unique_lock lock(mu);
    drained.wait(lock, [&] { return batches_pending == 0 || fatal || stopping; });
  }

  // Hands each lane its messages. A lane whose queue is full (it is behind, or stalled on a full
  // disk) is waited for in slices, with the outbox's deliveries served meanwhile, until run()'s
  // stop: then what was not taken is left to be read again.
  void hand_to_lanes(std::vector<LogMessage>& batch, std::stop_token stop) {
    std::vector<std::vector<LogMessage>> by_lane(lanes.size());
    for (auto& m : batch) {
      // Read before a revoke in the same poll: the partition is another's now (it is read again
      // from the store's offset by whoever has it).
      if (!owned.contains({m.topic, m.partition})) continue;
      auto& next = handed[{m.topic, m.partition}];
      next = std::max(next, m.offset + 1);
      by_lane[processors::fold_lane(m, topics, lanes.size())].push_back(std::move(m));
    }
    for (std::size_t i = 0; i < lanes.size(); ++i) {
      if (by_lane[i].empty()) continue;
      {
        std::lock_guard lock(mu);
        ++batches_pending;
      }
      for (;;) {
        const auto pushed = lanes[i]->queue.push_for(by_lane[i], std::chrono::milliseconds(100));
        if (pushed == Handoff<std::vector<LogMessage>>::Pushed::Taken) break;
        if (pushed == Handoff<std::vector<LogMessage>>::Pushed::Closed || stop.stop_requested() || failed()) {
          batch_done();
          break;
        }
        serve_outbox();
      }
    }
  }

  bool failed() {
    std::lock_guard lock(mu);
    return fatal.has_value();
  }

  void batch_done() {
    std::lock_guard lock(mu);
    --batches_pending;
    drained.notify_all();
  }

  // A lane's thread: takes what the poll loop handed it (all of it, up to a batch's size, so a
  // batch grows with the lag) and folds it.
  void run_lane(Lane& lane, std::stop_token stop) {
    while (auto taken = lane.queue.pop()) {
      std::size_t batches = 1;
      try {
        std::vector<LogMessage> batch = std::move(*taken);
        while (batch.size() < config.max_batch) {
          auto more = lane.queue.try_pop();
          if (!more) break;
          ++batches;
          for (auto& m : *more) batch.push_back(std::move(m));
        }
        if (lane.reload.exchange(false)) lane.projector->reload();
        if (!stop.stop_requested() && !failed()) fold(lane, batch, stop);
      } catch (const std::exception& e) {  // nothing of a lane may escape its thread: run() throws it
        fail(std::string("a fold lane failed: ") + e.what());
      } catch (...) {
        fail("a fold lane failed");
      }
      for (std::size_t i = 0; i < batches; ++i) batch_done();
    }
  }

  void fail(std::string why) {
    std::lock_guard lock(mu);
    if (!fatal) fatal = std::move(why);
    drained.notify_all();
  }

  void fold(Lane& lane, std::vector<LogMessage>& batch, std::stop_token stop) {
    auto started = Clock::now();
    auto result = lane.projector->apply(batch);
    batch_seconds.observe(std::chrono::duration<double>(Clock::now() - started).count());
    // The store refused the batch (nothing of it was applied): the same batch again after a
    // back-off, until the store takes it. The lane takes nothing else meanwhile; the poll loop
    // waits once its queue is full, and a stall longer than max.poll.interval.ms costs a rejoin,
    // which starts from the store's offsets anyway.
    while (!result && !stop.stop_requested()) {
      if (lane.handed_over.exchange(false)) {
        // Folded by their new owner now: only what this hub still owns is folded (again).
        std::erase_if(batch, [&](const LogMessage& m) {
          std::lock_guard lock(mu);
          return !owned_shared.contains({m.topic, m.partition});
        });
        if (batch.empty()) return;
        result = lane.projector->apply(batch);
        continue;
      }
      if (lane.fenced) {
        fail("the group moved on from this hub (fenced at the changelog: " + result.error() +
             "); it stops, and restarted it rejoins and restores its partitions from the changelog");
        return;
      }
      if (!stall(lane, result.error(), stop)) return;
      result = lane.projector->apply(batch);
    }
    if (!result) return;
    if (lane.stalled_since) resume(lane);
    // The one clock read of the processors: after the commit, never inside a fold.
    auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch()).count();
    for (auto t : result->fresh_device_times_ms) latency.observe(static_cast<double>(now_ms - t) / 1000.0);
    {
      std::lock_guard lock(mu);
      stats.applied += result->applied;
      stats.duplicates += result->duplicates;
      stats.replayed += result->replayed;
      stats.corrupt += result->corrupt;
      stats.quarantined += result->quarantined;
      stats.dead_letters += result->dead_letters;
      ++stats.batches;
      const auto& offsets = lane.projector->offsets();
      for (const auto& m : batch) {
        if (auto it = offsets.find({m.topic, m.partition}); it != offsets.end()) stored[it->first] = it->second;
      }
      for (auto& kv : result->outbox) committed_outbox.push_back(std::move(kv));
    }
    if (!result->changes.empty()) {
      // After the write: a view taken once committed() says this number holds these changes.
      const auto seq = committed.fetch_add(1) + 1;
      if (config.on_commit) config.on_commit(seq, std::move(result->changes));
    }
  }

  // The store refused a batch: nothing of it was applied. Says why in the stats (first, so
  // /healthz agrees with the log line) and waits 1 s, doubling to 30 s. A corrupt store is not a
  // full disk and waiting will not mend it: that stops the processors (and the hub) as before.
  // False when folding must stop.
  bool stall(Lane& lane, const std::string& error, std::stop_token stop) {
    if (error.find("Corruption") != std::string::npos) {
      fail(error);
      return false;
    }
    lane.stall_backoff = std::clamp(lane.stall_backoff * 2, std::chrono::milliseconds(1000), std::chrono::milliseconds(30'000));
    {
      std::lock_guard lock(mu);
      if (!lane.stalled_since) ++stalled_lanes;
      stats.store_error = error;
      ++stats.store_failures;
    }
    if (!lane.stalled_since) lane.stalled_since = Clock::now();
    spdlog::error("runner: folding stopped, the store cannot be written ({}); nothing is lost: the log keeps the "
                  "events, trying again in {} s",
                  error, lane.stall_backoff.count() / 1000);
    std::mutex m;
    std::condition_variable_any cv;
    std::unique_lock lock(m);
    cv.wait_for(lock, stop, lane.stall_backoff, [] { return false; });  // the back-off, or until stopped
    return !stop.stop_requested();
  }
  void resume(Lane& lane) {
    spdlog::info("runner: the store takes writes again; folding resumed after {} s",
                 std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - *lane.stalled_since).count());
    lane.stalled_since.reset();
    lane.stall_backoff = std::chrono::milliseconds(0);
    std::lock_guard lock(mu);
    if (--stalled_lanes == 0) stats.store_error.clear();  // another lane may still be waiting
  }

  // Everything the outbox holds, to send (again) from the first.
  void reload_outbox() {
    {
      std::lock_guard lock(mu);
      committed_outbox.clear();  // the store has them too
    }
    for (const auto& [key, _] : unsent) queued.erase(key);
    unsent.clear();
    for (auto& kv : store.view().scan(Projector::kOutboxPrefix, "", std::numeric_limits<std::size_t>::max())) {
      if (!sends(kv.second)) continue;
      if (queued.insert(kv.first).second) unsent.push_back(std::move(kv));  // not one still in flight
    }
  }

  // Whether this hub sends an outbox entry: sharing the partitions, only its own partitions' (a
  // new owner sends what the changelog still holds); alone, every one.
  bool sends(const std::string& raw) const {
    if (!config.fold) return false;  // folding nothing, it raises nothing
    if (!config.changelog) return true;
    auto entry = outbox_entry(raw);
    return !entry || entry->partition < 0 || owned_events.contains(entry->partition);
  }

  // Hands unsent entries to the producer, in order, until its queue is full.
  void publish_outbox() {
    {
      std::lock_guard lock(mu);
      for (auto& kv : committed_outbox) {
        if (queued.insert(kv.first).second) unsent.push_back(std::move(kv));
      }
      committed_outbox.clear();
    }
    while (!unsent.empty()) {
      const auto& [key, raw] = unsent.front();
      auto entry = outbox_entry(raw);
      if (!entry) throw std::runtime_error("outbox entry " + key + " is not one this version sends");
      const std::string& topic = entry->topic == "commands" ? config.kafka.commands_topic : config.kafka.alerts_topic;
      std::string& message_key = entry->key;
      std::string& value = entry->value;
      auto* opaque = new Sent{key, entry->partition};
      auto err = rd_kafka_producev(producer.get(), RD_KAFKA_V_TOPIC(topic.c_str()),
                                   RD_KAFKA_V_KEY(message_key.data(), message_key.size()),
                                   RD_KAFKA_V_VALUE(value.data(), value.size()),
                                   RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
      if (err) {  // queue full: try again after the next poll
        delete opaque;
        outbox_retry_at = Clock::now();
        return;
      }
      unsent.pop_front();
    }
  }

  // On the main thread (rd_kafka_poll of the producer).
  struct Sent {
    std::string key;              // in the outbox
    std::int32_t partition = -1;  // the events partition whose changelog holds it
  };
  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* self = static_cast<Impl*>(opaque);
    if (!m->_private) {  // a removal on the changelog: the next owner may send the entry again, harmlessly
      if (m->err) spdlog::warn("runner: an outbox removal did not reach the changelog: {}", rd_kafka_err2str(m->err));
      return;
    }
    std::unique_ptr<Sent> sent(static_cast<Sent*>(m->_private));
    const std::string* key = &sent->key;
    self->queued.erase(*key);
    if (m->err) {
      // Produce everything again from the oldest entry (ids make it idempotent), on a timer: no
      // new alert may be coming to carry it. 1 s, doubling up to a minute, until Kafka takes one.
      // (One retry per round: a batch of failures doubles the wait once.)
      if (!self->outbox_reload) {
        self->outbox_backoff = std::clamp(self->outbox_backoff * 2, std::chrono::milliseconds(1000),
                                          std::chrono::milliseconds(60'000));
        spdlog::warn("alert not published yet ({}); retrying in {} ms", rd_kafka_err2str(m->err),
                     self->outbox_backoff.count());
        self->outbox_reload = true;
        self->outbox_retry_at = Clock::now() + self->outbox_backoff;
      }
      return;
    }
    self->outbox_backoff = std::chrono::milliseconds(0);
    if (auto ok = self->store.remove(*key); !ok) spdlog::error("{}", ok.error());
    if (self->config.changelog && sent->partition >= 0) {
      // Removed on the changelog too, so no other hub keeps (or, owning it next, sends) it.
      const auto& topic = self->config.kafka.state_topic;
      rd_kafka_producev(self->producer.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(sent->partition),
                        RD_KAFKA_V_KEY(key->data(), key->size()), RD_KAFKA_V_VALUE(nullptr, 0),
                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    }
    std::lock_guard lock(self->mu);
    ++self->stats.alerts_published;
  }

  // The outbox's side of the poll loop: delivery reports, the retry timer, and what lanes
  // committed, handed to the producer.
  void serve_outbox() {
    rd_kafka_poll(producer.get(), 0);
    if (outbox_retry_at && Clock::now() >= *outbox_retry_at) {
      outbox_retry_at.reset();
      if (outbox_reload) {
        outbox_reload = false;
        reload_outbox();
      }
    }
    if (!outbox_retry_at) publish_outbox();
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
      auto it = stored.find({p.topic, p.partition});
      f.next_offset = it == stored.end() ? low : it->second;
      // Past the transaction markers the consumer stepped over, once everything handed to the
      // lanes of this partition is folded: they are no lag.
      auto h = handed.find({p.topic, p.partition});
      if (h == handed.end() || f.next_offset >= h->second) {
        f.next_offset = std::max(f.next_offset, consumer_position(consumer.get(), p.topic, p.partition));
      }
      if (high >= 0) f.high_watermark = high;
    }
  }
};

Runner::Runner(RunnerConfig config, Store& store) : impl_(std::make_unique<Impl>(std::move(config), store)) {}
Runner::~Runner() = default;

std::size_t Runner::fold_lanes() const { return impl_->lanes.size(); }

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
  m.pin_events_partitions(std::chrono::seconds(30));  // or later, once the topic exists
  std::jthread applier_thread;
  if (m.config.changelog) {
    m.start_cluster();
    applier_thread = std::jthread([&m](std::stop_token stop) {
      try {
        m.applier->run(stop);
      } catch (const std::exception& e) {
        m.fail(std::string("the changelog applier failed: ") + e.what());
      }
    });
  } else if (m.store.view().get(kClusterKey)) {
    // Folded alone from now on: the store will hold what no changelog has.
    if (auto ok = m.store.remove(kClusterKey); !ok) throw std::runtime_error(ok.error());
  }
  m.reload_outbox();  // what a previous run committed but never saw confirmed
  m.publish_outbox();
  KafkaPartitionsPtr topics(rd_kafka_topic_partition_list_new(2));
  rd_kafka_topic_partition_list_add(topics.get(), m.config.kafka.events_topic.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_topic_partition_list_add(topics.get(), m.config.kafka.deadletter_topic.c_str(), RD_KAFKA_PARTITION_UA);
  if (!m.config.fold) {
    spdlog::info("runner: folding nothing (hub.role = api): every partition comes from the changelog");
  } else if (auto err = rd_kafka_subscribe(m.consumer.get(), topics.get())) {
    throw std::runtime_error(std::string("runner subscribe: ") + rd_kafka_err2str(err));
  } else {
    spdlog::info("runner: folding on {} lane(s)", m.lanes.size());
  }
  std::stop_source lanes_stop;
  // However run() leaves, the lanes stop and are joined before the consumer goes.
  struct StopLanes {
    Impl& m;
    std::stop_source& stop;
    void operator()() {
      stop.request_stop();
      for (auto& lane : m.lanes) lane->queue.close();
      for (auto& lane : m.lanes) {
        if (lane->thread.joinable()) lane->thread.join();
      }
    }
    ~StopLanes() { (*this)(); }
  } stop_lanes{m, lanes_stop};
  // A stop reaches the lanes at once, even a lane waiting out a full disk, and whatever waits on
  // them (a hand-over, a revoke's drain).
  std::stop_callback on_stop(stop, [&] {
    lanes_stop.request_stop();
    if (applier_thread.joinable()) applier_thread.request_stop();  // a take-over waiting on it gives up
    std::lock_guard lock(m.mu);
    m.stopping = true;
    m.drained.notify_all();
  });
  for (auto& lane : m.lanes) {
    lane->thread = std::jthread([&m, &lane = *lane, token = lanes_stop.get_token()] { m.run_lane(lane, token); });
  }

  std::vector<LogMessage> batch;
  batch.reserve(m.config.max_batch);
  auto last_freshness = std::chrono::steady_clock::time_point{};
  while (!stop.stop_requested()) {
    {
      std::lock_guard lock(m.mu);
      if (m.fatal) throw std::runtime_error(*m.fatal);
    }
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
    if (m.failed()) continue;  // an assignment said the events topic changed: nothing is handed on
    const bool read = !batch.empty();
    if (read) m.hand_to_lanes(batch, stop);  // waits while a lane has kBatchesInFlight batches not taken
    m.serve_outbox();
    if (auto now = std::chrono::steady_clock::now(); read || now - last_freshness > std::chrono::milliseconds(200)) {
      last_freshness = now;
      if (!m.events_partitions) m.pin_events_partitions(std::chrono::milliseconds(100));
      m.update_freshness();
    }
  }
  stop_lanes();
  rd_kafka_consumer_close(m.consumer.get());
  rd_kafka_flush(m.producer.get(), 5000);
}

Freshness Runner::freshness() const {
  std::lock_guard lock(impl_->mu);
  return impl_->freshness;
}

std::uint64_t Runner::committed() const { return impl_->committed.load(); }

std::optional<ChangelogProgress> Runner::changelog_progress() const {
  if (!impl_->applier) return std::nullopt;
  return impl_->applier->progress();
}

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
