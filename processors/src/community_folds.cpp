#include "processors/community_folds.h"

#include "record_writer.h"

#include <numeric>

#include "processors/time_buckets.h"

namespace courtyard::processors {

// JSON and binary record (decision 0022) from one field list each; the occupancy and the elder
// have JSON only here (their records add derived fields: to_json and to_record below).
COURTYARD_DEFINE_STATE(MeterState, community, unit, kind, measure_unit, last_total,
                       last_reading_ms, readings, resets, out_of_order, hourly, daily)
COURTYARD_DEFINE_STATE(CommunityMeters, daily_by_kind, daily_by_building)
COURTYARD_DEFINE_STATE(GateState, community, location, passes, in, out, granted, denied,
                       fevers, by_credential, by_subject_kind, denials_by_reason, hourly,
                       last_temperature_c, last_pass_ms)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Occupancy, people_inside, vehicles_inside, people_entries,
                                                people_exits, vehicle_entries, vehicle_exits, unknown_exits,
                                                entries_per_hour, vehicle_entries_per_hour, exits_per_hour,
                                                vehicle_exits_per_hour)
COURTYARD_DEFINE_STATE(SnapshotRecord, snapshot_id, at_ms, faces, plate_token,
                       plate_confidence, verdict, detail, passes)
COURTYARD_DEFINE_STATE(CameraState, community, gate, location, snapshots, analysed, verdicts,
                       last_snapshot_ms, recent)
COURTYARD_DEFINE_STATE(SensorReading, sensor, state, value, has_value, at_ms)
COURTYARD_DEFINE_STATE(HomeState, community, unit, sensors, open_alerts, people_inside)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ElderState, community, unit, latest, heart_rates, spo2,
                                                last_movement_ms, last_steps, alarms, open_alerts, wellbeing)

namespace {

constexpr std::size_t kHours = 48, kDays = 62, kWindow = 60, kAlarms = 20;

template <class T>
void push_bounded(std::vector<T>& v, T x, std::size_t keep) {
  v.push_back(std::move(x));
  if (v.size() > keep) v.erase(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() - keep));
}

std::string building_of(const std::string& unit) {
  auto dash = unit.find('-');
  return dash == std::string::npos ? unit : unit.substr(0, dash);
}

}  // namespace

MeterStep apply(MeterState s, const schemas::Event& e, const schemas::MeterReading& r, const FoldContext& ctx) {
  s.community = e.community.str();
  s.kind = std::string(schemas::body_to_json(schemas::Body{r})["kind"]);
  s.measure_unit = r.unit;
  ++s.readings;
  if (s.last_reading_ms != 0 && e.device_time_ms < s.last_reading_ms) {
    ++s.out_of_order;
    return {std::move(s), 0};
  }
  double consumed = 0;
  if (s.last_reading_ms != 0) {
    if (r.total >= s.last_total) {
      consumed = r.total - s.last_total;
    } else {
      ++s.resets;  // replaced or rolled over: the new total is what was used since
      consumed = r.total;
    }
  }
  s.last_total = r.total;
  s.last_reading_ms = e.device_time_ms;
  if (consumed > 0) {
    s.hourly[hour_key(e.device_time_ms, ctx.utc_offset_min)] += consumed;
    s.daily[day_key(e.device_time_ms, ctx.utc_offset_min)] += consumed;
    keep_latest(s.hourly, kHours);
    keep_latest(s.daily, kDays);
  }
  return {std::move(s), consumed};
}

CommunityMeters add_consumption(CommunityMeters t, const MeterState& m, const std::string& day, double amount) {
  t.daily_by_kind[m.kind][day] += amount;
  keep_latest(t.daily_by_kind[m.kind], kDays);
  if (!m.unit.empty()) {
    auto& b = t.daily_by_building[building_of(m.unit)][m.kind];
    b[day] += amount;
    keep_latest(b, kDays);
  }
  return t;
}

