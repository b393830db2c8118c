#pragma once
// Commands to devices and notices to residents, as projections. A command's record follows it
// through its life: sent (in the log) -> delivered (the broker took it for the device's session)
// -> acknowledged or failed (the device's command.ack); a command not answered by its expiry
// (log time, on ticks) is expired. Pure and deterministic, like every fold.
#include <cstdint>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "schemas/event.h"

namespace courtyard::processors {

struct CommandRecord {
  std::string id, community, target, unit;  // unit: the target device's household, if any
  std::string action, args, actor;
  std::string state;   // sent, delivered, acknowledged, failed, expired
  std::string detail;  // the device's words, or why it expired
  std::int64_t issued_at_ms = 0, delivered_at_ms = 0, answered_at_ms = 0, expires_at_ms = 0;
  bool operator==(const CommandRecord&) const = default;
};

// A community's unanswered commands by id, with their expiry: what a tick has to look at.
struct PendingCommands {
  std::map<std::string, std::int64_t> expires_at_ms;
  bool operator==(const PendingCommands&) const = default;
};

CommandRecord issue(const schemas::Event& e, const schemas::Command& c, const std::string& unit);
// Each returns whether the record changed. Answers from another device than the target, and
// anything after a final state (acknowledged, failed, expired), change nothing.
bool deliver(CommandRecord& r, std::int64_t at_ms);
bool answer(CommandRecord& r, const schemas::CommandAck& ack, const DeviceId& from, std::int64_t at_ms);
bool expire(CommandRecord& r, std::int64_t now_ms);
bool is_final(const CommandRecord& r);

struct NoticeRecord {
  std::string id, community, unit, title, text, severity, actor;
  std::int64_t issued_at_ms = 0, expires_at_ms = 0;
  bool operator==(const NoticeRecord&) const = default;
};
NoticeRecord notice_of(const schemas::Event& e, const schemas::Notice& n);

nlohmann::json to_json(const CommandRecord& r);
nlohmann::json to_json(const PendingCommands& p);
nlohmann::json to_json(const NoticeRecord& n);
CommandRecord command_record_from_json(const nlohmann::json& j);
PendingCommands pending_commands_from_json(const nlohmann::json& j);
NoticeRecord notice_record_from_json(const nlohmann::json& j);

}  // namespace courtyard::processors
