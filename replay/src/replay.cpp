#include "replay/replay.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <filesystem>
#include <limits>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/digest.h"
#include "common/handoff.h"
#include "common/handles.h"
#include "common/text.h"
#include "processors/runner.h"
#include "schemas/event.h"

namespace courtyard::replay {
namespace {

using Clock = std::chrono::steady_clock;

// Batches read and not yet folded, per fold lane, at most: the reader waits beyond this.
constexpr std::size_t kBatchesInFlight = 4;

// Every partition of the topics with the offsets to read from and to stop at.
struct Plan {
  processors::Offsets start, end;
  std::uint64_t total() const {
    std::uint64_t n = 0;
    for (const auto& [tp, e] : end) n += static_cast<std::uint64_t>(std::max<std::int64_t>(0, e - start.at(tp)));
    return n;
  }
};

std::expected<Plan, std::string> plan(rd_kafka_t* rk, const RebuildConfig& c) {
  const rd_kafka_metadata_t* md = nullptr;
  const int timeout_ms = static_cast<int>(std::min<std::int64_t>(c.timeout.count(), 30000));
  if (auto err = rd_kafka_metadata(rk, 1, nullptr, &md, timeout_ms)) {
    return std::unexpected(std::string("metadata: ") + rd_kafka_err2str(err));
  }
  Plan p;
  KafkaPartitionsPtr times(rd_kafka_topic_partition_list_new(32));
  for (const auto& topic : {c.kafka.events_topic, c.kafka.deadletter_topic}) {
    bool found = false;
    for (int t = 0; t < md->topic_cnt; ++t) {
      if (topic != md->topics[t].topic) continue;
      found = true;
      for (int i = 0; i < md->topics[t].partition_cnt; ++i) {
        const std::int32_t id = md->topics[t].partitions[i].id;
        std::int64_t low = 0, high = 0;
        if (auto err = rd_kafka_query_watermark_offsets(rk, topic.c_str(), id, &low, &high, timeout_ms)) {
          rd_kafka_metadata_destroy(md);
          return std::unexpected("watermarks of " + topic + ": " + rd_kafka_err2str(err));
        }
        p.start[{topic, id}] = low;
        p.end[{topic, id}] = high;
        if (c.until_time_ms) rd_kafka_topic_partition_list_add(times.get(), topic.c_str(), id)->offset = *c.until_time_ms + 1;
      }
    }
    if (!found) {
      rd_kafka_metadata_destroy(md);
      return std::unexpected("topic " + topic + " does not exist");
    }
  }
  rd_kafka_metadata_destroy(md);
  if (c.until_time_ms) {
    // The first offset of each partition appended after the time: where to stop.
    if (auto err = rd_kafka_offsets_for_times(rk, times.get(), timeout_ms)) {
      return std::unexpected(std::string("offsets for time: ") + rd_kafka_err2str(err));
    }
    for (int i = 0; i < times->cnt; ++i) {
      const auto& e = times->elems[i];
      auto& end = p.end[{e.topic, e.partition}];
      if (e.offset >= 0) end = std::min(end, e.offset);  // -1: nothing after the time, read to the end
    }
  }
  if (c.until_offsets) {
    for (auto& [tp, end] : p.end) {
      if (auto it = c.until_offsets->find(tp); it != c.until_offsets->end()) {
        end = std::min(end, it->second);
      } else if (c.only_named_partitions) {
        end = p.start.at(tp);
      }
    }
  }
  if (c.require_log_start) {
    for (const auto& [tp, start] : p.start) {
      if (start > 0 && p.end.at(tp) > start) {
        return std::unexpected(fmt::format("partition {} of {} starts at offset {}: the log's start is gone, and a "
                                           "rebuild from it would lack what was there",
                                           tp.second, tp.first, start));
      }
    }
  }
  return p;
}


// Follows every community's chain through the log: each event of a community's stream must be
// chained (only ticks, which belong to no community, are not), be the next in its stream and
// carry SHA-256(previous link || itself); an event at a position seen before must be a
// byte-identical re-append (ingest re-producing after a crash), compared with the original's
// bytes among the last kRecent positions of its stream.
class ChainChecker {
 public:
  static constexpr std::size_t kRecent = 65536;  // positions remembered per community for re-appends
  explicit ChainChecker(std::string key) : key_(std::move(key)) {}

