// commands/{id}: each command to a device, from issue to delivery, the device's answer or its
// expiry (on the log's clock: ticks); cmdpending/{community}: the commands still waiting, by expiry.
// A command issued goes to the outbox for its device.
#include "processors/commands_fold.h"
#include "projections/devices.h"
#include "table.h"

namespace courtyard::processors {
namespace {

std::string pending_key(const std::string& community) { return "cmdpending/" + community; }

class CommandsProjection final : public Projection {
 public:
  explicit CommandsProjection(DevicesProjection& devices) : devices_(devices) {}
  EventTypes types() const override {
    return types_of<schemas::Command, schemas::CommandDelivered, schemas::CommandAck, schemas::Tick>();
  }
  Folded fold(Batch& batch, const schemas::Event& e, const std::string& community) override {
    if (const auto* c = std::get_if<schemas::Command>(&e.body)) {
      issue_one(batch, e, *c, community);
    } else if (const auto* d = std::get_if<schemas::CommandDelivered>(&e.body)) {
      if (auto* r = command_of(batch, d->command_id)) deliver(*r, e.ingest_time_ms);
    } else if (const auto* ack = std::get_if<schemas::CommandAck>(&e.body)) {
      if (auto* r = command_of(batch, ack->command_id); r && answer(*r, *ack, e.device, e.ingest_time_ms) && is_final(*r)) {
        pending_.get(batch.view, pending_key(r->community)).expires_at_ms.erase(r->id);
      }
    } else {  // a tick: the commands of this community that expired
      auto& pending = pending_.get(batch.view, pending_key(community)).expires_at_ms;
      for (auto it = pending.begin(); it != pending.end();) {
        if (it->second > e.ingest_time_ms) {
          ++it;
          continue;
        }
        if (auto* r = command_of(batch, it->first)) expire(*r, e.ingest_time_ms);
        it = pending.erase(it);
      }
    }
    return Folded::Done;
  }
  void write(Batch& batch) override {
    commands_.put_changed(batch.puts);
    pending_.put_changed(batch.puts);
  }
  void evict(std::size_t limit) override {
    commands_.evict(limit);
    pending_.evict(limit);
  }
  std::size_t cached() const override { return commands_.size() + pending_.size(); }

 private:
  // A command's record, when the command is known (acks and deliveries can name anything).
  CommandRecord* command_of(Batch& batch, const std::string& id) {
    return commands_.get_if(batch.view, Projector::command_key(id));
  }
  void issue_one(Batch& batch, const schemas::Event& e, const schemas::Command& c, const std::string& community) {
    const auto* target = devices_.find(batch, c.target.str());
    auto& r = commands_.get(batch.view, Projector::command_key(c.command_id));
    if (!r.id.empty()) return;  // the same command appended twice: the first one counts
    r = issue(e, c, target ? target->unit : std::string());
    if (r.expires_at_ms) pending_.get(batch.view, pending_key(community)).expires_at_ms[r.id] = r.expires_at_ms;
    batch.send(community, "commands", r.target,
               nlohmann::json{{"community", community},
                              {"device", r.target},
                              {"command", r.action},
                              {"command_id", r.id},
                              {"issued_at", r.issued_at_ms},
                              {"expires_at", r.expires_at_ms},
                              {"body", r.args.empty() ? nlohmann::json::object() : nlohmann::json::parse(r.args)}}
                   .dump());
  }
  DevicesProjection& devices_;
  Table<CommandRecord> commands_{&command_record_from_json};
  Table<PendingCommands> pending_{&pending_commands_from_json};
};

}  // namespace

std::unique_ptr<Projection> make_commands(Projections& p) { return std::make_unique<CommandsProjection>(p.get<DevicesProjection>()); }

}  // namespace courtyard::processors
