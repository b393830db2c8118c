#include "processors/projector.h"
#include "processors/record.h"

#include <algorithm>
#include <charconv>
#include <deque>
#include <limits>
#include <map>
#include <set>

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/digest.h"
#include "common/text.h"
#include "projection.h"
#include "projections/projections.h"
#include "schemas/event.h"

namespace courtyard::processors {
namespace {

std::string header(const LogMessage& m, std::string_view name) {
  for (const auto& [k, v] : m.headers) {
    if (k == name) return v;
  }
  return {};
}

// A header as text: ingest writes printable text, but a record in Kafka is still outside input.
std::string text_header(const LogMessage& m, std::string_view name, std::size_t max = 512) {
  auto value = header(m, name);
  return valid_utf8(value) && value.size() <= max ? value : printable(value, max);
}

template <class T>
std::optional<T> number_header(const LogMessage& m, std::string_view name) {
  auto value = header(m, name);
  T n{};
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (value.empty() || ec != std::errc() || end != value.data() + value.size()) return std::nullopt;
  return n;
}

// The event of a log message, as the projector folds it: the one its reader decoded already
// (replay's chain check: decoded once), or decoded here into `storage`. Its community and device
// become parts of store keys ("granted/{community}/{gate}/..."): one that is not an id (a slash
// in it) would read as another's prefix, so such an event does not decode here. Empty is allowed
// (ticks).
std::expected<const schemas::Event*, std::string> event_of(const LogMessage& m, std::optional<schemas::Event>& storage) {
  const schemas::Event* event = m.decoded.get();
  if (!event) {
    auto decoded = schemas::decode(m.value);
    if (!decoded) return std::unexpected(std::move(decoded.error()));
    event = &storage.emplace(std::move(*decoded));
  }
  for (const auto& [name, id] : {std::pair{"community", event->community.str()}, std::pair{"device", event->device.str()}}) {
    if (!id.empty() && !schemas::valid_id(id)) return std::unexpected(std::string(name) + " is not an id: 1..64 of [A-Za-z0-9_.-]");
  }
  return event;
}

DeadLetter dead_letter_of(const LogMessage& m) {
  DeadLetter d;
  d.partition = m.partition;
  d.reason = text_header(m, "reason", 64);
  d.detail = text_header(m, "detail");
  d.source_topic = text_header(m, "source_topic");
  d.device = header(m, "device");
  d.community = header(m, "community");
  if (!schemas::valid_id(d.device)) d.device.clear();  // a key part: ids only
  if (!schemas::valid_id(d.community)) d.community.clear();
  d.seq = number_header<std::uint64_t>(m, "seq");
  d.received_at_ms = number_header<std::int64_t>(m, "received_at").value_or(0);
  if (d.reason.empty()) d.reason = "unknown";
  return d;
}

}  // namespace

namespace {

std::map<std::string, std::uint64_t> counts_of(const Store::View& view, const std::string& key) {
  auto raw = view.get(key);
  if (!raw) return {};
  return nlohmann::json::parse(*raw).get<std::map<std::string, std::uint64_t>>();
}

std::uint64_t number_of(std::string_view text) {
  std::uint64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  return ec == std::errc() && end == text.data() + text.size() ? n : 0;
}

std::string partition_key(const std::string& topic, std::int32_t partition) {
  return "partitions/" + topic + "/" + std::to_string(partition);
}

}  // namespace

std::size_t fold_lane(const LogMessage& m, const ProjectorTopics& topics, std::size_t lanes) {
  if (lanes <= 1 || m.topic == topics.deadletter) return 0;
  return static_cast<std::size_t>(m.partition) % lanes;
}

std::string outbox_record(const OutboxEntry& entry) {
  nlohmann::json j{{"topic", entry.topic}, {"key", entry.key}, {"value", entry.value}};
  if (entry.partition >= 0) j["partition"] = entry.partition;
  return j.dump();
}

std::optional<OutboxEntry> outbox_entry(std::string_view record) {
  const auto j = nlohmann::json::parse(record, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  OutboxEntry entry;
  for (auto [name, field] : {std::pair{"topic", &entry.topic}, std::pair{"key", &entry.key}, std::pair{"value", &entry.value}}) {
    auto it = j.find(name);
    if (it == j.end() || !it->is_string()) return std::nullopt;
    *field = it->get<std::string>();
  }
  if (auto it = j.find("partition"); it != j.end() && it->is_number_integer()) entry.partition = it->get<std::int32_t>();
  return entry;
}

std::string Projector::outbox_key(const std::string& community, std::uint64_t n) {
  return fmt::format("{}{}/{:020}", kOutboxPrefix, community, n);
}

std::string Projector::counter_key(const char* counter, std::int32_t partition) {
  return fmt::format("{}/{}", counter, partition);
}

std::map<std::string, std::uint64_t> Projector::counts(const Store::View& view, const char* counter) {
  std::map<std::string, std::uint64_t> total;
  for (const auto& [key, raw] : view.scan(counter, "", std::numeric_limits<std::size_t>::max())) {
    if (key != counter && !key.starts_with(std::string(counter) + "/")) continue;  // another counter
    auto counts = nlohmann::json::parse(raw, nullptr, false);
    if (!counts.is_object()) continue;
    for (const auto& [name, n] : counts.items()) {
      if (n.is_number_unsigned()) total[name] += n.get<std::uint64_t>();
    }
  }
  return total;
}

Projector::~Projector() = default;

Projector::Projector(Store& store, ProjectorConfig config) : store_(store), config_(std::move(config)) {
  auto view = store_.view();
  if (!store_format(view)) {
    if (auto ok = store_.write({{kStoreFormatKey, std::to_string(kStoreFormat)}}, {}); !ok) {
      spdlog::warn("projector: could not mark the new store's format: {}", ok.error());  // a read-only store
    }
  }
  offsets_ = view.offsets();
}

void Projector::reload() {
  forget_state();
  offsets_ = store_.view().offsets();
}

void Projector::forget_state() {
  projections_.reset();
  chain_heads_.clear();
  outbox_next_.clear();
}

std::size_t Projector::cached_states() const {
  std::size_t n = 0;
  if (projections_) {
    for (const auto& p : projections_->all()) n += p->cached();
  }
  return n;
}

std::string Projector::quarantine_key(const std::string& topic, std::int32_t partition, std::int64_t offset) {
  return fmt::format("quarantine/{}/{}/{:020}", topic, partition, offset);
}

namespace {

nlohmann::json quarantine_record(const LogMessage& m, const std::string& reason) {
  return {{"topic", m.topic},         {"partition", m.partition},          {"offset", m.offset},
          {"reason", printable(reason, 512)}, {"key", printable(m.key, 128)}, {"bytes", m.value.size()},
          {"sha256", sha256_hex(m.value)}};
}

void add(BatchResult& total, BatchResult&& one) {
  total.applied += one.applied;
  total.duplicates += one.duplicates;
  total.replayed += one.replayed;
  total.corrupt += one.corrupt;
  total.quarantined += one.quarantined;
  total.dead_letters += one.dead_letters;
  total.alerts_changed += one.alerts_changed;
  total.outbox_entries += one.outbox_entries;
  total.bytes_written += one.bytes_written;
  for (auto t : one.fresh_device_times_ms) total.fresh_device_times_ms.push_back(t);
  for (auto& kv : one.changes) total.changes.push_back(std::move(kv));
  for (auto& kv : one.outbox) total.outbox.push_back(std::move(kv));
}

}  // namespace

std::expected<BatchResult, std::string> Projector::apply(std::span<const LogMessage> batch) {
  // Each source partition's messages are folded apart (in order) and written together: every key
  // belongs to one partition (decision 0024), so the write can say whose each record is.
  std::vector<std::vector<const LogMessage*>> groups;
  {
    std::map<std::pair<std::string_view, std::int32_t>, std::size_t> group_of;
    for (const auto& m : batch) {
      auto [it, fresh] = group_of.try_emplace({m.topic, m.partition}, groups.size());
      if (fresh) groups.emplace_back();
      groups[it->second].push_back(&m);
    }
  }
  std::vector<Folding> folded;
  try {
    for (const auto& group : groups) folded.push_back(fold(group));
    return commit(std::move(folded));
  } catch (const StoreReadError& e) {  // the store's fault, not the messages': nothing is quarantined
    forget_state();
    return std::unexpected(e.what());
  } catch (const std::exception& e) {
    spdlog::warn("projector: a batch of {} message(s) did not fold ({}); folding them one at a time", batch.size(),
                 e.what());
  } catch (...) {
    spdlog::warn("projector: a batch of {} message(s) did not fold; folding them one at a time", batch.size());
  }
  forget_state();  // they may hold the half-folded batch
  BatchResult total;
  for (const auto& m : batch) {
    std::vector<Folding> one;
    try {
      one.push_back(fold_or_quarantine(m));
    } catch (const StoreReadError& e) {
      forget_state();
      return std::unexpected(e.what());
    }
    auto written = commit(std::move(one));
    if (!written) return std::unexpected(written.error());
    add(total, std::move(*written));
  }
  return total;
}

Projector::Folding Projector::fold_or_quarantine(const LogMessage& m) {
  std::string why;
  try {
    return fold({&m});
  } catch (const StoreReadError&) {
    throw;
  } catch (const std::exception& e) {
    why = e.what();
  } catch (...) {
    why = "unknown error";
  }
  forget_state();
  spdlog::error("projector: {}[{}]@{} quarantined: {}", m.topic, m.partition, m.offset, printable(why, 256));
  Folding f;
  f.write.topic = m.topic;
  f.write.partition = m.partition;
  if (auto it = offsets_.find({m.topic, m.partition}); it != offsets_.end() && m.offset < it->second) {
    ++f.result.replayed;
    return f;
  }
  f.write.puts = {{quarantine_key(m.topic, m.partition, m.offset), quarantine_record(m, "fold failed: " + why).dump()}};
  f.write.next_offset = m.offset + 1;
  f.empty = false;
  ++f.result.quarantined;
  return f;
}

std::expected<BatchResult, std::string> Projector::commit(std::vector<Folding> folded) {
  BatchResult result;
  std::vector<PartitionWrite> writes;
  for (auto& f : folded) {
    add(result, std::move(f.result));
    if (!f.empty) writes.push_back(std::move(f.write));
  }
  if (writes.empty()) return result;
  KeyValues puts;
  std::vector<std::string> deletes;
  Offsets read;  // only the offsets of the partitions read: another lane writes the others'
  for (auto& w : writes) read[{w.topic, w.partition}] = w.next_offset;
  std::expected<void, std::string> ok;
  if (config_.before_write) ok = config_.before_write(writes);
  if (ok) {
    Offsets stored = read;
    for (auto& w : writes) {
      std::move(w.puts.begin(), w.puts.end(), std::back_inserter(puts));
      std::move(w.deletes.begin(), w.deletes.end(), std::back_inserter(deletes));
      for (const auto& [tp, next] : w.also_offsets) stored[tp] = next;
    }
    ok = store_.write(puts, stored, deletes);
  }
  if (!ok) {
    forget_state();  // they hold this batch's states, which the store does not
    return std::unexpected(ok.error());
  }
  for (const auto& [tp, offset] : read) offsets_[tp] = offset;
  for (auto& kv : puts) {
    result.bytes_written += kv.first.size() + kv.second.size();
    if (is_projection_key(kv.first)) {
      result.changes.push_back(std::move(kv));
    } else if (kv.first.starts_with(kOutboxPrefix)) {
      result.outbox.push_back(std::move(kv));
    }
  }
  if (projections_) {
    for (const auto& projection : projections_->all()) projection->evict(config_.cache_entries);
  }
  return result;
}

Projector::Folding Projector::fold(const std::vector<const LogMessage*>& messages) {
  Folding folding;
  BatchResult& result = folding.result;
  folding.write.topic = messages.front()->topic;
  folding.write.partition = messages.front()->partition;
  auto view = store_.view();
  if (!projections_) projections_ = std::make_unique<Projections>();
  Batch batch{view, config_};
  // An event through the projections that fold its type, in order, until one says it was seen.
  auto fold_event = [&](const schemas::Event& event, const std::string& community) {
    Folded folded = Folded::Done;
    for (auto* projection : projections_->folding(event.body.index())) {
      switch (projection->fold(batch, event, community)) {
        case Folded::Duplicate: return Folded::Duplicate;
        case Folded::Fresh: folded = Folded::Fresh; break;
        case Folded::Done: break;
      }
    }
    return folded;
  };
  std::map<std::string, std::vector<std::string>> partitions;  // partition key -> communities seen there
  std::set<std::string> partitions_changed;
  auto communities_of = [&](const std::string& key) -> std::vector<std::string>& {
    auto it = partitions.find(key);
    if (it != partitions.end()) return it->second;
    auto raw = view.get(key);
    return partitions[key] = raw ? nlohmann::json::parse(*raw).get<std::vector<std::string>>() : std::vector<std::string>{};
  };
  std::map<std::int32_t, std::map<std::string, std::uint64_t>> event_counts;  // per events partition changed
  KeyValues quarantined;  // records of messages that did not decode
  std::set<std::string> chain_heads_changed;  // communities
  Offsets next = offsets_;

  for (const auto* message : messages) {
    const auto& m = *message;
    auto tp = std::pair{m.topic, m.partition};
    if (auto it = next.find(tp); it != next.end() && m.offset < it->second) {
      ++result.replayed;
      continue;
    }
    next[tp] = m.offset + 1;
    if (m.topic == config_.topics.deadletter) {
      const auto letter = dead_letter_of(m);
      for (auto* projection : projections_->folding_dead_letters()) projection->fold(batch, letter);
      ++result.dead_letters;
      continue;
    }
    std::optional<schemas::Event> decoded_here;
    auto decoded = event_of(m, decoded_here);
    if (!decoded) {
      spdlog::error("{}[{}]@{} does not decode and is quarantined: {}", m.topic, m.partition, m.offset, decoded.error());
      ++result.corrupt;
      ++result.quarantined;
      quarantined.emplace_back(quarantine_key(m.topic, m.partition, m.offset),
                               quarantine_record(m, "does not decode: " + decoded.error()).dump());
      continue;
    }
    const schemas::Event* event = *decoded;
    if (std::holds_alternative<schemas::Tick>(event->body)) {
      // The log's clock for every community of this partition: timers fire here.
      for (const auto& community : communities_of(partition_key(m.topic, m.partition))) fold_event(*event, community);
      continue;
    }
    const std::string community = event->community.str();
    if (event->chain_seq > 0) {
      auto& head = chain_heads_[community];
      if (head.seq == 0 && !chain_heads_changed.contains(community)) {
        if (auto raw = view.get(chain_head_key(community))) {
          auto j = nlohmann::json::parse(*raw);
          head = {j.value("seq", std::uint64_t{0}), j.value("link", ""), j.value("event_id", std::uint64_t{0})};
        }
      }
      if (event->chain_seq > head.seq) {
        head = {event->chain_seq, event->chain_link, std::max(head.event_id, event->event_id)};
        chain_heads_changed.insert(community);
      } else if (event->event_id <= head.event_id) {
        // A position already folded, appended again: ingest re-producing after a crash, or
        // someone replaying an old event (a registry grant since withdrawn, an old operator
        // action). Folded once only. (A chain that restarted with newer events, after an ingest
        // lost its spool, is folded: replay verify reports that fork.)
        ++result.duplicates;
        continue;
      }
    }
    auto& seen = communities_of(partition_key(m.topic, m.partition));
    if (std::find(seen.begin(), seen.end(), community) == seen.end()) {
      seen.insert(std::lower_bound(seen.begin(), seen.end(), community), community);
      partitions_changed.insert(partition_key(m.topic, m.partition));
    }
    switch (fold_event(*event, community)) {
      case Folded::Duplicate: ++result.duplicates; break;
      case Folded::Fresh: {
        ++result.applied;
        result.fresh_device_times_ms.push_back(event->device_time_ms);
        auto counts = event_counts.find(m.partition);
        if (counts == event_counts.end()) {
          counts = event_counts.emplace(m.partition, counts_of(view, counter_key(kEventStatsKey, m.partition))).first;
        }
        ++counts->second[std::string(schemas::type_name(event->body))];
        break;
      }
      case Folded::Done: break;
    }
  }
  for (const auto& alert : batch.alerts) {
    for (auto* projection : projections_->folding_alerts()) projection->fold(batch, alert);
  }

  for (const auto& projection : projections_->all()) projection->write(batch);
  auto& puts = batch.puts;
  for (const auto& key : partitions_changed) puts.emplace_back(key, nlohmann::json(partitions[key]).dump());
  if (!batch.outbox.empty()) {
    std::set<std::string> numbered;  // communities whose next number moved
    for (auto& [community, topic, key, value] : batch.outbox) {
      const std::string next_key = std::string(kOutboxNextKey) + "/" + community;
      auto it = outbox_next_.find(community);
      if (it == outbox_next_.end()) {
        auto held = view.get(next_key);
        it = outbox_next_.emplace(community, held ? number_of(*held) : 0).first;
      }
      puts.emplace_back(outbox_key(community, it->second++),
                        outbox_record({std::move(topic), std::move(key), std::move(value), folding.write.partition}));
      numbered.insert(community);
    }
    for (const auto& community : numbered) {
      puts.emplace_back(std::string(kOutboxNextKey) + "/" + community, std::to_string(outbox_next_.at(community)));
    }
  }
  result.alerts_changed = batch.alerts.size();
  result.outbox_entries = batch.outbox.size();
  for (const auto& community : chain_heads_changed) {
    const auto& head = chain_heads_.at(community);
    puts.emplace_back(chain_head_key(community),
                      nlohmann::json{{"seq", head.seq}, {"link", head.link}, {"event_id", head.event_id}}.dump());
  }
  for (auto& kv : quarantined) puts.push_back(std::move(kv));
  for (const auto& [partition, counts] : event_counts) {
    puts.emplace_back(counter_key(kEventStatsKey, partition), nlohmann::json(counts).dump());
  }
  const auto tp = std::pair{folding.write.topic, folding.write.partition};
  const auto moved = next.find(tp), stored = offsets_.find(tp);
  if (moved == next.end()) return folding;  // every message below the stored offset
  if (puts.empty() && batch.deletes.empty() && stored != offsets_.end() && stored->second == moved->second) {
    return folding;
  }
  folding.write.next_offset = moved->second;
  folding.write.puts = std::move(puts);
  folding.write.deletes = std::move(batch.deletes);
  folding.empty = false;
  return folding;
}

std::optional<std::uint32_t> Projector::store_format(const Store::View& view) {
  const auto marked = view.get(kStoreFormatKey);
  if (!marked) {
    if (view.scan("", "", 1).empty()) return std::nullopt;
    return 0;
  }
  std::uint32_t format = 0;
  auto [end, ec] = std::from_chars(marked->data(), marked->data() + marked->size(), format);
  if (ec != std::errc() || end != marked->data() + marked->size()) return 0;  // no format anyone wrote
  return format;
}

const std::vector<std::string>& Projector::projection_prefixes() {
  static const std::vector<std::string> kServed = {"alerts/",  "cameras/", "commands/", "communities/", "contacts/",
                                                   "devices/", "elders/",  "gates/",    "homes/",       "meters/",
                                                   "notices/", "people/",  "quarantine/", "reads/",    "registry/",
                                                   "rejections/", "rosters/", "site/", "responses/", "notifications/"};
  return kServed;
}

std::string Projector::served_record(const Store::View& view, std::string_view key, std::string record) {
  if (served_in_pieces(key)) return with_who_is_inside(view, key, std::move(record));
  if (key.starts_with("people/")) {  // a person's ciphertext is the vault's to open, no reader's to hold
    auto j = nlohmann::json::parse(record, nullptr, false);
    if (j.is_object() && j.erase("sealed")) return j.dump();
  }
  return record_text(std::move(record));
}

bool Projector::is_projection_key(std::string_view key) {
  for (const auto& prefix : projection_prefixes()) {
    if (key.starts_with(prefix)) return true;
  }
  return false;
}

}  // namespace courtyard::processors