  // What it found, added to `summary`: a community followed by several checkers (its events in
  // partitions of more than one lane: only a forgery puts them there) is at the furthest position
  // any of them reached, with the events each of them read.
  void add_to(RebuildSummary& summary) && {
    for (auto& b : breaks_) summary.breaks.push_back(std::move(b));
    for (auto& [community, head] : chains_) {
      auto [it, fresh] = summary.chains.try_emplace(community, head);
      if (fresh) continue;
      auto& total = it->second;
      if (head.seq > total.seq) total.seq = head.seq, total.link = head.link;
      total.events += head.events;
      total.repeats += head.repeats;
      total.unchained += head.unchained;
    }
  }

  // A dead letter carries ingest's MAC over its payload and headers.
  void check_dead_letter(const processors::LogMessage& m) {
    std::string mac;
    std::set<std::string> names;
    for (const auto& [name, value] : m.headers) {
      if (!names.insert(name).second) {  // readers take the first of a name: two would let one hide behind the other
        breaks_.push_back({"", m.topic, m.partition, m.offset, 0, "a dead letter with header " + printable(name, 32) + " twice"});
        return;
      }
      if (name == "auth") mac = value;
    }
    if (mac.empty() || schemas::dead_letter_mac(key_, m.value, m.headers) != mac) {
      breaks_.push_back({"", m.topic, m.partition, m.offset, 0,
                                 mac.empty() ? "a dead letter without ingest's MAC" : "a dead letter whose MAC does not hold"});
    }
  }

  // A message before where this rebuild starts: remembered, so a re-append of it later is
  // recognised, never checked or counted.
  void remember(const processors::LogMessage& m) {
    auto event = schemas::decode(m.value);
    if (!event || event->community.empty() || event->chain_seq == 0) return;
    auto& recent = recent_[event->community.str()];
    recent[event->chain_seq] = sha256_hex(m.value);
    if (recent.size() > kRecent) recent.erase(recent.begin());
  }

  // Continue from the heads a store holds (processors::Projector::chain_head_key).
  void start_from(const processors::Store::View& view) {
    const std::string prefix = processors::Projector::kChainHeadPrefix;
    for (const auto& [key, raw] : view.scan(prefix, "", std::numeric_limits<std::size_t>::max())) {
      auto j = nlohmann::json::parse(raw, nullptr, false);
      if (!j.is_object()) continue;
      auto& head = chains_[key.substr(prefix.size())];
      head.seq = j.value("seq", std::uint64_t{0});
      head.link = j.value("link", "");
    }
  }

  // Also hands the decoded event to the projector with the message, so it is decoded once.
  void check(processors::LogMessage& m) {
    auto decoded = schemas::decode(m.value);
    if (!decoded) {  // quarantined by the projector; in a community's partition it may hide a forgery
      breaks_.push_back({"", m.topic, m.partition, m.offset, 0, "not a Courtyard event: " + decoded.error()});
      return;
    }
    auto event = std::make_shared<const schemas::Event>(std::move(*decoded));
    m.decoded = event;
    if (event->community.empty()) {
      if (!std::holds_alternative<schemas::Tick>(event->body)) {
        breaks_.push_back({"", m.topic, m.partition, m.offset, 0,
                                   std::string(schemas::type_name(event->body)) + " of no community: only ticks are"});
      } else if (schemas::chain_link(key_, std::string(schemas::kTickLink), *event) != event->chain_link) {
        breaks_.push_back({"", m.topic, m.partition, m.offset, 0, "a tick whose MAC does not hold: not ingest's"});
      }
      return;
    }
    const std::string community = event->community.str();
    auto& head = chains_[community];
    auto& recent = recent_[community];
    auto broken = [&](std::string what) {
      breaks_.push_back({community, m.topic, m.partition, m.offset, event->chain_seq, std::move(what)});
    };
    if (event->chain_seq == 0) {
      ++head.unchained;
      broken(fmt::format("{} from {} is not chained: ingest chains every event of a community's stream",
                         schemas::type_name(event->body), printable(event->device.str(), 64)));
      return;
    }
    const std::string digest = sha256_hex(m.value);
    if (event->chain_seq <= head.seq) {
      // Seen before: a re-append is byte-identical to the first; anything else is a fork.
      auto first = recent.find(event->chain_seq);
      if (first == recent.end()) {
        broken(fmt::format("position {} appears again, and its first appearance is not among the last {} of the chain "
                           "(at {}): it cannot be a re-append",
                           event->chain_seq, kRecent, head.seq));
      } else if (first->second == digest) {
        ++head.repeats;
      } else {
        broken(fmt::format("position {} appears again with different content (the chain is at {})", event->chain_seq,
                           head.seq));
      }
      return;
    }
    if (event->chain_seq > head.seq + 1) {
      broken(fmt::format("missing event(s) {}..{} of the chain before this one", head.seq + 1, event->chain_seq - 1));
    } else if (schemas::chain_link(key_, head.link, *event) != event->chain_link) {
      broken("altered: the event does not match its chain link");
    }
    // Either way, follow the chain on from this event so one break is reported once.
    head.seq = event->chain_seq;
    head.link = event->chain_link;
    ++head.events;
    recent[head.seq] = digest;
    if (recent.size() > kRecent) recent.erase(recent.begin());
  }

