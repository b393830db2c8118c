#include "processors/alerts_fold.h"

#include "record_writer.h"

#include <utility>

#include <fmt/format.h>

namespace courtyard::processors {
namespace {

using namespace schemas;
constexpr std::size_t kMaxTimeline = 50;
// Invitations past their end, and vehicles inside that no rule watches, are forgotten this long after.
constexpr std::int64_t kForgetFinishedMs = 86'400'000;

bool one_of(const std::string& s, std::initializer_list<const char*> values) {
  for (const char* v : values) {
    if (s == v) return true;
  }
  return false;
}

class Rules {
 public:
  Rules(CommunityAlerts& s, const AlertRules& r, std::vector<Alert>& changed, std::string community, int utc_offset_min)
      : s_(s), r_(r), changed_(changed), community_(std::move(community)), utc_offset_min_(utc_offset_min) {}

  std::vector<Notification> notifications;  // decided so far

  // Opens an episode, reopens one closed within the flap window, or updates the open one.
  void trigger(const std::string& rule, const std::string& subject, const std::string& severity,
               const std::string& device, const std::string& detail, std::int64_t escalate_at = 0) {
    const std::string key = rule + "|" + subject;
    if (auto it = s_.active.find(key); it != s_.active.end()) {
      Alert& a = it->second;
      ++a.occurrences;
      a.updated_at_ms = s_.now_ms;
      if (a.detail != detail) add(a, "updated", "rule", detail);
      a.detail = detail;
      changed(a);
      return;
    }
    Alert a;
    if (auto closed = s_.closed.find(key);
        closed != s_.closed.end() && s_.now_ms - closed->second.resolved_at_ms < r_.flap_window_ms) {
      a = std::move(closed->second);
      s_.closed.erase(closed);
      a.state = "open";
      a.resolved_at_ms = 0;
      a.acknowledged_at_ms = 0;  // a new episode of the same alert: nobody has answered it yet
      a.assignee.clear();
      a.assignee_role.clear();
      a.chain_step = 0;
      a.response.clear();
      a.arrived_at_ms = 0;
      ++a.occurrences;
      a.severity = severity;
      a.detail = detail;
      add(a, "reopened", "rule", detail);
      dispatch(a, 0, "");
    } else {
      a.id = fmt::format("{}:{}:{}:{}", community_, rule, subject, ++s_.episodes[key]);
      a.rule = rule;
      a.subject = subject;
      a.community = community_;
      a.device = device;
      if (auto d = s_.devices.find(device); d != s_.devices.end()) {
        a.unit = d->second.unit;
        a.location = d->second.location;
      }
      a.state = "open";
      a.opened_at_ms = s_.now_ms;
      a.occurrences = 1;
      a.severity = severity;
      a.detail = detail;
      add(a, "opened", "rule", detail);
      dispatch(a, 0, "");
    }
    a.severity = severity;
    a.detail = detail;
    a.updated_at_ms = s_.now_ms;
    a.escalate_at_ms = escalate_at ? escalate_at : severity == "critical" ? s_.now_ms + r_.critical_ack_timeout_ms : 0;
    changed(s_.active[key] = std::move(a));
  }

  void resolve(const std::string& rule, const std::string& subject, const std::string& by, const std::string& note) {
    auto it = s_.active.find(rule + "|" + subject);
    if (it != s_.active.end()) close(it, by, note);
  }

  // The snapshot that shows an alert (camera rules), on its record.
  void attach_snapshot(const std::string& rule, const std::string& subject, std::uint64_t snapshot_id) {
    auto it = s_.active.find(rule + "|" + subject);
    if (it == s_.active.end()) return;
    it->second.snapshot_id = snapshot_id;
    changed(it->second);
  }

  bool active(const std::string& rule, const std::string& subject) const {
    return s_.active.contains(rule + "|" + subject);
  }

  bool closed_within(const std::string& rule, const std::string& subject, std::int64_t window) const {
    auto it = s_.closed.find(rule + "|" + subject);
    return it != s_.closed.end() && s_.now_ms - it->second.resolved_at_ms < window;
  }