GateState apply(GateState s, const schemas::Event& e, const schemas::GatePass& p, double fever_c,
                const std::string& subject_kind, const FoldContext& ctx) {
  auto j = schemas::body_to_json(schemas::Body{p});
  s.community = e.community.str();
  ++s.passes;
  (p.direction == schemas::Direction::In ? s.in : s.out) += 1;
  ++s.by_credential[j["credential"].get<std::string>()];
  ++s.by_subject_kind[subject_kind];
  if (p.decision == schemas::Decision::Granted) {
    ++s.granted;
  } else {
    ++s.denied;
    ++s.denials_by_reason[p.reason.empty() ? "unspecified" : p.reason];
  }
  if (p.temperature_c) {
    s.last_temperature_c = *p.temperature_c;
    if (*p.temperature_c >= fever_c) ++s.fevers;
  }
  ++s.hourly[hour_key(e.ingest_time_ms, ctx.utc_offset_min)];
  keep_latest(s.hourly, kHours);
  s.last_pass_ms = std::max(s.last_pass_ms, e.ingest_time_ms);
  return s;
}

Occupancy apply(Occupancy s, const schemas::Event& e, const FoldContext& ctx) {
  const auto hour = hour_key(e.ingest_time_ms, ctx.utc_offset_min);
  if (const auto* p = std::get_if<schemas::GatePass>(&e.body)) {
    if (p->decision != schemas::Decision::Granted) return s;
    if (p->direction == schemas::Direction::In) {
      s.people_inside.insert(p->subject);
      ++s.people_entries;
      ++s.entries_per_hour[hour];
      keep_latest(s.entries_per_hour, kHours);
    } else {
      if (!s.people_inside.erase(p->subject)) ++s.unknown_exits;
      ++s.people_exits;
      ++s.exits_per_hour[hour];
      keep_latest(s.exits_per_hour, kHours);
    }
  } else if (const auto* v = std::get_if<schemas::VehiclePass>(&e.body)) {
    if (v->decision != schemas::Decision::Granted) return s;
    if (v->direction == schemas::Direction::In) {
      s.vehicles_inside.emplace(v->plate, e.ingest_time_ms);
      ++s.vehicle_entries;
      ++s.vehicle_entries_per_hour[hour];
      keep_latest(s.vehicle_entries_per_hour, kHours);
    } else {
      if (!s.vehicles_inside.erase(v->plate)) ++s.unknown_exits;
      ++s.vehicle_exits;
      ++s.vehicle_exits_per_hour[hour];
      keep_latest(s.vehicle_exits_per_hour, kHours);
    }
  }
  return s;
}

HomeState apply(HomeState s, const schemas::Event& e, const schemas::HomeSensor& r) {
  s.community = e.community.str();
  auto j = schemas::body_to_json(schemas::Body{r});
  auto& reading = s.sensors[e.device.str()];
  if (reading.at_ms > e.ingest_time_ms) return s;  // an older report never replaces a newer one
  reading = {j["sensor"].get<std::string>(), r.state, r.value.value_or(0), r.value.has_value(), e.ingest_time_ms};
  return s;
}

HomeState apply(HomeState s, const schemas::GatePass& p) {
  if (p.decision != schemas::Decision::Granted) return s;
  if (p.direction == schemas::Direction::In) s.people_inside.insert(p.subject);
  else s.people_inside.erase(p.subject);
  return s;
}

ElderState apply(ElderState s, const schemas::Event& e, const FoldContext&) {
  s.community = e.community.str();
  if (const auto* v = std::get_if<schemas::WearableVitals>(&e.body)) {
    s.latest = schemas::body_to_json(e.body);
    s.latest["at"] = e.ingest_time_ms;
    if (v->heart_rate_bpm) push_bounded(s.heart_rates, *v->heart_rate_bpm, kWindow);
    if (v->spo2_pct) push_bounded(s.spo2, *v->spo2_pct, kWindow);
    bool stepped = v->steps && *v->steps > s.last_steps;
    if (v->steps) s.last_steps = *v->steps;
    if ((v->moving && *v->moving) || stepped) s.last_movement_ms = std::max(s.last_movement_ms, e.ingest_time_ms);
  } else if (std::holds_alternative<schemas::WearableAlarm>(e.body)) {
    auto j = schemas::body_to_json(e.body);
    j["at"] = e.ingest_time_ms;
    push_bounded(s.alarms, j, kAlarms);
  }
  return s;
}

std::string wellbeing(const ElderState& s) {
  for (const auto& [_, severity] : s.open_alerts) {
    if (severity == "critical") return "alert";
  }
  if (!s.open_alerts.empty()) return "attention";
  return s.latest.is_null() ? "unknown" : "ok";
}

