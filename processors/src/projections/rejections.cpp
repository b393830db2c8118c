// rejections/{device}: what ingest refused of each device, from the dead-letter topic, and
// stats/rejected: refusals by reason over every device (a record per dead-letter partition).
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
    auto counts = by_reason_.find(letter.partition);
    if (counts == by_reason_.end()) {
      auto raw = batch.view.get(Projector::counter_key(Projector::kRejectionStatsKey, letter.partition));
      counts = by_reason_.emplace(letter.partition, raw ? nlohmann::json::parse(*raw).get<Counts>() : Counts{}).first;
    }
    ++counts->second[letter.reason];
  }
  void write(Batch& batch) override {
    table_.put_changed(batch.puts);
    for (const auto& [partition, counts] : by_reason_) {
      batch.puts.emplace_back(Projector::counter_key(Projector::kRejectionStatsKey, partition),
                              nlohmann::json(counts).dump());
    }
    by_reason_.clear();
  }
  void evict(std::size_t limit) override { table_.evict(limit); }
  std::size_t cached() const override { return table_.size(); }

 private:
  Table<RejectionState> table_{&rejection_state_from_json};
  using Counts = std::map<std::string, std::uint64_t>;
  std::map<std::int32_t, Counts> by_reason_;  // per dead-letter partition this batch folded, as of the batch
};

}  // namespace

std::unique_ptr<Projection> make_rejections(Projections&) { return std::make_unique<RejectionsProjection>(); }

}  // namespace courtyard::processors
