#include "processors/projector.h"

#include <algorithm>
#include <charconv>
#include <deque>
#include <limits>
#include <map>
#include <set>

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "processors/commands_fold.h"
#include "processors/devices_fold.h"
#include "processors/rejections_fold.h"
#include "common/digest.h"
#include "common/text.h"
#include "processors/time_buckets.h"
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

// An event of the log, as the projector folds it. Its community and device become parts of store
// keys ("granted/{community}/{gate}/..."): one that is not an id (a slash in it) would read as
// another's prefix, so such an event does not decode here. Empty is allowed (ticks).
std::expected<schemas::Event, std::string> decode_logged(std::string_view bytes) {
  auto event = schemas::decode(bytes);
  if (!event) return event;
  for (const auto& [name, id] : {std::pair{"community", event->community.str()}, std::pair{"device", event->device.str()}}) {
    if (!id.empty() && !schemas::valid_id(id)) return std::unexpected(std::string(name) + " is not an id: 1..64 of [A-Za-z0-9_.-]");
  }
  return event;
}

DeadLetter dead_letter_of(const LogMessage& m) {
  DeadLetter d;
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

// The batch's working set: state loaded once from the store, changed in memory, written once;
// kept between batches as a cache, whose least recently used entries evict() drops.
template <class State>
struct Working {
  std::map<std::string, State> states;
  std::map<std::string, std::string> loaded;  // the stored form, to skip writing what did not change
  std::map<std::string, std::uint64_t> used;  // the batch that last asked for it
  std::set<std::string> touched;              // keys this batch may have changed
  std::uint64_t batch = 0;
  State& get(const Store::View& view, const std::string& key, State (*parse)(const nlohmann::json&)) {
    touched.insert(key);
    used[key] = batch;
    auto it = states.find(key);
    if (it != states.end()) return it->second;
    State s{};
    auto raw = view.get(key);
    if (raw) s = parse(nlohmann::json::parse(*raw));
    loaded[key] = raw.value_or("");
    return states.emplace(key, std::move(s)).first->second;
  }
  // Appends the states whose stored form changed (a tick visits every community; most do not).
  void put_changed(KeyValues& puts) {
    for (const auto& key : touched) {
      auto record = to_json(states.at(key)).dump();
      auto& before = loaded.at(key);
      if (record == before) continue;
      before = record;
      puts.emplace_back(key, std::move(record));
    }
    touched.clear();
  }
  void forget(const std::string& key) {
    states.erase(key);
    loaded.erase(key);
    used.erase(key);
    touched.erase(key);  // read after its kind was written (the alert states, by the outbox): unchanged
  }
  // Once the batch is in the store (every entry is then clean): above `limit` entries, drops the
  // least recently used down to three quarters of it, and returns their keys. The store has them.
  std::vector<std::string> evict(std::size_t limit) {
    ++batch;
    if (states.size() <= limit) return {};
    std::vector<std::pair<std::uint64_t, std::string>> by_use;
    by_use.reserve(used.size());
    for (const auto& [key, at] : used) by_use.emplace_back(at, key);
    const std::size_t drop = states.size() - limit * 3 / 4;
    std::nth_element(by_use.begin(), by_use.begin() + static_cast<std::ptrdiff_t>(drop - 1), by_use.end());
    std::vector<std::string> dropped;
    for (std::size_t i = 0; i < drop; ++i) {
      const auto& key = by_use[i].second;
      forget(key);
      dropped.push_back(key);
    }
    return dropped;
  }
};

// A community's alert state as stored under alertstate/: without the device directory, which is
// stored per device under watch/{community}/{device} (it changes with every event a device sends).
// Nor the community's clock, the latest log time it has seen: every tick moves it, and it is
// stored alone under alertclock/ so a tick that changes nothing else writes a number, not the
// whole record.
struct AlertStateSlot {
  CommunityAlerts state;
};
nlohmann::json to_json(const AlertStateSlot& slot) {
  auto j = to_json(slot.state, /*whole=*/false);
  j.erase("now");
  return j;
}
AlertStateSlot alert_slot_from_json(const nlohmann::json& j) { return {community_alerts_from_json(j)}; }

struct LogClock {
  std::int64_t now_ms = 0;
};
nlohmann::json to_json(const LogClock& clock) { return clock.now_ms; }
LogClock log_clock_from_json(const nlohmann::json& j) { return {j.get<std::int64_t>()}; }
std::string alert_clock_key(const std::string& community) { return "alertclock/" + community; }

std::string watch_prefix(const std::string& community) { return "watch/" + community + "/"; }

// A community's passes granted lately, one record per pass: a batch writes the passes it added
// and deletes the ones that expired, instead of rewriting the whole window (decision 0017).
std::string granted_prefix(const std::string& community) { return "granted/" + community + "/"; }
std::string granted_key(const std::string& community, const std::string& gate, std::uint64_t seq) {
  return fmt::format("granted/{}/{}/{:020}", community, gate, seq);
}

// Makes the store's records of a community's passes (`written`: per gate, the seqs stored, in
// order) those of the state: puts for the passes added since the last write, deletes for the
// ones that expired. A gate's passes are added at the back, in seq order, and expire from the front.
void store_passes(const std::string& community, const std::map<std::string, std::vector<GrantedPass>>& granted,
                  std::map<std::string, std::deque<std::uint64_t>>& written, KeyValues& puts,
                  std::vector<std::string>& deletes) {
  auto sync = [&](const std::string& gate, std::span<const GrantedPass> passes, std::deque<std::uint64_t>& seqs) {
    const std::uint64_t first = passes.empty() ? std::numeric_limits<std::uint64_t>::max() : passes.front().seq;
    for (; !seqs.empty() && seqs.front() < first; seqs.pop_front()) deletes.push_back(granted_key(community, gate, seqs.front()));
    auto fresh = passes.end();
    while (fresh != passes.begin() && (seqs.empty() || std::prev(fresh)->seq > seqs.back())) --fresh;
    for (auto it = fresh; it != passes.end(); ++it) {
      puts.emplace_back(granted_key(community, gate, it->seq), to_json(*it).dump());
      seqs.push_back(it->seq);
    }
  };
  for (auto& [gate, seqs] : written) {
    if (!granted.contains(gate)) sync(gate, {}, seqs);
  }
  for (const auto& [gate, passes] : granted) sync(gate, passes, written[gate]);
  std::erase_if(written, [](const auto& gate) { return gate.second.empty(); });
}

}  // namespace

