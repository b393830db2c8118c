// notifications/{community}/{id}: each notification the alerts fold decided (who is told what of
// which alert, and when), and what became of it on the webhook (notification.status: delivered,
// failed, with the attempts and the last answer). A hub that sends webhooks also keeps
// notifypending/{community}/{id} for those not carried yet, so its sender scans a short list.
#include <fmt/format.h>

#include "processors/record.h"
#include "projections/projections.h"

namespace courtyard::processors {
namespace {

using json = nlohmann::json;

class NotificationsProjection final : public Projection {
 public:
  EventTypes types() const override { return types_of<schemas::NotificationStatus>(); }
  Folded fold(Batch& batch, const schemas::Event& e, const std::string& community) override {
    absorb(batch);
    const auto& status = std::get<schemas::NotificationStatus>(e.body);
    if (status.state != "delivered" && status.state != "failed") return Folded::Done;
    const std::string key = Projector::notification_key(community, status.notification_id);
    auto it = records_.find(key);
    if (it == records_.end()) {
      auto stored = batch.view.get(key);
      if (!stored) return Folded::Done;  // a status of nothing this log decided: ignored
      it = records_.emplace(key, parse_record(*stored)).first;
    }
    json& webhook = it->second["webhook"];
    if (webhook.value("state", "") == "delivered") return Folded::Done;  // the first delivery stands
    webhook = {{"state", status.state}, {"attempts", status.attempts}, {"at", e.ingest_time_ms}};
    if (!status.detail.empty()) webhook["detail"] = status.detail;
    pending_[Projector::notify_pending_key(community, status.notification_id)] = false;
    return Folded::Done;
  }
  void write(Batch& batch) override {
    absorb(batch);
    for (auto& [key, record] : records_) batch.puts.emplace_back(key, record.dump());
    for (auto& [key, pending] : pending_) {
      if (pending) batch.puts.emplace_back(key, "");
      else batch.deletes.push_back(key);
    }
    records_.clear();
    pending_.clear();
    absorbed_ = 0;
    batch_ = nullptr;
  }
  void evict(std::size_t) override {}
  std::size_t cached() const override { return 0; }

 private:
  // The notifications the alerts projection added to the batch since the last look.
  void absorb(Batch& batch) {
    if (batch_ != &batch) {  // a batch that never reached write() (it failed): nothing of it stands
      batch_ = &batch;
      absorbed_ = 0;
      records_.clear();
      pending_.clear();
    }
    for (; absorbed_ < batch.notifications.size(); ++absorbed_) {
      const auto& n = batch.notifications[absorbed_];
      if (!schemas::valid_id(n.community)) continue;
      auto record = to_json(n);
      record["webhook"] = {{"state", "pending"}, {"attempts", 0}};
      const std::string key = Projector::notification_key(n.community, n.id);
      records_[key] = std::move(record);
      if (batch.config.notify_webhook) pending_[Projector::notify_pending_key(n.community, n.id)] = true;
    }
  }

  const Batch* batch_ = nullptr;
  std::size_t absorbed_ = 0;
  std::map<std::string, json> records_;  // written by this batch
  std::map<std::string, bool> pending_;  // index entries: true put, false delete
};

}  // namespace

std::unique_ptr<Projection> make_notifications(Projections&) { return std::make_unique<NotificationsProjection>(); }

}  // namespace courtyard::processors
