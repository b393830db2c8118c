#include "processors/responses.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace courtyard::processors {
namespace {

using json = nlohmann::json;

// Nearest rank: the smallest value with at least p of the values at or below it.
std::int64_t percentile(const std::vector<std::int64_t>& sorted, double p) {
  const auto rank = static_cast<std::size_t>(std::max(1.0, std::ceil(p * static_cast<double>(sorted.size()))));
  return sorted[rank - 1];
}

json figure(std::vector<std::int64_t> values) {
  if (values.empty()) return {{"count", 0}};
  std::sort(values.begin(), values.end());
  return {{"count", values.size()}, {"p50_ms", percentile(values, 0.5)}, {"p90_ms", percentile(values, 0.9)}};
}

struct Samples {
  std::uint64_t incidents = 0, breached = 0;
  std::vector<std::int64_t> ack, arrive, resolve;
  void add(const Response& r) {
    ++incidents;
    breached += r.breached ? 1 : 0;
    if (r.ack_ms >= 0) ack.push_back(r.ack_ms);
    if (r.arrive_ms >= 0) arrive.push_back(r.arrive_ms);
    if (r.resolve_ms >= 0) resolve.push_back(r.resolve_ms);
  }
  json figures() const {
    return {{"incidents", incidents}, {"breached", breached}, {"acknowledge", figure(ack)}, {"arrive", figure(arrive)},
            {"resolve", figure(resolve)}};
  }
};

}  // namespace

std::optional<Response> response_of(const Alert& a) {
  if (a.state != "resolved" || a.assigned_at_ms == 0) return std::nullopt;
  Response r;
  r.grid = a.grid;
  r.rule = a.rule;
  r.responder = a.assignee;
  r.severity = a.severity;
  r.opened_at_ms = a.opened_at_ms;
  auto since = [&](std::int64_t at) { return at > 0 && at >= a.opened_at_ms ? at - a.opened_at_ms : -1; };
  r.ack_ms = since(a.acknowledged_at_ms);
  r.arrive_ms = since(a.arrived_at_ms);
  r.resolve_ms = since(a.resolved_at_ms);
  r.breached = a.chain_step > 0 || a.acknowledged_at_ms == 0;
  return r;
}

void record(ResponseDay& day, const std::string& alert_id, Response response) {
  auto it = day.incidents.find(alert_id);
  if (it == day.incidents.end() && day.incidents.size() >= kMaxIncidentsPerDay) {
    ++day.dropped;
    return;
  }
  day.incidents[alert_id] = std::move(response);
}

json to_json(const ResponseDay& day) {
  Samples all;
  std::map<std::string, Samples> by_grid, by_rule, by_responder;
  json breached = json::array();
  for (const auto& [id, r] : day.incidents) {
    all.add(r);
    by_grid[r.grid.empty() ? "~" : r.grid].add(r);
    by_rule[r.rule].add(r);
    by_responder[r.responder].add(r);
    if (r.breached) breached.push_back(id);
  }
  auto each = [](const std::map<std::string, Samples>& groups) {
    json out = json::object();
    for (const auto& [k, s] : groups) out[k] = s.figures();
    return out;
  };
  return {{"community", day.community}, {"day", day.day},          {"figures", all.figures()},
          {"by_grid", each(by_grid)},   {"by_rule", each(by_rule)}, {"by_responder", each(by_responder)},
          {"breached", breached},       {"incidents", day.incidents}, {"dropped", day.dropped}};
}

ResponseDay response_day_from_json(const json& j) {
  ResponseDay day;
  day.community = j.value("community", "");
  day.day = j.value("day", "");
  if (j.contains("incidents")) day.incidents = j["incidents"].get<std::map<std::string, Response>>();
  day.dropped = j.value("dropped", std::uint64_t{0});
  return day;
}

}  // namespace courtyard::processors