// Parsed states kept between batches: the projector is the store's only writer, so what it
// wrote is what the store holds. Dropped whole when a write fails.
struct Projector::Caches {
  Working<DeviceState> devices;
  Working<RejectionState> rejections;
  Working<AlertStateSlot> alert_states;
  Working<LogClock> alert_clocks;
  std::map<std::string, std::string> watch_written;  // watch/ key -> stored form
  // community -> gate -> the seqs of its passes in the store, in order
  std::map<std::string, std::map<std::string, std::deque<std::uint64_t>>> granted_written;
  Working<MeterState> meters;
  Working<CommunityMeters> meter_totals;
  Working<GateState> gates;
  Working<Occupancy> occupancy;
  Working<HomeState> homes;
  Working<ElderState> elders;
  Working<CommandRecord> commands;
  Working<PendingCommands> pending_commands;
  Working<NoticeRecord> notices;
  Working<CameraState> cameras;
  struct ChainHead {
    std::uint64_t seq = 0;
    std::string link;
    std::uint64_t event_id = 0;
  };
  std::map<std::string, ChainHead> chain_heads;  // community -> its last chained event, as stored

  // After a batch is written: each cache back under `limit` entries. A community's alert state
  // leaves with its clock and its device directory.
  void evict(std::size_t limit) {
    devices.evict(limit);
    rejections.evict(limit);
    for (const auto& key : alert_states.evict(limit)) {
      const std::string community = key.substr(std::string_view("alertstate/").size());
      alert_clocks.forget(alert_clock_key(community));
      const std::string prefix = watch_prefix(community);
      watch_written.erase(watch_written.lower_bound(prefix), watch_written.lower_bound(prefix + '\xff'));
      granted_written.erase(community);
    }
    ++alert_clocks.batch;
    meters.evict(limit);
    meter_totals.evict(limit);
    gates.evict(limit);
    occupancy.evict(limit);
    homes.evict(limit);
    elders.evict(limit);
    commands.evict(limit);
    pending_commands.evict(limit);
    notices.evict(limit);
    cameras.evict(limit);
  }
  // Parsed states held, over every cache (for tests and stats).
  std::size_t size() const {
    return devices.states.size() + rejections.states.size() + alert_states.states.size() + meters.states.size() +
           meter_totals.states.size() + gates.states.size() + occupancy.states.size() + homes.states.size() +
           elders.states.size() + commands.states.size() + pending_commands.states.size() +
           notices.states.size() + cameras.states.size();
  }
};

