// The privacy vault's side of the projections (docs/privacy.md):
//   people/{community}/{subject}   a person: kind, household, tokens and their fields as the vault
//                                  sealed them (ciphertext; a forgotten person keeps no ciphertext)
//   contacts/{community}/{unit}/~  whom to call for a household, in order (subject ids)
//   contacts/{community}/{unit}/{device}   ... for a wearable's wearer
//   reads/{community}/{unit}/{event id}/{subject}   the read trail: who was shown whose fields, why
// "~" stands for "none" (a household's own list, a person of no household): it is never an id.
// No plaintext ever reaches these records: the fold sees only what the log carries.
#include <fmt/format.h>

#include "common/digest.h"
#include "projections/projections.h"

namespace courtyard::processors {
namespace {

using json = nlohmann::json;
constexpr const char* kNone = "~";

class PeopleProjection final : public Projection {
 public:
  EventTypes types() const override {
    return types_of<schemas::PersonRecorded, schemas::PersonForgotten, schemas::PersonalDataRead, schemas::EmergencyContacts>();
  }

  Folded fold(Batch& batch, const schemas::Event& e, const std::string& community) override {
    // The hub checks what it appends; a record that names no person or household is skipped,
    // never made a key of.
    auto ids = [](std::initializer_list<const std::string*> required, std::initializer_list<const std::string*> optional) {
      for (const auto* id : required) {
        if (!schemas::valid_id(*id)) return false;
      }
      for (const auto* id : optional) {
        if (!id->empty() && !schemas::valid_id(*id)) return false;
      }
      return true;
    };
    if (const auto* p = std::get_if<schemas::PersonRecorded>(&e.body); p && !ids({&p->subject}, {&p->unit})) return Folded::Done;
    if (const auto* f = std::get_if<schemas::PersonForgotten>(&e.body); f && !ids({&f->subject}, {})) return Folded::Done;
    if (const auto* c = std::get_if<schemas::EmergencyContacts>(&e.body); c && !ids({&c->unit}, {&c->device})) return Folded::Done;
    if (const auto* p = std::get_if<schemas::PersonRecorded>(&e.body)) {
      auto& person = get(batch, person_key(community, p->subject));
      if (person.value("erased", false)) return Folded::Done;  // forgotten stays forgotten
      if (!person.contains("recorded_at")) person["recorded_at"] = e.ingest_time_ms;
      // Retention counts from when they became a visitor, not from when they were first recorded.
      if (p->kind != schemas::PersonKind::Visitor) {
        person.erase("visitor_since");
      } else if (!person.contains("visitor_since")) {
        person["visitor_since"] = e.ingest_time_ms;
      }
      person["community"] = community;
      person["subject"] = p->subject;
      person["kind"] = schemas::to_string(p->kind);
      person["unit"] = p->unit;
      person["tokens"] = p->tokens;
      person["sealed"] = base64(p->sealed);
      person["updated_at"] = e.ingest_time_ms;
      person["erased"] = false;
    } else if (const auto* f = std::get_if<schemas::PersonForgotten>(&e.body)) {
      auto& person = get(batch, person_key(community, f->subject));
      if (person.value("erased", false)) return Folded::Done;
      person.erase("sealed");
      person.erase("tokens");  // nothing left to tie their gate and vehicle tokens to them
      person.erase("visitor_since");
      person["community"] = community;
      person["subject"] = f->subject;
      person["erased"] = true;
      person["erased_at"] = e.ingest_time_ms;
      person["erased_by"] = f->actor;
      person["erased_because"] = f->reason;
    } else if (const auto* r = std::get_if<schemas::PersonalDataRead>(&e.body)) {
      for (const auto& subject : r->subjects) {
        if (!schemas::valid_id(subject)) continue;
        const std::string unit = peek(batch, person_key(community, subject)).value("unit", "");
        get(batch, fmt::format("reads/{}/{}/{:020}/{}", community, unit.empty() ? kNone : unit, e.event_id, subject)) =
            json{{"community", community}, {"unit", unit},       {"subject", subject}, {"actor", r->actor},
                 {"fields", r->fields},    {"purpose", r->purpose}, {"at", e.ingest_time_ms}};
      }
    } else if (const auto* c = std::get_if<schemas::EmergencyContacts>(&e.body)) {
      auto& record = get(batch, fmt::format("contacts/{}/{}/{}", community, c->unit, c->device.empty() ? kNone : c->device));
      record = json{{"community", community}, {"unit", c->unit},         {"device", c->device},
                    {"wearer", c->wearer},    {"contacts", c->contacts}, {"updated_at", e.ingest_time_ms}};
    }
    return Folded::Done;
  }

  void write(Batch& batch) override {
    for (auto& [key, record] : changed_) batch.puts.emplace_back(key, record.dump());
    changed_.clear();
  }
  void evict(std::size_t) override {}
  std::size_t cached() const override { return 0; }

 private:
  static std::string person_key(const std::string& community, const std::string& subject) {
    return "people/" + community + "/" + subject;
  }
  json peek(Batch& batch, const std::string& key) const {
    if (auto it = changed_.find(key); it != changed_.end()) return it->second;
    auto stored = batch.view.get(key);
    json record = stored ? json::parse(*stored, nullptr, false) : json::object();
    return record.is_object() ? record : json::object();
  }
  // The record as this batch left it, else as stored, else a new one (which the batch writes).
  json& get(Batch& batch, const std::string& key) {
    auto it = changed_.find(key);
    if (it != changed_.end()) return it->second;
    auto stored = batch.view.get(key);
    json record = stored ? json::parse(*stored, nullptr, false) : json::object();
    if (!record.is_object()) record = json::object();
    return changed_.emplace(key, std::move(record)).first->second;
  }
  std::map<std::string, json> changed_;  // this batch's, by key
};

}  // namespace

std::unique_ptr<Projection> make_people(Projections&) { return std::make_unique<PeopleProjection>(); }

}  // namespace courtyard::processors