  void operator_action(const OperatorAction& action) {
    for (auto it = s_.active.begin(); it != s_.active.end(); ++it) {
      if (it->second.id != action.alert_id) continue;
      if (action.action == AlertAction::Resolve) return close(it, action.actor, action.note);
      Alert& a = it->second;
      switch (action.action) {
        case AlertAction::OnMyWay: return respond(a, "on_my_way", action.actor, action.note);
        case AlertAction::Arrived: return respond(a, "arrived", action.actor, action.note);
        case AlertAction::HandedOver: return respond(a, "handed_over", action.actor, action.note);
        case AlertAction::Reassign: return reassign(a, action.to, action.actor, action.note);
        default: break;
      }
      if (action.action == AlertAction::Hush) {
        if (a.rule != "smoke" && a.rule != "gas") return;  // only alarms with a sounder can be hushed
        a.hushed_until_ms = s_.now_ms + r_.hush_ms;
        a.updated_at_ms = s_.now_ms;
        add(a, "hushed", action.actor, fmt::format("quiet for {} min", r_.hush_ms / 60'000));
        changed(a);
        return;
      }
      if (action.role == "resident") {
        // The household has seen it: the alert says so, but staff dispatch goes on until staff answer.
        if (a.state == "acknowledged") return;
        a.state = "acknowledged";
        a.updated_at_ms = s_.now_ms;
        if (a.rule != "fall") a.escalate_at_ms = 0;
        add(a, "acknowledged", action.actor, action.note.empty() ? "by the household" : action.note);
        changed(a);
        return;
      }
      if (a.acknowledged_at_ms) return;  // idempotent
      acknowledge(a);
      add(a, "acknowledged", action.actor, action.note);
      changed(a);
      return;
    }
  }

  // A responder's progress: on my way, arrived, handed over, in that order (a step back or a
  // repeat changes nothing). Each acknowledges an alert not acknowledged yet.
  void respond(Alert& a, const char* what, const std::string& by, const std::string& note) {
    auto rank = [](const std::string& r) { return r == "on_my_way" ? 1 : r == "arrived" ? 2 : r == "handed_over" ? 3 : 0; };
    if (rank(what) <= rank(a.response)) return;
    if (!a.acknowledged_at_ms) acknowledge(a);
    a.response = what;
    if (a.response == "arrived" || (a.response == "handed_over" && a.arrived_at_ms == 0)) a.arrived_at_ms = s_.now_ms;
    a.updated_at_ms = s_.now_ms;
    add(a, what, by, note);
    changed(a);
  }

  // Arrival inferred: the assignee's own pass at the alert's device, a door of its unit or a gate
  // of its building.
  void staff_passed(const std::string& token, const std::string& gate, const std::string& gate_unit) {
    if (s_.rosters.empty()) return;  // nobody is dispatched: every pass costs nothing more
    for (auto& [_, a] : s_.active) {
      if (a.assignee != token || a.response == "arrived" || a.response == "handed_over") continue;
      if (reaches(s_.site, gate, gate_unit, a.building, a.unit, a.device)) respond(a, "arrived", "gate", "pass at " + gate);
    }
  }

  void reassign(Alert& a, const std::string& to, const std::string& by, const std::string& note) {
    if (!valid_id(to) || to == a.assignee) return;
    const std::string relieved = std::exchange(a.assignee, to);
    a.assigned_at_ms = s_.now_ms;
    a.response.clear();
    a.dispatch_at_ms = a.acknowledged_at_ms ? 0 : ack_deadline(a);
    a.updated_at_ms = s_.now_ms;
    add(a, "reassigned", by, note.empty() ? to : to + ": " + note, relieved);
    changed(a);
  }
  // Timers: escalations, silent devices, doors left open, and forgetting old closed episodes.
  void tick() {
    for (auto& [key, a] : s_.active) {
      if (a.hushed_until_ms && s_.now_ms >= a.hushed_until_ms) {  // still alarming after the hush
        a.hushed_until_ms = 0;
        a.updated_at_ms = s_.now_ms;
        add(a, "hush_ended", "rule", "still alarming");
        changed(a);
      }
      if (a.dispatch_at_ms && s_.now_ms >= a.dispatch_at_ms) {  // the one told did not acknowledge in time
        const std::int64_t waited = (a.dispatch_at_ms - a.assigned_at_ms) / 1000;
        a.dispatch_at_ms = 0;
        a.updated_at_ms = s_.now_ms;
        dispatch(a, static_cast<std::size_t>(a.chain_step) + 1,
                 fmt::format("{} did not acknowledge within {} s", a.assignee, waited));
        changed(a);
      }
      if (a.escalate_at_ms == 0 || s_.now_ms < a.escalate_at_ms) continue;
      a.escalate_at_ms = 0;
      a.updated_at_ms = s_.now_ms;
      if (a.rule == "fall" && a.severity != "critical") {
        a.severity = "critical";
        if (a.state == "open") a.state = "escalated";
        add(a, "escalated", "rule", fmt::format("not cancelled within {} s", r_.fall_escalate_ms / 1000));
      } else if (a.state == "open") {
        a.state = "escalated";
        add(a, "escalated", "rule", fmt::format("not acknowledged within {} s", r_.critical_ack_timeout_ms / 1000));
      }
      changed(a);
    }
    for (const auto& [plate, entered] : s_.vehicles_inside) {
      auto v = s_.vehicles.find(plate);
      if (v != s_.vehicles.end() && v->second.allowance_s > 0 && s_.now_ms - entered > v->second.allowance_s * 1000 &&
          !active("vehicle_overstay", plate)) {
        trigger("vehicle_overstay", plate, "minor", "",
                fmt::format("inside for {} min, {} min allowed", (s_.now_ms - entered) / 60'000, v->second.allowance_s / 60));
      }
    }
    for (const auto& [id, d] : s_.devices) {
      auto interval = r_.heartbeat_ms.find(d.kind);
      if (interval != r_.heartbeat_ms.end() && interval->second > 0 && d.last_seen_ms > 0 &&
          s_.now_ms - d.last_seen_ms > r_.offline_missed_heartbeats * interval->second && !active("offline", id)) {
        trigger("offline", id, "major", id, fmt::format("no traffic for {} s", (s_.now_ms - d.last_seen_ms) / 1000));
      }
      if (d.kind == "wearable" && d.removed_since_ms > 0 && s_.now_ms - d.removed_since_ms > r_.watch_removed_ms &&
          !active("watch_removed", id)) {
        auto home = s_.unit_activity.find(d.unit);
        bool quiet = home == s_.unit_activity.end() || home->second <= d.removed_since_ms;
        if (quiet) {
          trigger("watch_removed", id, "major", id,
                  fmt::format("watch off for {} min and no movement at home", (s_.now_ms - d.removed_since_ms) / 60'000));
        }
      }
      if (d.kind == "wearable" && !d.unit.empty()) {
        auto activity = s_.unit_activity.find(d.unit);
        if (activity != s_.unit_activity.end() && s_.now_ms - activity->second > r_.inactivity_ms &&
            !active("inactivity", id)) {
          trigger("inactivity", id, "major", id,
                  fmt::format("no movement, door or water use for {} h", (s_.now_ms - activity->second) / 3'600'000));
        }
      }
      if (d.door_open_since_ms > 0 && s_.now_ms - d.door_open_since_ms > r_.door_open_limit_ms &&
          !active("door_open", id)) {
        trigger("door_open", id, "minor", id, fmt::format("open for {} s", (s_.now_ms - d.door_open_since_ms) / 1000));
      }
    }
    const std::int64_t keep = std::max(r_.flap_window_ms, r_.low_battery_repeat_ms);
    std::erase_if(s_.closed, [&](const auto& kv) { return s_.now_ms - kv.second.resolved_at_ms > keep; });
    // What is finished leaves the state, or it would grow with every visitor the compound ever
    // had: invitations a day past their end, and vehicles inside that no rule watches (no
    // allowance) a day after they entered.
    auto expired = [&](const auto& kv) {
      return kv.second.valid_to_ms > 0 && s_.now_ms - kv.second.valid_to_ms > kForgetFinishedMs;
    };
    std::erase_if(s_.people, expired);
    std::erase_if(s_.vehicles, expired);
    std::erase_if(s_.vehicles_inside, [&](const auto& kv) {
      auto v = s_.vehicles.find(kv.first);
      return (v == s_.vehicles.end() || v->second.allowance_s <= 0) && s_.now_ms - kv.second > kForgetFinishedMs;
    });
  }

 private:
  void close(std::map<std::string, Alert>::iterator it, const std::string& by, const std::string& note) {
    Alert a = std::move(it->second);
    s_.active.erase(it);
    a.state = "resolved";
    a.resolved_at_ms = s_.now_ms;
    a.updated_at_ms = s_.now_ms;
    a.escalate_at_ms = 0;
    a.dispatch_at_ms = 0;
    add(a, "resolved", by, note);
    changed(a);
    s_.closed[a.rule + "|" + a.subject] = std::move(a);
  }

  void acknowledge(Alert& a) {
    a.state = "acknowledged";
    a.acknowledged_at_ms = s_.now_ms;
    a.updated_at_ms = s_.now_ms;
    a.dispatch_at_ms = 0;
    if (a.rule != "fall") a.escalate_at_ms = 0;  // a fall still turns critical if the wearer never cancels
  }

  std::int64_t ack_deadline(const Alert& a) const {
    auto target = r_.dispatch.ack_target_ms.find(a.severity);
    return target == r_.dispatch.ack_target_ms.end() || target->second <= 0 ? 0 : s_.now_ms + target->second;
  }

  // Tells the one on duty for the first role of the rule's chain, from step `from` on, that has
  // someone on duty in the alert's grid. A community without rosters does not dispatch.
  void dispatch(Alert& a, std::size_t from, const std::string& why) {
    if (s_.rosters.empty()) return;
    if (from == 0) {
      auto place = place_of(s_.site, a.unit, a.device);
      a.building = std::move(place.building);
      a.grid = std::move(place.grid);
    }
    const auto chain = chain_for(r_.dispatch, a.rule);
    auto next = assign(s_.rosters, chain, from, a.grid, s_.now_ms, utc_offset_min_);
    if (!next) {
      a.dispatch_at_ms = 0;
      if (from == 0) add(a, "unassigned", "dispatch", "nobody on duty for " + chain.front());
      else add(a, "unanswered", "dispatch", why + "; nobody further in the chain is on duty");
      return;
    }
    const std::string relieved = from > 0 ? a.assignee : std::string();
    a.assignee = next->staff;
    a.assignee_role = next->role;
    a.chain_step = static_cast<int>(next->step);
    a.assigned_at_ms = s_.now_ms;
    a.response.clear();
    a.dispatch_at_ms = ack_deadline(a);
    const std::string who = next->role + " " + next->staff;
    if (from == 0) add(a, "assigned", "dispatch", who);
    else add(a, "escalated", "dispatch", why + "; now " + who, relieved);
  }

  // `relieved`: the assignee this step took the alert from ("" none).
  void add(Alert& a, const char* what, const std::string& by, const std::string& note, const std::string& relieved = {}) {
    if (a.timeline.size() >= kMaxTimeline) a.timeline.erase(a.timeline.begin() + 1);  // keep "opened"
    a.timeline.push_back({s_.now_ms, what, by, note});
    notify(a, what, by, relieved);
  }

  // Who is told of this step: the assignee when it comes to them, and the one it was taken from
  // (relieved: stand down), and the assignee when it is resolved; an elder's family when the
  // alert opens, when staff are assigned and arrive, and when it is resolved.
  void notify(Alert& a, std::string_view what, const std::string& by, const std::string& relieved) {
    auto tell = [&](const char* to, std::string staff, const char* told) {
      Notification n;
      n.id = fmt::format("{}~{}", a.id, ++a.notified);
      n.alert_id = a.id;
      n.community = a.community;
      n.rule = a.rule;
      n.severity = a.severity;
      n.unit = a.unit;
      n.device = a.device;
      n.location = a.location;
      n.detail = a.detail;
      n.to = to;
      n.staff = std::move(staff);
      n.what = told;
      n.at_ms = s_.now_ms;
      notifications.push_back(std::move(n));
    };
    if (what == "assigned" || what == "reassigned" || (what == "escalated" && by == "dispatch")) {
      tell("staff", a.assignee, what == "assigned" ? "assigned" : what == "reassigned" ? "reassigned" : "escalated");
      if (!relieved.empty() && relieved != a.assignee) tell("staff", relieved, "relieved");
    }
    if (what == "resolved" && !a.assignee.empty()) tell("staff", a.assignee, "resolved");
    if (!family_rule(a.rule) || a.unit.empty()) return;
    if (what == "opened") tell("family", "", "alert");  // a reopened one (within the flap window) is not news
    else if (what == "assigned") tell("family", "", "staff_assigned");
    else if (what == "arrived") tell("family", "", "staff_arrived");
    else if (what == "resolved") tell("family", "", "resolved");
  }

  void changed(const Alert& a) {
    for (auto& c : changed_) {
      if (c.id == a.id) {
        c = a;
        return;
      }
    }
    changed_.push_back(a);
  }

  CommunityAlerts& s_;
  const AlertRules& r_;
  std::vector<Alert>& changed_;
  std::string community_;
  int utc_offset_min_ = 0;
};

std::string where(const WatchedDevice* d) { return d && !d->location.empty() ? " at " + d->location : ""; }

// A sign of life in a household: clears the inactivity alert of every wearer who lives there.
void household_active(CommunityAlerts& s, Rules& rules, const std::string& unit) {
  if (unit.empty()) return;
  s.unit_activity[unit] = s.now_ms;
  for (const auto& [id, d] : s.devices) {
    if (d.kind == "wearable" && d.unit == unit && rules.active("inactivity", id)) {
      rules.resolve("inactivity", id, "device", "activity at home");
    }
  }
}

void vitals_rules(CommunityAlerts& s, Rules& rules, const AlertRules& r, const std::string& device, WatchedDevice& d,
                  const WearableVitals& v) {
  if (d.removed_since_ms) {  // vitals again: the watch is back on
    d.removed_since_ms = 0;
    rules.resolve("watch_removed", device, "device", "worn again");
  }
  if (v.spo2_pct) {
    if (*v.spo2_pct <= r.spo2_critical_pct) {
      rules.trigger("spo2_low", device, "critical", device, fmt::format("SpO2 {:.0f}%", *v.spo2_pct));
    } else if (*v.spo2_pct <= r.spo2_major_pct) {
      if (d.spo2_low_since_ms == 0) d.spo2_low_since_ms = s.now_ms;
      if (s.now_ms - d.spo2_low_since_ms >= r.spo2_sustain_ms) {
        rules.trigger("spo2_low", device, "major", device,
                      fmt::format("SpO2 {:.0f}% for {} min", *v.spo2_pct, (s.now_ms - d.spo2_low_since_ms) / 60'000));
      }
    } else {
      d.spo2_low_since_ms = 0;
    }
  }
  if (v.heart_rate_bpm) {
    const bool still = !(v.moving && *v.moving);
    if (*v.heart_rate_bpm > r.heart_rate_limit_bpm && still) {
      if (d.hr_high_since_ms == 0) d.hr_high_since_ms = s.now_ms;
      if (s.now_ms - d.hr_high_since_ms >= r.heart_rate_sustain_ms) {
        rules.trigger("heart_rate_high", device, "major", device,
                      fmt::format("heart rate {:.0f} bpm at rest for {} min", *v.heart_rate_bpm,
                                  (s.now_ms - d.hr_high_since_ms) / 60'000));
      }
    } else {
      d.hr_high_since_ms = 0;
    }
  }
}

// Water used in every one of the last 24 hours is a suspected leak; a consumption rate far above
// the meter's own baseline is a spike. Readings are placed by their device time.
void meter_rules(CommunityAlerts& s, Rules& rules, const AlertRules& r, const std::string& device, WatchedDevice& d,
                 const MeterReading& m, std::int64_t reading_ms) {
  const bool first = d.last_total < 0;
  const bool older = !first && reading_ms <= d.last_reading_ms;
  if (older) return;
  double used = first ? 0 : m.total >= d.last_total ? m.total - d.last_total : m.total;
  double hours = first ? 0 : static_cast<double>(reading_ms - d.last_reading_ms) / 3'600'000.0;
  d.last_total = m.total;
  d.last_reading_ms = reading_ms;
  if (first) return;
  if (m.kind == MeterKind::Water && used > 0) {
    household_active(s, rules, d.unit);
    std::int64_t hour = reading_ms / 3'600'000;
    std::int64_t shift = hour - d.flow_hour;
    d.flow_mask = shift >= 32 ? 0u : shift > 0 ? d.flow_mask << shift : d.flow_mask;
    if (shift > 0) d.flow_hour = hour;
    d.flow_mask |= 1u;
    if ((d.flow_mask & 0xFFFFFFu) == 0xFFFFFFu) {
      rules.trigger("continuous_flow", device, "major", device, "water used in every hour of the last 24: suspected leak");
    }
  }
  // Rates over windows of at least a quarter of an hour: readings seconds apart say nothing.
  if (d.rate_window_start_ms == 0) d.rate_window_start_ms = reading_ms - static_cast<std::int64_t>(hours * 3'600'000);
  d.rate_window_used += used;
  hours = static_cast<double>(reading_ms - d.rate_window_start_ms) / 3'600'000.0;
  if (hours >= 0.25) {
    double rate = d.rate_window_used / hours;
    d.rate_window_start_ms = reading_ms;
    d.rate_window_used = 0;
    if (d.rate_samples >= r.spike_min_samples && d.rate_baseline > 0 && rate > r.spike_multiple * d.rate_baseline) {
      rules.trigger("consumption_spike", device, "minor", device,
                    fmt::format("{:.2f} {}/h, {:.1f}x its usual", rate, m.unit, rate / d.rate_baseline));
    }
    d.rate_baseline = d.rate_samples == 0 ? rate : 0.9 * d.rate_baseline + 0.1 * rate;
    ++d.rate_samples;
  }
}

// Passes granted at a gate are kept as long as a snapshot may still be matched with them.
void remember_pass(CommunityAlerts& s, const AlertRules& r, const std::string& gate, std::uint64_t event_id,
                   std::string plate) {
  auto& passes = s.granted[gate];
  passes.push_back({s.now_ms, event_id, std::move(plate), ++s.passes_remembered});
  const std::int64_t keep = 2 * std::max(r.tailgate_window_ms, r.plate_window_ms);
  std::erase_if(passes, [&](const GrantedPass& p) { return s.now_ms - p.at_ms > keep; });
}

SnapshotVerdict judge(const CommunityAlerts& s, const VisionAnalysis& a, const AlertRules& r) {
  SnapshotVerdict v;
  if (!a.error.empty()) return {"unreadable", {}, a.error};
  auto gate = s.devices.find(a.gate);
  if (gate == s.devices.end()) return {"unknown_gate", {}, "gate " + a.gate + " is not registered"};
  const bool vehicles = gate->second.kind == "vehicle_gate";
  const std::int64_t before = vehicles ? r.plate_window_ms : r.tailgate_window_ms;
  std::vector<const GrantedPass*> passes;
  if (auto it = s.granted.find(a.gate); it != s.granted.end()) {
    for (const auto& p : it->second) {
      if (p.at_ms >= a.snapshot_time_ms - before && p.at_ms <= a.snapshot_time_ms + r.snapshot_grace_ms) passes.push_back(&p);
    }
  }
  if (vehicles) {
    if (passes.empty()) return {"no_pass", {}, "no vehicle let in just before"};
    const GrantedPass& last = *passes.back();
    v.passes = {last.event_id};
    if (a.plate_token.empty() || a.plate_confidence < r.plate_min_confidence) {
      v.verdict = "plate_unread";
      v.detail = a.plate_token.empty() ? "no plate legible" : fmt::format("plate read with {:.0f}% confidence only", a.plate_confidence * 100);
    } else if (a.plate_token != last.plate) {
      v.verdict = "plate_mismatch";
      v.detail = fmt::format("camera read {} ({:.0f}%), the gate let in {}", a.plate_token, a.plate_confidence * 100, last.plate);
    } else {
      v.verdict = "ok";
      v.detail = "plate matches the pass";
    }
    return v;
  }
  for (const auto* p : passes) v.passes.push_back(p->event_id);
  if (passes.empty()) {
    v.verdict = "no_pass";
    v.detail = fmt::format("{} face(s), the gate let nobody in", a.faces);
  } else if (a.faces > passes.size()) {
    v.verdict = "tailgating";
    v.detail = fmt::format("{} people, {} pass(es) granted", a.faces, passes.size());
  } else {
    v.verdict = "ok";
    v.detail = fmt::format("{} face(s), {} pass(es) granted", a.faces, passes.size());
  }
  return v;
}

// A snapshot's analysis: judged once (a repeat of the same snapshot is ignored), alerts raised
// once per passage (another snapshot of the same passage adds nothing).
SnapshotVerdict camera_rules(CommunityAlerts& s, Rules& rules, const AlertRules& r, const std::string& camera,
                             const VisionAnalysis& a) {
  auto& seen = s.analysed[camera];
  if (std::find(seen.begin(), seen.end(), a.snapshot_id) != seen.end()) return {"repeat", {}, "analysed before"};
  seen.push_back(a.snapshot_id);
  if (seen.size() > 64) seen.erase(seen.begin());
  SnapshotVerdict v = judge(s, a, r);
  const auto* gate = s.devices.contains(a.gate) ? &s.devices.at(a.gate) : nullptr;
  if (v.verdict == "tailgating") {
    auto& covered = s.tailgated[a.gate];
    if (v.passes.back() != covered) {
      covered = v.passes.back();
      rules.trigger("tailgating", a.gate, "major", a.gate, v.detail + where(gate));
      rules.attach_snapshot("tailgating", a.gate, a.snapshot_id);
    }
  } else if (v.verdict == "plate_mismatch") {
    rules.trigger("plate_mismatch", a.gate, "major", a.gate, v.detail + where(gate));
    rules.attach_snapshot("plate_mismatch", a.gate, a.snapshot_id);
  }
  return v;
}

}  // namespace

AlertStep apply(CommunityAlerts s, const schemas::Event& e, const AlertRules& r, int utc_offset_min) {
  std::vector<Alert> changed;
  s.now_ms = std::max(s.now_ms, e.ingest_time_ms);
  if (s.community.empty()) s.community = e.community.str();
  Rules rules(s, r, changed, s.community, utc_offset_min);
  const std::string device = e.device.str();

  if (std::holds_alternative<Tick>(e.body)) {
    rules.tick();
    return {std::move(s), std::move(changed), {}, std::move(rules.notifications)};
  }
  if (const auto* action = std::get_if<OperatorAction>(&e.body)) {
    rules.operator_action(*action);
    return {std::move(s), std::move(changed), {}, std::move(rules.notifications)};
  }
  if (const auto* analysis = std::get_if<VisionAnalysis>(&e.body)) {
    auto verdict = camera_rules(s, rules, r, device, *analysis);
    return {std::move(s), std::move(changed), std::move(verdict), std::move(rules.notifications)};
  }
  if (const auto* entry = std::get_if<RegistryEntry>(&e.body)) {
    auto& book = entry->kind == RegistryKind::Vehicle ? s.vehicles : s.people;
    if (entry->kind == RegistryKind::Household) return {std::move(s), std::move(changed), {}, std::move(rules.notifications)};
    if (entry->removed) {
      book.erase(entry->id);
    } else {
      (entry->kind == RegistryKind::Vehicle ? s.vehicles_registered : s.people_registered) = true;
      book[entry->id] = {entry->kind == RegistryKind::Vehicle ? "vehicle" : std::string(to_string(entry->role)),
                         entry->unit, entry->valid_from_ms, entry->valid_to_ms, entry->allowance_s};
    }
    return {std::move(s), std::move(changed), {}, std::move(rules.notifications)};
  }
  if (const auto* roster = std::get_if<DutyRoster>(&e.body)) {
    if (!valid_id(roster->grid) || !valid_id(roster->role)) return {std::move(s), std::move(changed), {}, {}};
    Roster duty{roster->week, roster->exceptions};
    const std::string key = roster_key(roster->grid, roster->role);
    if ((duty.week.empty() && duty.exceptions.empty()) || !valid(duty)) s.rosters.erase(key);
    else s.rosters[key] = std::move(duty);
    return {std::move(s), std::move(changed), {}, std::move(rules.notifications)};
  }
  if (const auto* entry = std::get_if<SiteEntry>(&e.body)) {
    // Keyed by kind and id, as the site projection keys them: a grid and a building may share an id.
    const std::string key = site_key(std::string(to_string(entry->kind)), entry->id);
    if (!valid_id(entry->id) || entry->members.size() > kMaxSiteMembers) return {std::move(s), std::move(changed), {}, {}};
    if (entry->removed) s.site.erase(key);
    else s.site[key] = {std::string(to_string(entry->kind)), entry->members};
    return {std::move(s), std::move(changed), {}, std::move(rules.notifications)};
  }
  if (const auto* reg = std::get_if<DeviceRegistered>(&e.body)) {
    auto& d = s.devices[device];
    d.kind = std::string(to_string(reg->kind));
    d.unit = reg->unit;
    d.location = reg->location;
    // A device that never reports after it was installed is as lost as one that stopped.
    if (d.last_seen_ms == 0) d.last_seen_ms = s.now_ms;
    return {std::move(s), std::move(changed), {}, std::move(rules.notifications)};
  }

  auto& d = s.devices[device];
  d.last_seen_ms = s.now_ms;
  if (rules.active("offline", device)) rules.resolve("offline", device, "device", "back online");

  std::visit(
      [&](const auto& b) {
        using T = std::decay_t<decltype(b)>;
        if constexpr (std::is_same_v<T, GatePass>) {
          if (b.decision == Decision::Granted) {
            remember_pass(s, r, device, e.event_id, "");
            rules.staff_passed(b.subject, device, d.unit);
          }
          if (b.temperature_c && *b.temperature_c >= r.fever_c) {
            rules.trigger("fever", b.subject, "major", device,
                          fmt::format("{:.1f} °C{}", *b.temperature_c, where(&d)));
          }
          if (b.decision == Decision::Denied) {
            // A community that keeps no registry of people has nobody to tell strangers from.
            if (s.people_registered && subject_kind(s, b.subject, s.now_ms) == "unknown") {
              rules.trigger("unknown_subject", b.subject, "minor", device, "refused, not registered" + where(&d));
            }
            auto& times = s.denials[device];
            times.push_back(s.now_ms);
            std::erase_if(times, [&](std::int64_t t) { return s.now_ms - t > r.repeated_denials_window_ms; });
            if (static_cast<int>(times.size()) >= r.repeated_denials) {
              rules.trigger("repeated_denials", device, "major", device,
                            fmt::format("{} refusals in {} min{}", times.size(), r.repeated_denials_window_ms / 60'000,
                                        where(&d)));
            }
          }
        } else if constexpr (std::is_same_v<T, VehiclePass>) {
          if (b.decision == Decision::Granted) remember_pass(s, r, device, e.event_id, b.plate);
          if (b.decision == Decision::Granted && b.direction == Direction::In) {
            s.vehicles_inside[b.plate] = s.now_ms;
            if (s.vehicles_registered && !s.vehicles.contains(b.plate)) {
              rules.trigger("unknown_vehicle", b.plate, "minor", device, "unregistered vehicle entered" + where(&d));
            }
          } else if (b.decision == Decision::Granted) {
            s.vehicles_inside.erase(b.plate);
            rules.resolve("unknown_vehicle", b.plate, "device", "left" + where(&d));
            rules.resolve("vehicle_overstay", b.plate, "device", "left" + where(&d));
          }
        } else if constexpr (std::is_same_v<T, WearableAlarm>) {
          if (b.kind == AlarmKind::Removed) {
            d.removed_since_ms = b.cancelled ? 0 : s.now_ms;
            if (b.cancelled) rules.resolve("watch_removed", device, "device", "worn again");
          } else if (b.kind == AlarmKind::Sos) {
            if (b.cancelled) rules.resolve("sos", device, "device", "cancelled by the wearer");
            else rules.trigger("sos", device, "critical", device, "SOS pressed" + where(&d));
          } else if (b.kind == AlarmKind::Fall) {
            if (b.cancelled) rules.resolve("fall", device, "device", "cancelled by the wearer");
            else rules.trigger("fall", device, "major", device, "fall detected" + where(&d), s.now_ms + r.fall_escalate_ms);
          }
        } else if constexpr (std::is_same_v<T, MeterReading>) {
          meter_rules(s, rules, r, device, d, b, e.device_time_ms);
        } else if constexpr (std::is_same_v<T, WearableVitals>) {
          bool stepped = b.steps && *b.steps > d.last_steps;
          if (b.steps) d.last_steps = *b.steps;
          if ((b.moving && *b.moving) || stepped) household_active(s, rules, d.unit);
          vitals_rules(s, rules, r, device, d, b);
        } else if constexpr (std::is_same_v<T, HomeSensor>) {
          const std::string& st = b.state;
          auto alarm_rule = [&](const char* rule, const char* severity, const char* what) {
            if (one_of(st, {"alarm", "detected", "leak"})) rules.trigger(rule, device, severity, device, what + where(&d));
            else if (one_of(st, {"ok", "clear", "normal", "idle", "dry"})) rules.resolve(rule, device, "device", "sensor cleared");
          };
          switch (b.sensor) {
            case SensorKind::Smoke: alarm_rule("smoke", "critical", "smoke alarm"); break;
            case SensorKind::Gas: alarm_rule("gas", "critical", "gas alarm"); break;
            case SensorKind::WaterLeak: alarm_rule("water_leak", "major", "water leak"); break;
            case SensorKind::Door:
              household_active(s, rules, d.unit);
              if (st == "open" && d.door_open_since_ms == 0) d.door_open_since_ms = s.now_ms;
              if (st == "closed") {
                d.door_open_since_ms = 0;
                rules.resolve("door_open", device, "device", "closed");
              }
              break;
            default: break;
          }
        } else if constexpr (std::is_same_v<T, DeviceStatus>) {
          if (b.battery_pct) {
            if (*b.battery_pct <= r.low_battery_pct) {
              if (!rules.closed_within("low_battery", device, r.low_battery_repeat_ms)) {
                rules.trigger("low_battery", device, "warning", device, fmt::format("battery {:.0f}%", *b.battery_pct));
              }
            } else if (*b.battery_pct >= r.low_battery_pct + 10) {
              rules.resolve("low_battery", device, "device", fmt::format("battery {:.0f}%", *b.battery_pct));
            }
          }
          if (b.tamper) {
            if (*b.tamper) rules.trigger("tamper", device, "major", device, "tamper switch open" + where(&d));
            else rules.resolve("tamper", device, "device", "tamper switch closed");
          }
        }
      },
      e.body);
  return {std::move(s), std::move(changed), {}, std::move(rules.notifications)};
}

bool family_rule(const std::string& rule) { return rule == "fall" || rule == "sos" || rule == "inactivity"; }

nlohmann::json to_json(const Notification& n) {
  return {{"id", n.id},     {"alert", n.alert_id}, {"community", n.community}, {"rule", n.rule},
          {"severity", n.severity}, {"unit", n.unit}, {"device", n.device},  {"location", n.location},
          {"detail", n.detail}, {"to", n.to},      {"staff", n.staff},         {"what", n.what},
          {"at", n.at_ms}};
}

std::string subject_kind(const CommunityAlerts& s, const std::string& token, std::int64_t now_ms) {
  auto it = s.people.find(token);
  if (it == s.people.end()) return "unknown";
  const auto& p = it->second;
  if ((p.valid_from_ms && now_ms < p.valid_from_ms) || (p.valid_to_ms && now_ms > p.valid_to_ms)) return "unknown";
  return p.role;
}

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(GrantedPass, at_ms, event_id, plate, seq)

nlohmann::json to_json(const Alert& a) {
  nlohmann::json timeline = nlohmann::json::array();
  for (const auto& t : a.timeline) timeline.push_back({{"at", t.at_ms}, {"what", t.what}, {"by", t.by}, {"note", t.note}});
  return {{"id", a.id},
          {"rule", a.rule},
          {"severity", a.severity},
          {"state", a.state},
          {"community", a.community},
          {"unit", a.unit},
          {"device", a.device},
          {"location", a.location},
          {"subject", a.subject},
          {"detail", a.detail},
          {"opened_at", a.opened_at_ms},
          {"updated_at", a.updated_at_ms},
          {"acknowledged_at", a.acknowledged_at_ms},
          {"resolved_at", a.resolved_at_ms},
          {"escalate_at", a.escalate_at_ms},
          {"hushed_until", a.hushed_until_ms},
          {"occurrences", a.occurrences},
          {"snapshot_id", a.snapshot_id},
          {"building", a.building},
          {"grid", a.grid},
          {"assignee", a.assignee},
          {"assignee_role", a.assignee_role},
          {"chain_step", a.chain_step},
          {"assigned_at", a.assigned_at_ms},
          {"dispatch_at", a.dispatch_at_ms},
          {"response", a.response},
          {"arrived_at", a.arrived_at_ms},
          {"notified", a.notified},
          {"timeline", timeline}};
}

Alert alert_from_json(const nlohmann::json& j) {
  Alert a;
  a.id = j.value("id", "");
  a.rule = j.value("rule", "");
  a.severity = j.value("severity", "");
  a.state = j.value("state", "");
  a.community = j.value("community", "");
  a.unit = j.value("unit", "");
  a.device = j.value("device", "");
  a.location = j.value("location", "");
  a.subject = j.value("subject", "");
  a.detail = j.value("detail", "");
  a.opened_at_ms = j.value("opened_at", std::int64_t{0});
  a.updated_at_ms = j.value("updated_at", std::int64_t{0});
  a.acknowledged_at_ms = j.value("acknowledged_at", std::int64_t{0});
  a.resolved_at_ms = j.value("resolved_at", std::int64_t{0});
  a.escalate_at_ms = j.value("escalate_at", std::int64_t{0});
  a.hushed_until_ms = j.value("hushed_until", std::int64_t{0});
  a.occurrences = j.value("occurrences", std::uint64_t{0});
  a.snapshot_id = j.value("snapshot_id", std::uint64_t{0});
  a.building = j.value("building", "");
  a.grid = j.value("grid", "");
  a.assignee = j.value("assignee", "");
  a.assignee_role = j.value("assignee_role", "");
  a.chain_step = j.value("chain_step", 0);
  a.assigned_at_ms = j.value("assigned_at", std::int64_t{0});
  a.dispatch_at_ms = j.value("dispatch_at", std::int64_t{0});
  a.response = j.value("response", "");
  a.arrived_at_ms = j.value("arrived_at", std::int64_t{0});
  a.notified = j.value("notified", std::uint32_t{0});
  for (const auto& t : j.value("timeline", nlohmann::json::array())) {
    a.timeline.push_back({t.value("at", std::int64_t{0}), t.value("what", ""), t.value("by", ""), t.value("note", "")});
  }
  return a;
}

nlohmann::json to_json(const WatchedDevice& d) {
  return {{"kind", d.kind}, {"unit", d.unit}, {"location", d.location}, {"last_seen", d.last_seen_ms},
          {"door_open_since", d.door_open_since_ms}, {"last_total", d.last_total}, {"last_steps", d.last_steps},
          {"last_reading", d.last_reading_ms}, {"flow_mask", d.flow_mask}, {"flow_hour", d.flow_hour},
          {"rate_baseline", d.rate_baseline}, {"rate_samples", d.rate_samples},
          {"rate_window_start", d.rate_window_start_ms}, {"rate_window_used", d.rate_window_used},
          {"spo2_low_since", d.spo2_low_since_ms}, {"hr_high_since", d.hr_high_since_ms},
          {"removed_since", d.removed_since_ms}};
}

std::string to_record(const WatchedDevice& d) {
  RecordWriter w(17);
  w.field("kind", d.kind)
      .field("unit", d.unit)
      .field("location", d.location)
      .field("last_seen", d.last_seen_ms)
      .field("door_open_since", d.door_open_since_ms)
      .field("last_total", d.last_total)
      .field("last_steps", d.last_steps)
      .field("last_reading", d.last_reading_ms)
      .field("flow_mask", d.flow_mask)
      .field("flow_hour", d.flow_hour)
      .field("rate_baseline", d.rate_baseline)
      .field("rate_samples", d.rate_samples)
      .field("rate_window_start", d.rate_window_start_ms)
      .field("rate_window_used", d.rate_window_used)
      .field("spo2_low_since", d.spo2_low_since_ms)
      .field("hr_high_since", d.hr_high_since_ms)
      .field("removed_since", d.removed_since_ms);
  return std::move(w).take();
}

WatchedDevice watched_device_from_json(const nlohmann::json& d) {
  WatchedDevice w;
  w.kind = d.value("kind", "");
  w.unit = d.value("unit", "");
  w.location = d.value("location", "");
  w.last_seen_ms = d.value("last_seen", std::int64_t{0});
  w.door_open_since_ms = d.value("door_open_since", std::int64_t{0});
  w.last_total = d.value("last_total", -1.0);
  w.last_reading_ms = d.value("last_reading", std::int64_t{0});
  w.flow_mask = d.value("flow_mask", std::uint32_t{0});
  w.flow_hour = d.value("flow_hour", std::int64_t{0});
  w.rate_baseline = d.value("rate_baseline", 0.0);
  w.rate_samples = d.value("rate_samples", 0);
  w.rate_window_start_ms = d.value("rate_window_start", std::int64_t{0});
  w.rate_window_used = d.value("rate_window_used", 0.0);
  w.last_steps = d.value("last_steps", std::uint32_t{0});
  w.spo2_low_since_ms = d.value("spo2_low_since", std::int64_t{0});
  w.hr_high_since_ms = d.value("hr_high_since", std::int64_t{0});
  w.removed_since_ms = d.value("removed_since", std::int64_t{0});
  return w;
}

nlohmann::json to_json(const GrantedPass& pass) { return pass; }
GrantedPass granted_pass_from_json(const nlohmann::json& j) { return j.get<GrantedPass>(); }

nlohmann::json to_json(const CommunityAlerts& s, bool whole) {
  nlohmann::json devices = nlohmann::json::object(), active = nlohmann::json::object(), closed = nlohmann::json::object();
  if (whole) {
    for (const auto& [id, d] : s.devices) devices[id] = to_json(d);
  }
  for (const auto& [k, a] : s.active) active[k] = whole ? to_json(a) : nlohmann::json(a.id);
  for (const auto& [k, a] : s.closed) closed[k] = whole ? to_json(a) : nlohmann::json(a.id);
  nlohmann::json j{{"community", s.community}, {"now", s.now_ms},       {"active", active},
                   {"closed", closed},        {"passes_remembered", s.passes_remembered}};
  if (whole) {
    j["devices"] = devices;
    j["granted"] = s.granted;
    j["unit_activity"] = s.unit_activity;
    j["people"] = s.people;
    j["vehicles"] = s.vehicles;
    j["vehicles_inside"] = s.vehicles_inside;
    j["denials"] = s.denials;
    j["episodes"] = s.episodes;
    j["analysed"] = s.analysed;
    j["tailgated"] = s.tailgated;
    j["rosters"] = s.rosters;
    j["site"] = s.site;
  }
  if (s.people_registered) j["people_registered"] = true;
  if (s.vehicles_registered) j["vehicles_registered"] = true;
  return j;
}

CommunityAlerts community_alerts_from_json(const nlohmann::json& j) {
  CommunityAlerts s;
  s.community = j.value("community", "");
  s.now_ms = j.value("now", std::int64_t{0});
  const auto devices = j.value("devices", nlohmann::json::object());
  const auto active = j.value("active", nlohmann::json::object());
  const auto closed = j.value("closed", nlohmann::json::object());
  for (const auto& [id, d] : devices.items()) s.devices[id] = watched_device_from_json(d);
  // An episode by its id alone (the stored form): the caller reads its alert record.
  auto episode = [](const nlohmann::json& a) {
    if (!a.is_string()) return alert_from_json(a);
    Alert placeholder;
    placeholder.id = a.get<std::string>();
    return placeholder;
  };
  for (const auto& [k, a] : active.items()) s.active[k] = episode(a);
  for (const auto& [k, a] : closed.items()) s.closed[k] = episode(a);
  if (j.contains("episodes")) s.episodes = j["episodes"].get<std::map<std::string, std::uint64_t>>();
  if (j.contains("unit_activity")) s.unit_activity = j["unit_activity"].get<std::map<std::string, std::int64_t>>();
  if (j.contains("people")) s.people = j["people"].get<std::map<std::string, Registered>>();
  if (j.contains("vehicles")) s.vehicles = j["vehicles"].get<std::map<std::string, Registered>>();
  if (j.contains("vehicles_inside")) s.vehicles_inside = j["vehicles_inside"].get<std::map<std::string, std::int64_t>>();
  if (j.contains("denials")) s.denials = j["denials"].get<std::map<std::string, std::vector<std::int64_t>>>();
  s.passes_remembered = j.value("passes_remembered", std::uint64_t{0});
  if (j.contains("granted")) s.granted = j["granted"].get<std::map<std::string, std::vector<GrantedPass>>>();
  // A record from before passes had seqs: numbered now, in the order they were kept.
  for (auto& [gate, passes] : s.granted) {
    for (auto& p : passes) {
      if (p.seq == 0) p.seq = ++s.passes_remembered;
    }
  }
  if (j.contains("analysed")) s.analysed = j["analysed"].get<std::map<std::string, std::vector<std::uint64_t>>>();
  if (j.contains("tailgated")) s.tailgated = j["tailgated"].get<std::map<std::string, std::uint64_t>>();
  if (j.contains("rosters")) s.rosters = j["rosters"].get<Rosters>();
  if (j.contains("site")) s.site = j["site"].get<std::map<std::string, SitePlace>>();
  // (A store from before the flags: a community with registrations has used its registry.)
  s.people_registered = j.value("people_registered", !s.people.empty());
  s.vehicles_registered = j.value("vehicles_registered", !s.vehicles.empty());
  return s;
}

}  // namespace courtyard::processors
