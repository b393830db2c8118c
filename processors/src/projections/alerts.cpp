#include "projections/alerts.h"

#include <limits>
#include <span>
#include <tuple>
#include <type_traits>

#include <fmt/format.h>

namespace courtyard::processors {
namespace {

constexpr std::string_view kStatePrefix = "alertstate/";
std::string clock_key(const std::string& community) { return "alertclock/" + community; }
std::string watch_prefix(const std::string& community) { return "watch/" + community + "/"; }

// A command for one device (or a staff target) of `community`, as ingest relays it to MQTT.
std::string device_command(const std::string& community, const std::string& device, const char* command,
                           std::int64_t issued_at, nlohmann::json body) {
  return nlohmann::json{{"community", community}, {"device", device}, {"command", command},
                        {"issued_at", issued_at}, {"body", std::move(body)}}
      .dump();
}

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

// The maps of a community's state that change entry by entry, each entry stored as a record of
// its own: alertpart/{community}/{map}/{entry key} (decision 0019).
constexpr auto kParts = std::tuple{
    std::pair{"unit_activity", &CommunityAlerts::unit_activity}, std::pair{"people", &CommunityAlerts::people},
    std::pair{"vehicles", &CommunityAlerts::vehicles},           std::pair{"vehicles_inside", &CommunityAlerts::vehicles_inside},
    std::pair{"denials", &CommunityAlerts::denials},             std::pair{"episodes", &CommunityAlerts::episodes},
    std::pair{"analysed", &CommunityAlerts::analysed},           std::pair{"tailgated", &CommunityAlerts::tailgated},
    std::pair{"rosters", &CommunityAlerts::rosters},             std::pair{"site", &CommunityAlerts::site}};
template <class F>
void for_each_part(F&& f) {
  std::apply([&](const auto&... part) { (f(part.first, part.second), ...); }, kParts);
}
std::string parts_prefix(const std::string& community) { return "alertpart/" + community + "/"; }

}  // namespace

// The community's record as stored: without the device directory (watch/, it changes with every
// event a device sends), the passes (granted/) and its clock (alertclock/: every tick moves it,
// so a tick that changes nothing else writes a number, not the whole record).
nlohmann::json to_json(const AlertsProjection::Slot& slot) {
  auto j = to_json(slot.state, /*whole=*/false);
  j.erase("now");
  return j;
}
nlohmann::json to_json(const AlertsProjection::Clock& clock) { return clock.now_ms; }
AlertsProjection::Slot AlertsProjection::slot_from_json(const nlohmann::json& j) { return {community_alerts_from_json(j)}; }
AlertsProjection::Clock AlertsProjection::clock_from_json(const nlohmann::json& j) { return {j.get<std::int64_t>()}; }

AlertsProjection::AlertsProjection() : states_(&slot_from_json), clocks_(&clock_from_json) {}

EventTypes AlertsProjection::types() const {
  return device_event_types() |
         types_of<schemas::Tick, schemas::OperatorAction, schemas::RegistryEntry, schemas::VisionAnalysis,
                  schemas::DutyRoster, schemas::SiteEntry>();
}

CommunityAlerts& AlertsProjection::state(Batch& batch, const std::string& community) {
  const auto& view = batch.view;
  const std::string key = Projector::alert_state_key(community);
  const bool cached = states_.contains(key);
  auto& state = states_.get(view, key).state;
  if (cached) return state;
  // Its episodes from their alert records, written with every change (the record has their ids).
  for (auto* episodes : {&state.active, &state.closed}) {
    for (auto& [_, a] : *episodes) {
      if (!a.rule.empty()) continue;  // a record written before (whole episodes)
      auto raw = view.get(Projector::alert_key(a.id));
      if (!raw) throw StoreReadError("the record of alert " + a.id + " is missing");
      a = alert_from_json(nlohmann::json::parse(*raw));
    }
  }
  const auto& clock = clocks_.get(view, clock_key(community));
  state.now_ms = std::max(state.now_ms, clock.now_ms);  // max: a store from before the clock's own record
  const std::string prefix = watch_prefix(community);
  for (auto& [k, v] : view.scan(prefix, "", std::numeric_limits<std::size_t>::max())) {
    state.devices[k.substr(prefix.size())] = watched_device_from_json(record_json(v));
    watch_written_[k] = std::move(v);
  }
  // Its maps' entries (a record written before them has its maps inside: `written` is then empty,
  // and the next write stores every entry).
  const std::string parts = parts_prefix(community);
  auto& parts_written = parts_written_[community];
  for (auto& [k, v] : view.scan(parts, "", std::numeric_limits<std::size_t>::max())) {
    const auto slash = k.find('/', parts.size());
    if (slash == std::string::npos) continue;
    const std::string_view field = std::string_view(k).substr(parts.size(), slash - parts.size());
    const std::string entry = k.substr(slash + 1);
    for_each_part([&](std::string_view name, auto member) {
      if (name != field) return;
      auto value = nlohmann::json::parse(v).get<typename std::remove_reference_t<decltype(state.*member)>::mapped_type>();
      (parts_written.*member)[entry] = value;
      (state.*member)[entry] = std::move(value);
    });
  }
  // The passes, in key order: per gate by seq, the order they were granted in.
  const std::string granted = granted_prefix(community);
  auto& written = granted_written_[community];
  for (auto& [k, v] : view.scan(granted, "", std::numeric_limits<std::size_t>::max())) {
    const auto slash = k.rfind('/');
    const std::string gate = k.substr(granted.size(), slash - granted.size());
    auto pass = granted_pass_from_json(nlohmann::json::parse(v));
    written[gate].push_back(pass.seq);
    state.granted[gate].push_back(std::move(pass));
  }
  return state;
}

Folded AlertsProjection::fold(Batch& batch, const schemas::Event& event, const std::string& community) {
  auto& state = this->state(batch, community);
  if (!event.device.empty() && !std::holds_alternative<schemas::Tick>(event.body) &&
      !std::holds_alternative<schemas::OperatorAction>(event.body) &&
      !std::holds_alternative<schemas::RegistryEntry>(event.body) && !std::holds_alternative<schemas::DutyRoster>(event.body) &&
      !std::holds_alternative<schemas::SiteEntry>(event.body)) {
    watch_touched_.emplace(community, event.device.str());
  }
  auto step = apply(std::move(state), event, batch.config.rules.rules_for(community), batch.config.context.utc_offset_min);
  state = std::move(step.state);
  for (auto& a : step.changed) batch.alerts.push_back(std::move(a));
  for (auto& n : step.notifications) {
    // A staff member who carries a handheld (a device of kind handheld whose id is their person
    // token) is paged on it: a command on its own topic, which no other device may read.
    if (n.to == "staff") {
      auto handheld = state.devices.find(n.staff);
      if (handheld != state.devices.end() && handheld->second.kind == "handheld") {
        batch.send(community, "commands", n.staff, device_command(community, n.staff, "notification", n.at_ms, to_json(n)));
      }
    }
    batch.notifications.push_back(std::move(n));
  }
  verdict_ = step.verdict.value_or(SnapshotVerdict{});
  return Folded::Done;
}

void AlertsProjection::write(Batch& batch) {
  const auto& view = batch.view;
  states_.for_each_touched([&](const std::string& key, Slot& slot) {
    const std::string community = key.substr(kStatePrefix.size());
    clocks_.get(view, clock_key(community)).now_ms = slot.state.now_ms;
    store_passes(community, slot.state.granted, granted_written_[community], batch.puts, batch.deletes);
    auto& written = parts_written_[community];
    for_each_part([&](std::string_view name, auto member) {
      store_entries(parts_prefix(community) + std::string(name) + "/", slot.state.*member, written.*member, batch.puts,
                    batch.deletes);
    });
  });
  states_.put_changed(batch.puts);
  clocks_.put_changed(batch.puts);
  for (const auto& [community, device] : watch_touched_) {
    const auto& devices = state(batch, community).devices;
    auto it = devices.find(device);
    if (it == devices.end()) continue;
    std::string key = watch_prefix(community) + device, record = to_record(it->second);  // binary (decision 0022)
    auto& before = watch_written_[key];
    if (record == before) continue;
    before = record;
    batch.puts.emplace_back(key, std::move(record));
  }
  watch_touched_.clear();
  // The latest record of each changed alert; every change in order in the outbox, for the alerts
  // topic, and as commands to the household's devices and the community's staff.
  std::map<std::string, std::string> latest;
  for (const auto& a : batch.alerts) {
    auto record = to_json(a).dump();
    latest[Projector::alert_key(a.id)] = record;
    batch.send(a.community, "alerts", a.id, record);
    const std::string& what = a.timeline.empty() ? std::string() : a.timeline.back().what;
    if (what == "updated") continue;  // a repeat of the same condition: nobody needs another push
    nlohmann::json body{{"alert_id", a.id}, {"rule", a.rule},   {"severity", a.severity}, {"state", a.state},
                        {"unit", a.unit},   {"location", a.location}, {"detail", a.detail}, {"change", what}};
    auto command = [&](const std::string& target) {
      batch.send(a.community, "commands", target, device_command(a.community, target, "alert", a.updated_at_ms, body));
    };
    command(Projector::kStaffTarget);
    if (a.unit.empty()) continue;
    for (const auto& [device, d] : state(batch, a.community).devices) {
      if (d.unit == a.unit) command(device);
    }
  }
  for (auto& [key, record] : latest) batch.puts.emplace_back(key, std::move(record));
}

// A community's state leaves with its clock, its device directory and its passes.
void AlertsProjection::evict(std::size_t limit) {
  for (const auto& key : states_.evict(limit)) {
    const std::string community = key.substr(kStatePrefix.size());
    clocks_.forget(clock_key(community));
    const std::string prefix = watch_prefix(community);
    watch_written_.erase(watch_written_.lower_bound(prefix), watch_written_.lower_bound(prefix + '\xff'));
    granted_written_.erase(community);
    parts_written_.erase(community);
  }
  clocks_.evict(std::numeric_limits<std::size_t>::max());  // the batch count only: they leave with their community
}

std::unique_ptr<Projection> make_alerts(Projections&) { return std::make_unique<AlertsProjection>(); }

}  // namespace courtyard::processors
