#include "processors/devices_fold.h"

#include "record_writer.h"

namespace courtyard::processors {

DeviceStep apply(DeviceState s, const schemas::Event& e) {
  using namespace schemas;
  if (const auto* r = std::get_if<DeviceRegistered>(&e.body)) {
    if (s.registered && s.registered_at_ms == e.device_time_ms) return {std::move(s), Admission::Duplicate};
    s.registered = true;
    s.community = e.community.str();
    s.kind = std::string(to_string(r->kind));
    s.unit = r->unit;
    s.location = r->location;
    s.registered_at_ms = e.device_time_ms;
    ++s.counts["device.registered"];
    return {std::move(s), Admission::Fresh};
  }
  Admission a = admit(s.window, e.boot, e.seq);
  if (a == Admission::Duplicate) {
    ++s.duplicates;
    return {std::move(s), a};
  }
  if (a == Admission::Stale) {
    ++s.stale;
    return {std::move(s), a};
  }
  if (s.community.empty()) s.community = e.community.str();
  if (s.first_seen_ms == 0) s.first_seen_ms = e.ingest_time_ms;
  s.last_seen_ms = std::max(s.last_seen_ms, e.ingest_time_ms);
  s.last_device_time_ms = std::max(s.last_device_time_ms, e.device_time_ms);
  ++s.events;
  std::string type(type_name(e.body));
  ++s.counts[type];
  auto& last = s.last[type];
  // A late arrival (filling a gap) does not replace a newer "latest".
  if (last.is_null() || last.value("ts", std::int64_t{0}) <= e.device_time_ms) {
    last = nlohmann::json{{"boot", e.boot}, {"seq", e.seq}, {"ts", e.device_time_ms}, {"body", body_to_json(e.body)}};
  }
  if (const auto* st = std::get_if<DeviceStatus>(&e.body)) {
    if (st->battery_pct) s.battery_pct = st->battery_pct;
    if (st->tamper) s.tamper = st->tamper;
    if (!st->firmware.empty()) s.firmware = st->firmware;
  }
  return {std::move(s), a};
}

namespace {

nlohmann::json window_json(const SeqWindow& w) {
  return {{"started", w.started}, {"boot", w.boot}, {"high", w.high}, {"unseen", schemas::unseen(w)}, {"gaps", w.gaps}};
}

SeqWindow window_from_json(const nlohmann::json& w) {
  SeqWindow s;
  s.started = w.value("started", false);
  s.boot = w.value("boot", std::uint32_t{0});
  s.high = w.value("high", std::uint64_t{0});
  s.gaps = w.value("gaps", std::uint64_t{0});
  if (!s.started) return s;
  if (const auto unseen = w.find("unseen"); unseen != w.end()) {
    schemas::set_unseen(s, unseen->get<schemas::SeqRanges>());
  } else {
    schemas::set_seen_from_64(s, w.value("window", std::uint64_t{0}));  // written before the 1,024-wide window
  }
  return s;
}

}  // namespace

nlohmann::json to_json(const DeviceState& s) {
  nlohmann::json j{{"registered", s.registered},
                   {"community", s.community},
                   {"kind", s.kind},
                   {"unit", s.unit},
                   {"location", s.location},
                   {"registered_at", s.registered_at_ms},
                   {"first_seen", s.first_seen_ms},
                   {"last_seen", s.last_seen_ms},
                   {"last_device_time", s.last_device_time_ms},
                   {"events", s.events},
                   {"duplicates", s.duplicates},
                   {"stale", s.stale},
                   {"counts", s.counts},
                   {"last", s.last},
                   {"firmware", s.firmware},
                   {"online", s.online},
                   {"seq", window_json(s.window)}};
  j["battery_pct"] = s.battery_pct ? nlohmann::json(*s.battery_pct) : nlohmann::json(nullptr);
  j["tamper"] = s.tamper ? nlohmann::json(*s.tamper) : nlohmann::json(nullptr);
  return j;
}

std::string to_record(const DeviceState& s) {
  RecordWriter w(19);
  w.field("registered", s.registered)
      .field("community", s.community)
      .field("kind", s.kind)
      .field("unit", s.unit)
      .field("location", s.location)
      .field("registered_at", s.registered_at_ms)
      .field("first_seen", s.first_seen_ms)
      .field("last_seen", s.last_seen_ms)
      .field("last_device_time", s.last_device_time_ms)
      .field("events", s.events)
      .field("duplicates", s.duplicates)
      .field("stale", s.stale)
      .field("counts", s.counts)
      .field("last", s.last)
      .field("firmware", s.firmware)
      .field("online", s.online)
      .field("battery_pct", s.battery_pct)
      .field("tamper", s.tamper);
  const auto& q = s.window;
  w.map("seq", 5)
      .field("started", q.started)
      .field("boot", q.boot)
      .field("high", q.high)
      .field("unseen", nlohmann::json(schemas::unseen(q)))
      .field("gaps", q.gaps);
  return std::move(w).take();
}

DeviceState device_state_from_json(const nlohmann::json& j) {
  DeviceState s;
  s.registered = j.value("registered", false);
  s.community = j.value("community", "");
  s.kind = j.value("kind", "");
  s.unit = j.value("unit", "");
  s.location = j.value("location", "");
  s.registered_at_ms = j.value("registered_at", std::int64_t{0});
  s.first_seen_ms = j.value("first_seen", std::int64_t{0});
  s.last_seen_ms = j.value("last_seen", std::int64_t{0});
  s.last_device_time_ms = j.value("last_device_time", std::int64_t{0});
  s.events = j.value("events", std::uint64_t{0});
  s.duplicates = j.value("duplicates", std::uint64_t{0});
  s.stale = j.value("stale", std::uint64_t{0});
  if (j.contains("counts")) s.counts = j["counts"].get<std::map<std::string, std::uint64_t>>();
  if (j.contains("last")) s.last = j["last"].get<std::map<std::string, nlohmann::json>>();
  s.firmware = j.value("firmware", "");
  s.online = j.value("online", true);
  if (j.contains("battery_pct") && j["battery_pct"].is_number()) s.battery_pct = j["battery_pct"].get<double>();
  if (j.contains("tamper") && j["tamper"].is_boolean()) s.tamper = j["tamper"].get<bool>();
  if (j.contains("seq")) s.window = window_from_json(j["seq"]);
  return s;
}

}  // namespace courtyard::processors