namespace {

std::map<std::string, std::uint64_t> counts_of(const Store::View& view, const char* key) {
  auto raw = view.get(key);
  if (!raw) return {};
  return nlohmann::json::parse(*raw).get<std::map<std::string, std::uint64_t>>();
}

}  // namespace

namespace {

constexpr const char* kOutboxNextKey = "meta/outbox_next";

std::string partition_key(const std::string& topic, std::int32_t partition) {
  return "partitions/" + topic + "/" + std::to_string(partition);
}

std::string pending_commands_key(const std::string& community) { return "cmdpending/" + community; }

std::string outbox_key(std::uint64_t seq) {
  return fmt::format("{}{:020}", Projector::kOutboxPrefix, seq);
}

}  // namespace

Projector::~Projector() = default;

Projector::Projector(Store& store, ProjectorConfig config) : store_(store), config_(std::move(config)) {
  auto view = store_.view();
  offsets_ = view.offsets();
  if (auto next = view.get(kOutboxNextKey)) outbox_next_ = std::stoull(*next);
}

std::size_t Projector::cached_states() const { return caches_ ? caches_->size() : 0; }

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
}

}  // namespace

std::expected<BatchResult, std::string> Projector::apply(std::span<const LogMessage> batch) {
  try {
    return fold(batch);
  } catch (const StoreReadError& e) {  // the store's fault, not the messages': nothing is quarantined
    caches_.reset();
    return std::unexpected(e.what());
  } catch (const std::exception& e) {
    spdlog::warn("projector: a batch of {} message(s) did not fold ({}); folding them one at a time", batch.size(),
                 e.what());
  } catch (...) {
    spdlog::warn("projector: a batch of {} message(s) did not fold; folding them one at a time", batch.size());
  }
  caches_.reset();  // they may hold the half-folded batch
  BatchResult total;
  for (const auto& m : batch) {
    std::string why;
    std::expected<BatchResult, std::string> one;
    try {
      one = fold(std::span(&m, 1));
    } catch (const StoreReadError& e) {
      caches_.reset();
      return std::unexpected(e.what());
    } catch (const std::exception& e) {
      why = e.what();
    } catch (...) {
      why = "unknown error";
    }
    if (!why.empty()) {
      caches_.reset();
      spdlog::error("projector: {}[{}]@{} quarantined: {}", m.topic, m.partition, m.offset, printable(why, 256));
      one = quarantine(m, "fold failed: " + why);
    }
    if (!one) return std::unexpected(one.error());
    add(total, std::move(*one));
  }
  return total;
}

std::expected<BatchResult, std::string> Projector::quarantine(const LogMessage& m, const std::string& reason) {
  BatchResult result;
  const auto tp = std::pair{m.topic, m.partition};
  if (auto it = offsets_.find(tp); it != offsets_.end() && m.offset < it->second) {
    ++result.replayed;
    return result;
  }
  Offsets next = offsets_;
  next[tp] = m.offset + 1;
  KeyValues puts{{quarantine_key(m.topic, m.partition, m.offset), quarantine_record(m, reason).dump()}};
  if (auto ok = store_.write(puts, next); !ok) return std::unexpected(ok.error());
  offsets_ = std::move(next);
  ++result.quarantined;
  result.changes = std::move(puts);
  return result;
}

