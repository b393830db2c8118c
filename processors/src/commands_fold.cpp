#include "processors/commands_fold.h"

namespace courtyard::processors {

CommandRecord issue(const schemas::Event& e, const schemas::Command& c, const std::string& unit) {
  CommandRecord r;
  r.id = c.command_id;
  r.community = e.community.str();
  r.target = c.target.str();
  r.unit = unit;
  r.action = c.action;
  r.args = c.args;
  r.actor = c.actor;
  r.state = "sent";
  r.issued_at_ms = e.ingest_time_ms;
  r.expires_at_ms = c.expires_at_ms;
  return r;
}

bool is_final(const CommandRecord& r) {
  return r.state == "acknowledged" || r.state == "failed" || r.state == "expired";
}

bool deliver(CommandRecord& r, std::int64_t at_ms) {
  if (r.state != "sent") return false;  // a redelivery, or the answer came first
  r.state = "delivered";
  r.delivered_at_ms = at_ms;
  return true;
}

bool answer(CommandRecord& r, const schemas::CommandAck& ack, const DeviceId& from, std::int64_t at_ms) {
  if (is_final(r) || from.str() != r.target) return false;
  r.state = ack.result == schemas::CommandResult::Ok ? "acknowledged" : "failed";
  r.detail = ack.detail;
  r.answered_at_ms = at_ms;
  return true;
}

bool expire(CommandRecord& r, std::int64_t now_ms) {
  if (is_final(r) || r.expires_at_ms == 0 || now_ms < r.expires_at_ms) return false;
  r.state = "expired";
  r.detail = r.delivered_at_ms ? "delivered but not answered in time" : "not delivered in time";
  r.answered_at_ms = now_ms;
  return true;
}

NoticeRecord notice_of(const schemas::Event& e, const schemas::Notice& n) {
  return {n.notice_id,  e.community.str(), n.unit, n.title, n.text, std::string(schemas::to_string(n.severity)),
          n.actor, e.ingest_time_ms, n.expires_at_ms};
}

nlohmann::json to_json(const CommandRecord& r) {
  return {{"command_id", r.id},
          {"community", r.community},
          {"device", r.target},
          {"unit", r.unit},
          {"action", r.action},
          {"args", r.args.empty() ? nlohmann::json::object() : nlohmann::json::parse(r.args, nullptr, false)},
          {"actor", r.actor},
          {"state", r.state},
          {"detail", r.detail},
          {"issued_at", r.issued_at_ms},
          {"delivered_at", r.delivered_at_ms},
          {"answered_at", r.answered_at_ms},
          {"expires_at", r.expires_at_ms}};
}

CommandRecord command_record_from_json(const nlohmann::json& j) {
  CommandRecord r;
  r.id = j.value("command_id", "");
  r.community = j.value("community", "");
  r.target = j.value("device", "");
  r.unit = j.value("unit", "");
  r.action = j.value("action", "");
  if (auto it = j.find("args"); it != j.end() && it->is_object() && !it->empty()) r.args = it->dump();
  r.actor = j.value("actor", "");
  r.state = j.value("state", "");
  r.detail = j.value("detail", "");
  r.issued_at_ms = j.value("issued_at", std::int64_t{0});
  r.delivered_at_ms = j.value("delivered_at", std::int64_t{0});
  r.answered_at_ms = j.value("answered_at", std::int64_t{0});
  r.expires_at_ms = j.value("expires_at", std::int64_t{0});
  return r;
}

nlohmann::json to_json(const PendingCommands& p) { return p.expires_at_ms; }

PendingCommands pending_commands_from_json(const nlohmann::json& j) {
  return {j.get<std::map<std::string, std::int64_t>>()};
}

nlohmann::json to_json(const NoticeRecord& n) {
  return {{"notice_id", n.id},         {"community", n.community}, {"unit", n.unit},
          {"title", n.title},          {"text", n.text},           {"severity", n.severity},
          {"actor", n.actor},          {"issued_at", n.issued_at_ms}, {"expires_at", n.expires_at_ms}};
}

NoticeRecord notice_record_from_json(const nlohmann::json& j) {
  return {j.value("notice_id", ""), j.value("community", ""), j.value("unit", ""),
          j.value("title", ""),     j.value("text", ""),      j.value("severity", ""),
          j.value("actor", ""),     j.value("issued_at", std::int64_t{0}), j.value("expires_at", std::int64_t{0})};
}

}  // namespace courtyard::processors