 private:
  std::string key_;
  std::map<std::string, ChainHead> chains_;  // by community
  std::vector<ChainBreak> breaks_;
  std::map<std::string, std::map<std::uint64_t, std::string>> recent_;
};

}  // namespace

const std::vector<std::string>& projection_prefixes() { return processors::Projector::projection_prefixes(); }

std::expected<RebuildSummary, std::string> rebuild(const RebuildConfig& c) {
  std::error_code ec;
  if (!c.resume && std::filesystem::exists(c.dir, ec) && !std::filesystem::is_empty(c.dir, ec)) {
    return std::unexpected(c.dir + " is not empty: a rebuild starts from a fresh store");
  }
  if (c.resume && !std::filesystem::exists(std::filesystem::path(c.dir) / "CURRENT", ec)) {
    return std::unexpected(c.dir + " holds no store to continue");
  }
  std::filesystem::create_directories(c.dir, ec);
  processors::StoreConfig store_config;
  store_config.dir = c.dir;
  auto store = processors::Store::open(store_config);
  if (!store) return std::unexpected(store.error());
  if (c.resume) {
    const auto format = processors::Projector::store_format((*store)->view());
    if (format && *format != processors::Projector::kStoreFormat) {
      return std::unexpected(fmt::format("{} holds a store of format {}, and this build writes format {}: a rebuild "
                                         "continues only a store of its own format",
                                         c.dir, *format, processors::Projector::kStoreFormat));
    }
  }
  // One projector per fold lane, on one store: a lane folds the events partitions whose number
  // modulo the lanes is its own (a community's events are all in one partition), and lane 0 every
  // dead letter.
  const std::size_t lanes = std::max<std::size_t>(1, c.fold_lanes ? c.fold_lanes : std::thread::hardware_concurrency());
  std::vector<std::unique_ptr<processors::Projector>> projectors;
  for (std::size_t i = 0; i < lanes; ++i) projectors.push_back(std::make_unique<processors::Projector>(**store, c.projector));

  auto consumer = make_consumer(c.kafka, {{"group.id", "courtyard-replay"},
                                          {"enable.auto.commit", "false"},
                                          {"enable.auto.offset.store", "false"},
                                          {"enable.partition.eof", "false"},
                                          {"fetch.max.bytes", "67108864"}});
  if (!consumer) return std::unexpected(consumer.error());
  rd_kafka_t* rk = consumer->get();
  auto p = plan(rk, c);
  if (!p) return std::unexpected(p.error());
  RebuildSummary summary;
  // Chains are checked where they are folded: in the lane of their partition, on its thread.
  std::vector<ChainChecker> chains(lanes, ChainChecker(c.chain_key.value_or("")));
  if (c.resume) {
    const auto lows = p->start;  // the first offset each partition still holds
    // Start where the store stands, not at the log's start.
    const auto stored = (*store)->view().offsets();
    for (auto& [tp, start] : p->start) {
      if (auto it = stored.find(tp); it != stored.end()) start = std::max(start, it->second);
    }
    for (auto& checker : chains) checker.start_from((*store)->view());
    // The positions just before where this rebuild starts, so a re-append of one of them (after
    // an ingest crash) is still compared with its original's bytes.
    KafkaPartitionsPtr earlier(rd_kafka_topic_partition_list_new(8));
    processors::Offsets seed_end;
    const auto recent = static_cast<std::int64_t>(ChainChecker::kRecent);
    for (const auto& [tp, start] : p->start) {
      if (tp.first != c.kafka.events_topic) continue;
      const std::int64_t from = std::max<std::int64_t>(lows.at(tp), start - recent);
      if (from >= start) continue;
      seed_end[tp] = start;
      rd_kafka_topic_partition_list_add(earlier.get(), tp.first.c_str(), tp.second)->offset = from;
    }
    if (c.chain_key && !seed_end.empty()) {
      if (auto err = rd_kafka_assign(rk, earlier.get())) return std::unexpected(std::string("assign: ") + rd_kafka_err2str(err));
      auto last = Clock::now();
      while (!seed_end.empty()) {
        KafkaMessagePtr m(rd_kafka_consumer_poll(rk, 100));
        if (!m || m->err) {
          std::erase_if(seed_end, [&](const auto& e) { return consumer_position(rk, e.first.first, e.first.second) >= e.second; });
          if (!seed_end.empty() && Clock::now() - last > c.timeout) {
            return std::unexpected(std::string("the log stopped delivering before its end"));
          }
          continue;
        }
        last = Clock::now();
        auto it = seed_end.find({rd_kafka_topic_name(m->rkt), m->partition});
        if (it == seed_end.end() || m->offset >= it->second) continue;
        if (m->offset + 1 >= it->second) seed_end.erase(it);
        auto lm = processors::log_message_of(*m);
        chains[processors::fold_lane(lm, c.projector.topics, lanes)].remember(lm);
      }
    }
  }
  KafkaPartitionsPtr assignment(rd_kafka_topic_partition_list_new(32));
  processors::Offsets remaining;  // partitions still to read -> their end
  for (const auto& [tp, end] : p->end) {
    if (end <= p->start.at(tp)) continue;
    remaining[tp] = end;
    rd_kafka_topic_partition_list_add(assignment.get(), tp.first.c_str(), tp.second)->offset = p->start.at(tp);
  }
  if (auto err = rd_kafka_assign(rk, assignment.get())) return std::unexpected(std::string("assign: ") + rd_kafka_err2str(err));

  // The calling thread reads: it polls the log, copies each message out of librdkafka and hands
  // batches to the fold lanes over short queues; each lane checks the chain links of its
  // partitions (or only decodes their events), folds them on a thread of its own and writes the
  // store. The reader owns the consumer, each lane its chain checker and projector. A few batches
  // in flight per lane bound the memory.
  using Messages = std::vector<processors::LogMessage>;
  struct Lane {
    explicit Lane(std::size_t capacity) : queue(capacity) {}
    Handoff<Messages> queue;
    Messages pending;  // read, not yet handed over
    processors::BatchResult folded;
    std::optional<std::string> error;
    std::jthread thread;
  };
  std::atomic<bool> failed{false};
  std::vector<std::unique_ptr<Lane>> lane_of;
  for (std::size_t i = 0; i < lanes; ++i) {
    auto& lane = *lane_of.emplace_back(std::make_unique<Lane>(kBatchesInFlight));
    lane.thread = std::jthread([&, &projector = *projectors[i], &checker = chains[i]] {
      try {
        while (auto batch = lane.queue.pop()) {
          for (auto& m : *batch) {
            if (m.topic == c.kafka.events_topic) {
              if (c.chain_key) {
                checker.check(m);  // decodes it, once, for the fold too
              } else if (auto event = schemas::decode(m.value)) {
                m.decoded = std::make_shared<const schemas::Event>(std::move(*event));
              }  // one that does not decode is the fold's to quarantine, with its reason
            } else if (c.chain_key && m.topic == c.kafka.deadletter_topic) {
              checker.check_dead_letter(m);
            }
          }
          auto result = projector.apply(*batch);
          if (!result) {
            lane.error = result.error();
            break;
          }
          lane.folded.applied += result->applied;
          lane.folded.duplicates += result->duplicates;
          lane.folded.corrupt += result->corrupt;
          lane.folded.quarantined += result->quarantined;
          lane.folded.dead_letters += result->dead_letters;
        }
      } catch (const std::exception& e) {
        lane.error = std::string("folding: ") + e.what();
      }
      if (lane.error) {
        failed = true;      // the reader stops
        lane.queue.close();  // and is not left waiting on this lane
      }
    });
  }
  // However this thread leaves, no lane is left waiting for more.
  struct CloseOnExit {
    std::vector<std::unique_ptr<Lane>>& lanes;
    ~CloseOnExit() {
      for (auto& lane : lanes) lane->queue.close();
    }
  } close_on_exit{lane_of};
  auto hand_over = [&](Lane& lane) {
    if (lane.pending.empty()) return true;
    bool taken = lane.queue.push(std::move(lane.pending));
    lane.pending = {};
    lane.pending.reserve(c.max_batch);
    return taken;
  };
  auto hand_over_all = [&] {
    bool taken = true;
    for (auto& lane : lane_of) taken = hand_over(*lane) && taken;
    return taken;
  };

  Progress progress;
  progress.total = p->total();
  const auto started = Clock::now();
  auto last_progress = started, last_message = started;
  std::optional<std::string> read_error;
  while (!remaining.empty() && !failed) {
    KafkaMessagePtr m(rd_kafka_consumer_poll(rk, 100));
    auto now = Clock::now();
    if (!m || m->err) {
      if (!hand_over_all()) break;
      // A partition ending in transaction markers (ingest appends in transactions) is read once
      // the consumer has stepped over them: no message is handed out for a marker.
      std::erase_if(remaining, [&](const auto& e) { return consumer_position(rk, e.first.first, e.first.second) >= e.second; });
      if (!remaining.empty() && now - last_message > c.timeout) {
        read_error = "the log stopped delivering before its end";
        break;
      }
      continue;
    }
    last_message = now;
    auto it = remaining.find({rd_kafka_topic_name(m->rkt), m->partition});
    if (it == remaining.end() || m->offset >= it->second) continue;  // past where this rebuild stops
    if (m->offset + 1 >= it->second) remaining.erase(it);
    auto lm = processors::log_message_of(*m);
    auto& lane = *lane_of[processors::fold_lane(lm, c.projector.topics, lanes)];
    lane.pending.push_back(std::move(lm));
    ++summary.messages;
    if (lane.pending.size() >= c.max_batch && !hand_over(lane)) break;
    if (c.on_progress && now - last_progress > std::chrono::seconds(1)) {
      last_progress = now;
      progress.messages = summary.messages;
      progress.seconds = std::chrono::duration<double>(now - started).count();
      c.on_progress(progress);
    }
  }
  hand_over_all();
  for (auto& lane : lane_of) {
    lane->queue.close();
    lane->thread.join();
  }
  for (auto& lane : lane_of) {
    if (lane->error) return std::unexpected(*lane->error);
    summary.applied += lane->folded.applied;
    summary.duplicates += lane->folded.duplicates;
    summary.corrupt += lane->folded.corrupt;
    summary.quarantined += lane->folded.quarantined;
    summary.dead_letters += lane->folded.dead_letters;
  }
  if (read_error) return std::unexpected(*read_error);
  for (auto& checker : chains) std::move(checker).add_to(summary);
  // In log order per partition (lanes found them side by side).
  std::sort(summary.breaks.begin(), summary.breaks.end(), [](const ChainBreak& a, const ChainBreak& b) {
    return std::tie(a.topic, a.partition, a.offset, a.what) < std::tie(b.topic, b.partition, b.offset, b.what);
  });
  summary.offsets = (*store)->view().offsets();
  // Partitions with nothing to read still say where the rebuild stands.
  for (const auto& [tp, end] : p->end) summary.offsets.try_emplace(tp, end);
  summary.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  return summary;
}

namespace {

// The format of the store in `dir`, opened read-only; nullopt when it does not open or is empty.
std::optional<std::uint32_t> format_of(const std::string& dir) {
  processors::StoreConfig sc;
  sc.dir = dir;
  sc.read_only = true;
  sc.block_cache_bytes = 1 << 20;
  auto store = processors::Store::open(sc);
  if (!store) return std::nullopt;
  try {
    return processors::Projector::store_format((*store)->view());
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace

std::expected<AsOfResult, std::string> build_as_of(RebuildConfig config, const std::string& checkpoints_dir,
                                                   std::int64_t time_ms) {
  AsOfResult out;
  std::error_code ec;
  std::map<std::int64_t, std::filesystem::path, std::greater<>> candidates;  // newest first
  for (const auto& entry : std::filesystem::directory_iterator(checkpoints_dir, ec)) {
    const auto name = entry.path().filename().string();
    std::int64_t at = 0;  // named by the time it was taken: {:020}
    auto [end, bad] = std::from_chars(name.data(), name.data() + name.size(), at);
    if (name.empty() || bad != std::errc() || end != name.data() + name.size() || at < 0) continue;
    if (at <= time_ms) candidates.emplace(at, entry.path());
  }
  // The newest of this build's format: one taken before an upgrade cannot be continued.
  std::filesystem::path best;
  for (const auto& [at, path] : candidates) {
    if (format_of(path.string()) == processors::Projector::kStoreFormat) {
      out.checkpoint_ms = at;
      best = path;
      break;
    }
  }
  if (out.checkpoint_ms) {
    std::filesystem::remove_all(config.dir, ec);
    std::filesystem::create_directories(config.dir, ec);
    std::filesystem::copy(best, config.dir, std::filesystem::copy_options::recursive, ec);
    if (ec) return std::unexpected("copying checkpoint " + best.string() + ": " + ec.message());
    config.resume = true;
  }
  config.until_time_ms = time_ms;
  auto summary = rebuild(config);
  if (!summary) return std::unexpected(summary.error());
  out.summary = std::move(*summary);
  return out;
}

Digests digest(const processors::Store::View& view) {
  Digests out;
  for (const auto& prefix : projection_prefixes()) {
    Sha256 hash;
    ProjectionDigest d;
    std::string cursor;
    for (;;) {
      auto chunk = view.scan(prefix, cursor, 1024);
      if (chunk.empty()) break;
      for (const auto& [key, value] : chunk) {
        hash.update(key);
        hash.update(std::string_view("\0", 1));
        hash.update(processors::Projector::served_record(view, key, value));  // the served form: see served_record
        hash.update(std::string_view("\n", 1));
        ++d.records;
        cursor = key;
      }
    }
    d.sha256 = hash.hex();
    out[prefix.substr(0, prefix.size() - 1)] = d;
  }
  return out;
}

std::optional<Difference> first_difference(const processors::Store::View& left, const processors::Store::View& right) {
  for (const auto& prefix : projection_prefixes()) {
    std::string lc, rc;
    processors::KeyValues l, r;
    std::size_t li = 0, ri = 0;
    for (;;) {
      if (li == l.size()) {
        l = left.scan(prefix, lc, 1024);
        li = 0;
        if (!l.empty()) lc = l.back().first;
      }
      if (ri == r.size()) {
        r = right.scan(prefix, rc, 1024);
        ri = 0;
        if (!r.empty()) rc = r.back().first;
      }
      const bool l_end = li == l.size(), r_end = ri == r.size();
      if (l_end && r_end) break;
      if (r_end || (!l_end && l[li].first < r[ri].first)) {
        return Difference{l[li].first, processors::Projector::served_record(left, l[li].first, l[li].second), std::nullopt};
      }
      if (l_end || r[ri].first < l[li].first) {
        return Difference{r[ri].first, std::nullopt, processors::Projector::served_record(right, r[ri].first, r[ri].second)};
      }
      // Compared as served: a presence's lists are records of their own (decision 0019).
      auto lv = processors::Projector::served_record(left, l[li].first, l[li].second);
      auto rv = processors::Projector::served_record(right, r[ri].first, r[ri].second);
      if (lv != rv) return Difference{l[li].first, std::move(lv), std::move(rv)};
      ++li;
      ++ri;
    }
  }
  return std::nullopt;
}

namespace {

void sync_directory(const std::filesystem::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

std::expected<std::optional<Reformat>, std::string> ensure_store_format(RebuildConfig config) {
  namespace fs = std::filesystem;
  const fs::path live(config.dir), fresh(config.dir + ".rebuilding"), old(config.dir + ".previous");
  std::error_code ec;
  auto holds_store = [&](const fs::path& dir) { return fs::exists(dir / "CURRENT", ec); };
  // A swap a crash interrupted: the old store is put back (the rebuild is done again), or, when
  // the new one is already in place, the old one is dropped.
  if (!holds_store(live) && holds_store(old)) {
    fs::remove_all(live, ec);
    fs::rename(old, live, ec);
    if (ec) return std::unexpected("putting back " + old.string() + ": " + ec.message());
  }
  fs::remove_all(fresh, ec);
  fs::remove_all(old, ec);
  if (!holds_store(live)) return std::nullopt;  // a new store: the projector marks it

  processors::Offsets reached;
  processors::KeyValues outbox;
  std::uint32_t from = 0;
  std::size_t kept = 0;
  {
    processors::StoreConfig sc;
    sc.dir = live.string();
    sc.read_only = true;
    auto store = processors::Store::open(sc);
    if (!store) return std::unexpected(store.error());
    auto view = (*store)->view();
    const auto format = processors::Projector::store_format(view);
    if (!format || *format == processors::Projector::kStoreFormat) return std::nullopt;
    from = *format;
    reached = view.offsets();
    outbox = view.scan(processors::Projector::kOutboxPrefix, "", std::numeric_limits<std::size_t>::max());
  }
  // What is carried over must be what this build's runner sends ({topic, key, value}): a newer
  // version's outbox in another form would stop the runner at every start.
  for (const auto& [key, raw] : outbox) {
    if (!processors::outbox_entry(raw)) {
      return std::unexpected("the store's unsent outbox entry " + printable(key, 64) +
                             " is not one this version sends; the store is kept as it is");
    }
  }
  config.dir = fresh.string();
  config.resume = false;
  config.until_offsets = reached;
  config.only_named_partitions = true;  // what the old store had not read is the live path's
  config.require_log_start = true;
  auto summary = rebuild(config);
  if (!summary) return std::unexpected("rebuilding a store of format " + std::to_string(from) + ": " + summary.error());
  {
    processors::StoreConfig sc;
    sc.dir = fresh.string();
    auto store = processors::Store::open(sc);
    if (!store) return std::unexpected(store.error());
    auto view = (*store)->view();
    // Every alert and command the rebuild queued was sent by the old store, or is in its outbox.
    std::vector<std::string> deletes;
    for (auto& [key, _] : view.scan(processors::Projector::kOutboxPrefix, "", std::numeric_limits<std::size_t>::max())) {
      deletes.push_back(std::move(key));
    }
    // Where the old store stood, past any transaction markers after its last message.
    auto offsets = view.offsets();
    for (const auto& [tp, next] : reached) offsets[tp] = std::max(offsets[tp], next);
    if (auto ok = (*store)->write({}, offsets, deletes); !ok) return std::unexpected(ok.error());
    kept = outbox.size();
    // A community's numbers go on past any entry carried over (outbox/{community}/{n}), so a new
    // entry never takes a carried one's key. (Entries of format 3, outbox/{n}, have no community.)
    std::map<std::string, std::uint64_t> next_numbers;
    const std::string prefix = processors::Projector::kOutboxPrefix;
    for (const auto& [key, _] : outbox) {
      const auto rest = std::string_view(key).substr(prefix.size());
      const auto slash = rest.find('/');
      if (slash == std::string_view::npos) continue;
      std::uint64_t n = 0;
      const auto digits = rest.substr(slash + 1);
      if (std::from_chars(digits.data(), digits.data() + digits.size(), n).ec != std::errc()) continue;
      auto& next = next_numbers[std::string(rest.substr(0, slash))];
      next = std::max(next, n + 1);
    }
    for (auto& [community, next] : next_numbers) {
      const auto key = std::string(processors::Projector::kOutboxNextKey) + "/" + community;
      std::uint64_t rebuilt = 0;
      if (auto held = view.get(key)) std::from_chars(held->data(), held->data() + held->size(), rebuilt);
      outbox.emplace_back(key, std::to_string(std::max(next, rebuilt)));
    }
    if (auto ok = (*store)->write(outbox, offsets); !ok) return std::unexpected(ok.error());
    // On disk before the old store goes: a power cut must not leave the rebuild's outbox (all of
    // history) to be sent, nor lose what is carried over.
    if (auto ok = (*store)->flush(); !ok) return std::unexpected(ok.error());
  }
  fs::rename(live, old, ec);
  if (ec) return std::unexpected("moving " + live.string() + " aside: " + ec.message());
  fs::rename(fresh, live, ec);
  if (ec) return std::unexpected("putting the rebuilt store in place: " + ec.message());
  sync_directory(live.parent_path());  // both renames on disk before the old store is deleted
  fs::remove_all(old, ec);
  return Reformat{from, kept, std::move(*summary)};
}

}  // namespace courtyard::replay