std::expected<BatchResult, std::string> Projector::fold(std::span<const LogMessage> batch) {
  BatchResult result;
  auto view = store_.view();
  if (!caches_) caches_ = std::make_unique<Caches>();
  auto& devices = caches_->devices;
  auto& rejections = caches_->rejections;
  auto& alert_slots = caches_->alert_states;
  auto& watch_written = caches_->watch_written;
  std::set<std::pair<std::string, std::string>> watch_touched;  // (community, device)
  // A community's alert state, with its device directory loaded the first time it is needed.
  auto alert_state = [&](const std::string& community) -> CommunityAlerts& {
    const std::string key = alert_state_key(community);
    const bool cached = alert_slots.states.contains(key);
    auto& state = alert_slots.get(view, key, &alert_slot_from_json).state;
    if (!cached) {
      // Its episodes from their alert records, written with every change (the record has their ids).
      for (auto* episodes : {&state.active, &state.closed}) {
        for (auto& [_, a] : *episodes) {
          if (!a.rule.empty()) continue;  // a record written before (whole episodes)
          auto raw = view.get(alert_key(a.id));
          if (!raw) throw StoreReadError("the record of alert " + a.id + " is missing");
          a = alert_from_json(nlohmann::json::parse(*raw));
        }
      }
      const auto& clock = caches_->alert_clocks.get(view, alert_clock_key(community), &log_clock_from_json);
      state.now_ms = std::max(state.now_ms, clock.now_ms);  // max: a store from before the clock's own record
      const std::string prefix = watch_prefix(community);
      for (auto& [k, v] : view.scan(prefix, "", std::numeric_limits<std::size_t>::max())) {
        state.devices[k.substr(prefix.size())] = watched_device_from_json(nlohmann::json::parse(v));
        watch_written[k] = std::move(v);
      }
      // The passes, in key order: per gate by seq, the order they were granted in.
      const std::string granted = granted_prefix(community);
      auto& written = caches_->granted_written[community];
      for (auto& [k, v] : view.scan(granted, "", std::numeric_limits<std::size_t>::max())) {
        const auto slash = k.rfind('/');
        const std::string gate = k.substr(granted.size(), slash - granted.size());
        auto pass = granted_pass_from_json(nlohmann::json::parse(v));
        written[gate].push_back(pass.seq);
        state.granted[gate].push_back(std::move(pass));
      }
    }
    return state;
  };
  auto& meters = caches_->meters;
  auto& meter_totals = caches_->meter_totals;
  auto& gates = caches_->gates;
  auto& occupancy = caches_->occupancy;
  auto& homes = caches_->homes;
  auto& elders = caches_->elders;
  auto& commands = caches_->commands;
  auto& pending_commands = caches_->pending_commands;
  auto& notices = caches_->notices;
  auto& cameras = caches_->cameras;
  // Messages for devices, home panels and staff that this batch's commands and notices cause.
  std::vector<nlohmann::json> to_devices;
  // A command's record, when the command is known (acks and deliveries can name anything).
  auto command_of = [&](const std::string& id) -> CommandRecord* {
    const std::string key = command_key(id);
    if (!commands.states.contains(key) && !view.get(key)) return nullptr;
    return &commands.get(view, key, &command_record_from_json);
  };
  auto settle = [&](const CommandRecord& r) {
    if (!is_final(r)) return;
    pending_commands.get(view, pending_commands_key(r.community), &pending_commands_from_json).expires_at_ms.erase(r.id);
  };
  std::map<std::string, std::vector<std::string>> partitions;  // partition key -> communities seen there
  std::set<std::string> partitions_changed;
  std::vector<Alert> alerts;  // changed, in order
  struct RegistryChange {
    std::string community;
    schemas::RegistryEntry entry;
    std::int64_t at_ms;
  };
  std::vector<RegistryChange> registry;  // registry changes, in order
  auto communities_of = [&](const std::string& key) -> std::vector<std::string>& {
    auto it = partitions.find(key);
    if (it != partitions.end()) return it->second;
    auto raw = view.get(key);
    return partitions[key] = raw ? nlohmann::json::parse(*raw).get<std::vector<std::string>>() : std::vector<std::string>{};
  };
  auto fold_alerts = [&](const std::string& community, const schemas::Event& e) {
    auto& state = alert_state(community);
    if (!e.device.empty() && !std::holds_alternative<schemas::Tick>(e.body) &&
        !std::holds_alternative<schemas::OperatorAction>(e.body) && !std::holds_alternative<schemas::RegistryEntry>(e.body)) {
      watch_touched.emplace(community, e.device.str());
    }
    auto step = processors::apply(std::move(state), e, config_.rules.rules_for(community));
    state = std::move(step.state);
    for (auto& a : step.changed) alerts.push_back(std::move(a));
    return std::move(step.verdict);
  };
  // The community projections of one admitted device event; `device` is its devices state.
  auto fold_community = [&](const schemas::Event& e, const DeviceState& device) {
    const std::string id = e.device.str(), community = e.community.str();
    const auto& ctx = config_.context;
    if (const auto* r = std::get_if<schemas::MeterReading>(&e.body)) {
      auto& m = meters.get(view, meter_key(id), &meter_state_from_json);
      m.unit = device.unit;
      auto step = processors::apply(std::move(m), e, *r, ctx);
      m = std::move(step.state);
      if (step.consumed > 0) {
        auto& t = meter_totals.get(view, community_key(community, "meters"), &community_meters_from_json);
        t = add_consumption(std::move(t), m, day_key(e.device_time_ms, ctx.utc_offset_min), step.consumed);
      }
    } else if (const auto* p = std::get_if<schemas::GatePass>(&e.body)) {
      const auto& registry = alert_state(community);
      std::string kind = subject_kind(registry, p->subject, e.ingest_time_ms);
      auto& g = gates.get(view, gate_key(id), &gate_state_from_json);
      g.location = device.location;
      g = processors::apply(std::move(g), e, *p, config_.rules.rules_for(community).fever_c, kind, ctx);
      if (auto person = registry.people.find(p->subject); person != registry.people.end() && !person->second.unit.empty()) {
        auto& home = homes.get(view, home_key(community, person->second.unit), &home_state_from_json);
        home.community = community;
        home.unit = person->second.unit;
        home = processors::apply(std::move(home), *p);
      }
      auto& o = occupancy.get(view, community_key(community, "presence"), &occupancy_from_json);
      o = processors::apply(std::move(o), e, ctx);
    } else if (std::holds_alternative<schemas::VehiclePass>(e.body)) {
      auto& o = occupancy.get(view, community_key(community, "presence"), &occupancy_from_json);
      o = processors::apply(std::move(o), e, ctx);
    } else if (const auto* snapshot = std::get_if<schemas::CameraSnapshot>(&e.body)) {
      auto& c = cameras.get(view, camera_key(id), &camera_state_from_json);
      c.location = device.location;
      c = processors::apply(std::move(c), e, *snapshot);
    } else if (const auto* h = std::get_if<schemas::HomeSensor>(&e.body)) {
      if (device.unit.empty()) return;
      auto& home = homes.get(view, home_key(community, device.unit), &home_state_from_json);
      home.unit = device.unit;
      home = processors::apply(std::move(home), e, *h);
    } else if (std::holds_alternative<schemas::WearableVitals>(e.body) ||
               std::holds_alternative<schemas::WearableAlarm>(e.body)) {
      auto& elder = elders.get(view, elder_key(id), &elder_state_from_json);
      elder.unit = device.unit;
      elder = processors::apply(std::move(elder), e, ctx);
      elder.wellbeing = wellbeing(elder);
    }
  };
  // Alerts are also part of the household's, the wearer's and the device's picture.
  auto reflect_alert = [&](const Alert& a) {
    const bool open = a.state != "resolved";
    auto track = [&](std::map<std::string, std::string>& open_alerts) {
      if (open) open_alerts[a.id] = a.severity;
      else open_alerts.erase(a.id);
    };
    if (!a.unit.empty()) {
      auto& home = homes.get(view, home_key(a.community, a.unit), &home_state_from_json);
      home.community = a.community;
      home.unit = a.unit;
      track(home.open_alerts);
    }
    if (a.device.empty()) return;  // about a vehicle or a person, not a device
    auto& d = devices.get(view, device_key(a.device), &device_state_from_json);
    if (d.kind == "wearable") {
      auto& elder = elders.get(view, elder_key(a.device), &elder_state_from_json);
      elder.community = a.community;
      elder.unit = d.unit;
      track(elder.open_alerts);
      elder.wellbeing = wellbeing(elder);
    }
    if (a.rule == "offline") d.online = !open;
  };
  std::map<std::string, std::uint64_t> event_counts, rejection_counts;
  bool events_changed = false, rejections_changed = false;
  KeyValues quarantined;  // records of messages that did not decode
  std::set<std::string> chain_heads_changed;  // communities
  Offsets next = offsets_;

  for (const auto& m : batch) {
    auto tp = std::pair{m.topic, m.partition};
    if (auto it = next.find(tp); it != next.end() && m.offset < it->second) {
      ++result.replayed;
      continue;
    }
    next[tp] = m.offset + 1;
    if (m.topic == config_.topics.deadletter) {
      auto letter = dead_letter_of(m);
      std::string key = rejection_key(letter.device.empty() ? "_unknown" : letter.device);
      auto& state = rejections.get(view, key, &rejection_state_from_json);
      state = processors::apply(std::move(state), letter);
      if (!rejections_changed) rejection_counts = counts_of(view, kRejectionStatsKey);
      rejections_changed = true;
      ++rejection_counts[letter.reason];
      ++result.dead_letters;
      continue;
    }
    auto event = decode_logged(m.value);
    if (!event) {
      spdlog::error("{}[{}]@{} does not decode and is quarantined: {}", m.topic, m.partition, m.offset, event.error());
      ++result.corrupt;
      ++result.quarantined;
      quarantined.emplace_back(quarantine_key(m.topic, m.partition, m.offset),
                               quarantine_record(m, "does not decode: " + event.error()).dump());
      continue;
    }
    if (std::holds_alternative<schemas::Tick>(event->body)) {
      // The log's clock for every community of this partition: timers fire here.
      for (const auto& community : communities_of(partition_key(m.topic, m.partition))) {
        fold_alerts(community, *event);
        auto& pending = pending_commands.get(view, pending_commands_key(community), &pending_commands_from_json);
        for (auto it = pending.expires_at_ms.begin(); it != pending.expires_at_ms.end();) {
          if (it->second > event->ingest_time_ms) {
            ++it;
            continue;
          }
          if (auto* r = command_of(it->first)) expire(*r, event->ingest_time_ms);
          it = pending.expires_at_ms.erase(it);
        }
      }
      continue;
    }
    const std::string community = event->community.str();
    if (event->chain_seq > 0) {
      auto& head = caches_->chain_heads[community];
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
    if (std::holds_alternative<schemas::OperatorAction>(event->body)) {
      fold_alerts(community, *event);
      continue;
    }
    if (const auto* analysis = std::get_if<schemas::VisionAnalysis>(&event->body)) {
      auto verdict = fold_alerts(community, *event);
      auto& c = cameras.get(view, camera_key(event->device.str()), &camera_state_from_json);
      c.community = community;
      c = processors::apply(std::move(c), *analysis, verdict.value_or(SnapshotVerdict{}));
      continue;
    }
    if (const auto* c = std::get_if<schemas::Command>(&event->body)) {
      const std::string target_key = device_key(c->target.str());
      std::string unit;
      if (devices.states.contains(target_key) || view.get(target_key)) {
        unit = devices.get(view, target_key, &device_state_from_json).unit;
      }
      auto& r = commands.get(view, command_key(c->command_id), &command_record_from_json);
      if (!r.id.empty()) continue;  // the same command appended twice: the first one counts
      r = issue(*event, *c, unit);
      if (r.expires_at_ms) {
        pending_commands.get(view, pending_commands_key(community), &pending_commands_from_json)
            .expires_at_ms[r.id] = r.expires_at_ms;
      }
      to_devices.push_back({{"community", community}, {"device", r.target}, {"command", r.action},
                            {"command_id", r.id}, {"issued_at", r.issued_at_ms}, {"expires_at", r.expires_at_ms},
                            {"body", r.args.empty() ? nlohmann::json::object() : nlohmann::json::parse(r.args)}});
      continue;
    }
    if (const auto* d = std::get_if<schemas::CommandDelivered>(&event->body)) {
      if (auto* r = command_of(d->command_id)) deliver(*r, event->ingest_time_ms);
      continue;
    }
    if (const auto* n = std::get_if<schemas::Notice>(&event->body)) {
      auto record = notice_of(*event, *n);
      notices.get(view, notice_key(community, n->notice_id), &notice_record_from_json) = record;
      // A household's notice goes to that household's panels only (courtyard/v1/{c}/notices/{unit}).
      to_devices.push_back({{"community", community}, {"device", kNoticesTarget}, {"unit", n->unit}, {"command", "notice"},
                            {"issued_at", record.issued_at_ms}, {"body", to_json(record)}});
      continue;
    }
    if (const auto* entry = std::get_if<schemas::RegistryEntry>(&event->body)) {
      fold_alerts(community, *event);
      registry.push_back({community, *entry, event->ingest_time_ms});
      continue;
    }
    auto& state = devices.get(view, device_key(event->device.str()), &device_state_from_json);
    auto step = processors::apply(std::move(state), *event);
    state = std::move(step.state);
    if (step.admission == Admission::Fresh) {
      fold_alerts(community, *event);
      fold_community(*event, state);
      if (const auto* ack = std::get_if<schemas::CommandAck>(&event->body)) {
        if (auto* r = command_of(ack->command_id); r && answer(*r, *ack, event->device, event->ingest_time_ms)) settle(*r);
      }
    }
    if (step.admission == Admission::Fresh) {
      ++result.applied;
      result.fresh_device_times_ms.push_back(event->device_time_ms);
      if (!events_changed) event_counts = counts_of(view, kEventStatsKey);
      events_changed = true;
      ++event_counts[std::string(schemas::type_name(event->body))];
    } else {
      ++result.duplicates;
    }
  }

  for (const auto& a : alerts) reflect_alert(a);

  KeyValues puts;
  devices.put_changed(puts);
  rejections.put_changed(puts);
  for (const auto& key : alert_slots.touched) {
    const auto& state = alert_slots.states.at(key).state;
    caches_->alert_clocks.get(view, alert_clock_key(key.substr(std::string_view("alertstate/").size())),
                              &log_clock_from_json)
        .now_ms = state.now_ms;
  }
  std::vector<std::string> deletes;  // passes granted that expired
  for (const auto& key : alert_slots.touched) {
    const std::string community = key.substr(std::string_view("alertstate/").size());
    store_passes(community, alert_slots.states.at(key).state.granted, caches_->granted_written[community], puts, deletes);
  }
  alert_slots.put_changed(puts);
  caches_->alert_clocks.put_changed(puts);
  for (const auto& [community, device] : watch_touched) {
    const auto& devices_of = alert_state(community).devices;
    auto it = devices_of.find(device);
    if (it == devices_of.end()) continue;
    std::string key = watch_prefix(community) + device, record = to_json(it->second).dump();
    auto& before = watch_written[key];
    if (record == before) continue;
    before = record;
    puts.emplace_back(key, std::move(record));
  }
  meters.put_changed(puts);
  meter_totals.put_changed(puts);
  gates.put_changed(puts);
  // Presence (who is inside: tokens) is its own record; the occupancy record dashboards watch
  // carries the counts only, so a pass does not push the whole list to every subscriber.
  const std::size_t first_presence = puts.size();
  occupancy.put_changed(puts);
  std::vector<std::string> presence_changed;
  for (std::size_t i = first_presence; i < puts.size(); ++i) presence_changed.push_back(puts[i].first);
  for (const auto& key : presence_changed) {
    const std::string community = key.substr(12, key.size() - 12 - 9);  // communities/{c}/presence
    puts.emplace_back(community_key(community, "occupancy"), occupancy_summary(occupancy.states.at(key)).dump());
  }
  homes.put_changed(puts);
  elders.put_changed(puts);
  commands.put_changed(puts);
  pending_commands.put_changed(puts);
  notices.put_changed(puts);
  cameras.put_changed(puts);
  for (const auto& key : partitions_changed) puts.emplace_back(key, nlohmann::json(partitions[key]).dump());
  // The latest record of each changed alert; every change in order in the outbox, for the alerts
  // topic, and as commands to the household's devices and the community's staff.
  std::uint64_t outbox_next = outbox_next_;
  auto outbox = [&](const char* topic, const std::string& key, const std::string& value) {
    puts.emplace_back(outbox_key(outbox_next++), nlohmann::json{{"topic", topic}, {"key", key}, {"value", value}}.dump());
  };
  std::map<std::string, std::string> latest;
  for (const auto& a : alerts) {
    auto record = to_json(a).dump();
    latest[alert_key(a.id)] = record;
    outbox("alerts", a.id, record);
    const std::string& what = a.timeline.empty() ? std::string() : a.timeline.back().what;
    if (what == "updated") continue;  // a repeat of the same condition: nobody needs another push
    nlohmann::json body{{"alert_id", a.id}, {"rule", a.rule},   {"severity", a.severity}, {"state", a.state},
                        {"unit", a.unit},   {"location", a.location}, {"detail", a.detail}, {"change", what}};
    auto command = [&](const std::string& target) {
      outbox("commands", target,
             nlohmann::json{{"community", a.community}, {"device", target}, {"command", "alert"},
                            {"issued_at", a.updated_at_ms}, {"body", body}}
                 .dump());
    };
    command(kStaffTarget);
    if (a.unit.empty()) continue;
    const auto& state = alert_state(a.community);
    for (const auto& [device, d] : state.devices) {
      if (d.unit == a.unit) command(device);
    }
  }
  for (auto& [key, record] : latest) puts.emplace_back(key, std::move(record));
  for (const auto& message : to_devices) outbox("commands", message.value("device", ""), message.dump());
  // Registry changes: the registry projection, and access updates for the community's gates.
  for (const auto& [community, entry, at_ms] : registry) {
    auto record = schemas::body_to_json(schemas::Body{entry});
    record["community"] = community;
    puts.emplace_back(registry_key(community, std::string(schemas::to_string(entry.kind)), entry.id), record.dump());
    if (entry.kind == schemas::RegistryKind::Household) continue;
    const auto& state = alert_state(community);
    for (const auto& [device, d] : state.devices) {
      bool people_gate = d.kind == "gate" || d.kind == "door";
      bool vehicle_gate = d.kind == "vehicle_gate";
      if (!(entry.kind == schemas::RegistryKind::Person ? people_gate : vehicle_gate)) continue;
      auto body = record;
      body["allowed"] = !entry.removed;
      outbox("commands", device,
             nlohmann::json{{"community", community}, {"device", device}, {"command", "access_update"},
                            {"issued_at", at_ms}, {"body", body}}
                 .dump());
    }
  }
  if (outbox_next != outbox_next_) puts.emplace_back(kOutboxNextKey, std::to_string(outbox_next));
  result.alerts_changed = alerts.size();
  result.outbox_entries = outbox_next - outbox_next_;
  for (const auto& community : chain_heads_changed) {
    const auto& head = caches_->chain_heads.at(community);
    puts.emplace_back(chain_head_key(community),
                      nlohmann::json{{"seq", head.seq}, {"link", head.link}, {"event_id", head.event_id}}.dump());
  }
  for (auto& kv : quarantined) puts.push_back(std::move(kv));
  if (events_changed) puts.emplace_back(kEventStatsKey, nlohmann::json(event_counts).dump());
  if (rejections_changed) puts.emplace_back(kRejectionStatsKey, nlohmann::json(rejection_counts).dump());
  if (puts.empty() && deletes.empty() && next == offsets_) return result;
  if (auto ok = store_.write(puts, next, deletes); !ok) {
    caches_.reset();  // they hold this batch's states, which the store does not
    return std::unexpected(ok.error());
  }
  offsets_ = std::move(next);
  outbox_next_ = outbox_next;
  for (auto& kv : puts) {
    result.bytes_written += kv.first.size() + kv.second.size();
    if (is_projection_key(kv.first)) result.changes.push_back(std::move(kv));
  }
  caches_->evict(config_.cache_entries);
  return result;
}

const std::vector<std::string>& Projector::projection_prefixes() {
  static const std::vector<std::string> kServed = {"alerts/",  "cameras/",   "commands/", "communities/", "devices/",
                                                   "elders/",  "gates/",     "homes/",    "meters/",      "notices/",
                                                   "quarantine/", "registry/", "rejections/"};
  return kServed;
}

bool Projector::is_projection_key(std::string_view key) {
  for (const auto& prefix : projection_prefixes()) {
    if (key.starts_with(prefix)) return true;
  }
  return false;
}

}  // namespace courtyard::processors
