// notices/{community}/{id}: what the office posted to the home panels; each goes to the outbox for
// the panels (a household's notice to that household's panels only).
#include "processors/commands_fold.h"
#include "projections/projections.h"
#include "table.h"

namespace courtyard::processors {
namespace {

class NoticesProjection final : public Projection {
 public:
  EventTypes types() const override { return types_of<schemas::Notice>(); }
  Folded fold(Batch& batch, const schemas::Event& e, const std::string& community) override {
    const auto& n = std::get<schemas::Notice>(e.body);
    auto record = notice_of(e, n);
    notices_.get(batch.view, Projector::notice_key(community, n.notice_id)) = record;
    batch.send(community, "commands", Projector::kNoticesTarget,
               nlohmann::json{{"community", community},
                              {"device", Projector::kNoticesTarget},
                              {"unit", n.unit},
                              {"command", "notice"},
                              {"issued_at", record.issued_at_ms},
                              {"body", to_json(record)}}
                   .dump());
    return Folded::Done;
  }
  void write(Batch& batch) override { notices_.put_changed(batch.puts); }
  void evict(std::size_t limit) override { notices_.evict(limit); }
  std::size_t cached() const override { return notices_.size(); }

 private:
  Table<NoticeRecord> notices_{&notice_record_from_json};
};

}  // namespace

std::unique_ptr<Projection> make_notices(Projections&) { return std::make_unique<NoticesProjection>(); }

}  // namespace courtyard::processors
