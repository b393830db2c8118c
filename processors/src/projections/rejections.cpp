// rejections/{device}: what ingest refused of each device, from the dead-letter topic, and
// stats/rejected: refusals by reason over every device (a record per fold lane).
#include <map>

#include "projection.h"
#include "projections/projections.h"
#include "table.h"

namespace courtyard::processors {
namespace {

class RejectionsProjection final : public Projection {
 public:
  EventTypes types() const override { return {}; }
  bool folds_dead_letters() const override { return true; }
  void fold(Batch& batch, const DeadLetter& letter) override {
    auto& state = table_.get(batch.view, Projector::rejection_key(letter.device.empty() ? "_unknown" : letter.device));
    state = apply(std::move(state), letter);
    if (!counted_) {
      auto raw = batch.view.get(Projector::lane_key(Projector::kRejectionStatsKey, batch.config.lane));
      by_reason_ = raw ? nlohmann::json::parse(*raw).get<std::map<std::string, std::uint64_t>>()
                       : std::map<std::string, std::uint64_t>{};
      counted_ = true;
    }
    ++by_reason_[letter.reason];
  }
  void write(Batch& batch) override {
    table_.put_changed(batch.puts);
    if (counted_) batch.puts.emplace_back(Projector::lane_key(Projector::kRejectionStatsKey, batch.config.lane),
                                        nlohmann::json(by_reason_).dump());
    counted_ = false;
  }
  void evict(std::size_t limit) override { table_.evict(limit); }
  std::size_t cached() const override { return table_.size(); }

 private:
  Table<RejectionState> table_{&rejection_state_from_json};
  std::map<std::string, std::uint64_t> by_reason_;  // as of this batch, once it has a dead letter
  bool counted_ = false;
};

}  // namespace

std::unique_ptr<Projection> make_rejections(Projections&) { return std::make_unique<RejectionsProjection>(); }

}  // namespace courtyard::processors
