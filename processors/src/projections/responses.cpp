// responses/{community}/{day}: response figures of the incidents (dispatched alerts) that opened
// on a local day, recorded as each is resolved (processors/responses.h).
#include "processors/responses.h"
#include "processors/time_buckets.h"
#include "projections/projections.h"
#include "table.h"

namespace courtyard::processors {
namespace {

class ResponsesProjection final : public Projection {
 public:
  EventTypes types() const override { return {}; }
  bool folds_alerts() const override { return true; }
  void fold(Batch& batch, const Alert& a) override {
    auto response = response_of(a);
    if (!response || !schemas::valid_id(a.community)) return;
    const std::string day = day_key(a.opened_at_ms, batch.config.context.utc_offset_min);
    auto& record = days_.get(batch.view, "responses/" + a.community + "/" + day);
    record.community = a.community;
    record.day = day;
    processors::record(record, a.id, std::move(*response));
  }
  void write(Batch& batch) override { days_.put_changed(batch.puts); }
  void evict(std::size_t limit) override { days_.evict(limit); }
  std::size_t cached() const override { return days_.size(); }

 private:
  Table<ResponseDay> days_{&response_day_from_json};
};

}  // namespace

std::unique_ptr<Projection> make_responses(Projections&) { return std::make_unique<ResponsesProjection>(); }

}  // namespace courtyard::processors