nlohmann::json to_json(const MeterState& s) { return s; }
nlohmann::json to_json(const CommunityMeters& s) { return s; }
nlohmann::json to_json(const GateState& s) { return s; }
nlohmann::json to_json(const CameraState& s) { return s; }
CameraState camera_state_from_json(const nlohmann::json& j) { return j.get<CameraState>(); }
std::string to_record(const MeterState& s) { return record_of(s); }
std::string to_record(const CommunityMeters& s) { return record_of(s); }
std::string to_record(const GateState& s) { return record_of(s); }
std::string to_record(const CameraState& s) { return record_of(s); }
std::string to_record(const HomeState& s) { return record_of(s); }

CameraState apply(CameraState s, const schemas::Event& e, const schemas::CameraSnapshot& snapshot) {
  s.community = e.community.str();
  s.gate = snapshot.gate;
  ++s.snapshots;
  s.last_snapshot_ms = std::max(s.last_snapshot_ms, e.ingest_time_ms);
  return s;
}

CameraState apply(CameraState s, const schemas::VisionAnalysis& a, const SnapshotVerdict& v) {
  if (v.verdict == "repeat") return s;
  ++s.analysed;
  ++s.verdicts[v.verdict];
  s.recent.push_back({a.snapshot_id, a.snapshot_time_ms, a.faces, a.plate_token, a.plate_confidence, v.verdict, v.detail,
                      v.passes});
  if (s.recent.size() > 20) s.recent.erase(s.recent.begin());
  return s;
}
nlohmann::json to_json(const Occupancy& s) {
  nlohmann::json j = s;
  j["people_now"] = s.people_inside.size();
  j["vehicles_now"] = s.vehicles_inside.size();
  return j;
}
// Built without the lists (not built whole and then cut): a community can have thousands inside.
nlohmann::json occupancy_summary(const Occupancy& s) {
  return {{"people_entries", s.people_entries},
          {"people_exits", s.people_exits},
          {"vehicle_entries", s.vehicle_entries},
          {"vehicle_exits", s.vehicle_exits},
          {"unknown_exits", s.unknown_exits},
          {"entries_per_hour", s.entries_per_hour},
          {"vehicle_entries_per_hour", s.vehicle_entries_per_hour},
          {"exits_per_hour", s.exits_per_hour},
          {"vehicle_exits_per_hour", s.vehicle_exits_per_hour},
          {"people_now", s.people_inside.size()},
          {"vehicles_now", s.vehicles_inside.size()}};
}
nlohmann::json to_json(const HomeState& s) { return s; }
nlohmann::json to_json(const ElderState& s) {
  nlohmann::json j = s;
  auto stats = [](const std::vector<double>& v) {
    if (v.empty()) return nlohmann::json(nullptr);
    auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    return nlohmann::json{{"min", *lo}, {"max", *hi}, {"mean", std::accumulate(v.begin(), v.end(), 0.0) / v.size()},
                          {"n", v.size()}};
  };
  j["heart_rate_stats"] = stats(s.heart_rates);
  j["spo2_stats"] = stats(s.spo2);
  return j;
}
std::string to_record(const ElderState& s) {
  RecordWriter w(12);
  w.field("community", s.community)
      .field("unit", s.unit)
      .field("latest", s.latest)
      .field("heart_rates", s.heart_rates)
      .field("spo2", s.spo2)
      .field("last_movement_ms", s.last_movement_ms)
      .field("last_steps", s.last_steps)
      .field("alarms", s.alarms)
      .field("open_alerts", s.open_alerts)
      .field("wellbeing", s.wellbeing);
  auto stats = [&](std::string_view key, const std::vector<double>& v) {
    if (v.empty()) {
      w.field(key, nlohmann::json(nullptr));
      return;
    }
    auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    w.map(key, 4).field("min", *lo).field("max", *hi).field("mean", std::accumulate(v.begin(), v.end(), 0.0) / v.size()).field("n", v.size());
  };
  stats("heart_rate_stats", s.heart_rates);
  stats("spo2_stats", s.spo2);
  return std::move(w).take();
}
MeterState meter_state_from_json(const nlohmann::json& j) { return j.get<MeterState>(); }
CommunityMeters community_meters_from_json(const nlohmann::json& j) { return j.get<CommunityMeters>(); }
GateState gate_state_from_json(const nlohmann::json& j) { return j.get<GateState>(); }
Occupancy occupancy_from_json(const nlohmann::json& j) { return j.get<Occupancy>(); }
HomeState home_state_from_json(const nlohmann::json& j) { return j.get<HomeState>(); }
ElderState elder_state_from_json(const nlohmann::json& j) { return j.get<ElderState>(); }

}  // namespace courtyard::processors
