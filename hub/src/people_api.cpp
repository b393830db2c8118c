// The privacy vault's routes (docs/api.md "People", docs/privacy.md). Personal fields exist in clear
// only here, in memory, between a request and the vault: the log and the projections carry what
// the vault sealed. Every showing of fields is a read-trail event appended before the answer.
#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "api_helpers.h"
#include "people.h"
#include "common/digest.h"
#include "common/text.h"
#include "processors/projector.h"
#include "processors/record.h"

namespace courtyard::hub {
namespace {

std::string person_key(const std::string& community, const std::string& subject) {
  return "people/" + community + "/" + subject;
}

constexpr std::size_t kMaxTokens = 16, kMaxContacts = 10;
constexpr const char* kNone = "~";  // a household's own contact list (no device): never an id

// The fields a role is shown: residents see their household's people's names, numbers and
// relationships, not identity numbers or the staff's notes.
PersonalFields shown_to(const Principal& who, PersonalFields fields) {
  if (who.role == Role::Resident) fields.id_number.clear(), fields.notes.clear();
  return fields;
}
std::vector<std::string> field_names_for(const Principal& who) {
  if (who.role == Role::Resident) return {"name", "phone", "relationship"};
  return std::vector<std::string>(std::begin(kPersonalFieldNames), std::end(kPersonalFieldNames));
}

// A record as stored: a person's with their ciphertext (served records leave it out).
std::optional<json> stored(const processors::Store::View& view, const std::string& key) {
  auto raw = view.get(key);
  if (!raw) return std::nullopt;
  json j = json::parse(key.starts_with("people/") ? *raw : processors::Projector::served_record(view, key, *raw), nullptr, false);
  if (!j.is_object()) return std::nullopt;
  return j;
}

// "{community}/{subject}[/{rest}]" of a path after /api/v1/people/.
struct PersonPath {
  std::string community, subject, rest;
};
std::optional<PersonPath> person_path(std::string_view tail) {
  PersonPath p;
  auto slash = tail.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  p.community = tail.substr(0, slash);
  tail.remove_prefix(slash + 1);
  slash = tail.find('/');
  p.subject = tail.substr(0, slash);
  if (slash != std::string_view::npos) p.rest = tail.substr(slash + 1);
  if (!schemas::valid_id(p.community) || !valid_subject(p.subject)) return std::nullopt;
  return p;
}

json without_ciphertext(json record) {
  record.erase("sealed");
  return record;
}

}  // namespace

std::optional<HttpResponse> Api::people_read(const Principal& who, const Target& target, std::string& route_name) {
  constexpr std::string_view kPeople = "/api/v1/people/", kAlerts = "/api/v1/alerts/";
  const std::string& path = target.path;
  if (path.starts_with(kAlerts) && path.ends_with("/contacts")) {
    route_name = "/api/v1/alerts/{id}/contacts";
    return alert_contacts(who, path.substr(kAlerts.size(), path.size() - kAlerts.size() - 9));
  }
  if (!path.starts_with(kPeople)) return std::nullopt;
  auto p = person_path(std::string_view(path).substr(kPeople.size()));
  if (!p || p->rest.empty()) return std::nullopt;  // /people/{c}/{s}: the record, as any projection's
  if (p->rest == "fields") {
    route_name = "/api/v1/people/{community}/{subject}/fields";
    auto purpose = target.query.find("purpose");
    return person_fields(who, p->community, p->subject, purpose == target.query.end() ? "" : purpose->second);
  }
  if (p->rest == "export") {
    route_name = "/api/v1/people/{community}/{subject}/export";
    return export_person(who, p->community, p->subject);
  }
  return error(404, "not_found", "no route for " + path);
}

std::optional<HttpResponse> Api::people_write(const Principal& who, const std::string& path, const std::string& body,
                                              std::string& route_name) {
  constexpr std::string_view kPeople = "/api/v1/people", kContacts = "/api/v1/contacts/";
  if (path == kPeople) {
    route_name = "/api/v1/people";
    return record_person(who, "", "", body);
  }
  if (path.starts_with(kContacts)) {
    route_name = "/api/v1/contacts/{community}";
    return set_contacts(who, path.substr(kContacts.size()), body);
  }
  if (!path.starts_with(std::string(kPeople) + "/")) return std::nullopt;
  auto p = person_path(std::string_view(path).substr(kPeople.size() + 1));
  if (!p) return error(404, "not_found", "no person at " + path + " (people/{community}/{subject})");
  if (p->rest.empty()) {
    route_name = "/api/v1/people/{community}/{subject}";
    return record_person(who, p->community, p->subject, body);
  }
  if (p->rest == "forget") {
    route_name = "/api/v1/people/{community}/{subject}/forget";
    return forget_person(who, p->community, p->subject, body);
  }
  return error(405, "method_not_allowed", "POST " + path + " is not supported");
}

// POST /api/v1/people (a new person: `subject` empty) or /api/v1/people/{c}/{s} (their record anew).
HttpResponse Api::record_person(const Principal& who, const std::string& path_community, const std::string& subject,
                                const std::string& body) {
  if (!sources_.vault) return error(503, "unavailable", "this hub has no vault");
  auto body_json = object_body(body, {});
  if (!body_json) return body_json.error();
  std::optional<json> existing;
  if (!subject.empty()) {
    existing = stored(sources_.store->view(), person_key(path_community, subject));
    if (!existing || !may_read(who, person_key(path_community, subject), scope_of(person_key(path_community, subject), *existing))) {
      return not_found_or_hidden("person", path_community + "/" + subject, existing.has_value());
    }
    if (existing->value("erased", false)) return error(410, "gone", "this person was forgotten; their record cannot change");
    if (body_json->contains("community") && (*body_json)["community"] != path_community) {
      return error(400, "bad_request", "a person stays in their community; record them anew there");
    }
    // What the request leaves out stays as it was; the personal fields are given whole.
    (*body_json)["community"] = path_community;
    for (const char* kept : {"kind", "unit", "tokens"}) {
      if (!body_json->contains(kept) && existing->contains(kept)) (*body_json)[kept] = (*existing)[kept];
    }
  }
  auto request = person_request_from_json(*body_json);
  if (!request) return error(400, "bad_request", request.error());
  const std::string& community = request->community;
  schemas::PersonRecorded person;
  person.kind = request->kind;
  person.unit = request->unit;
  person.tokens = request->tokens;
  const auto* fields = &request->fields;
  // Residents record their own household's family and visitors; staff and admin anyone of theirs.
  if (!may_act(who, community, person.unit) ||
      (who.role == Role::Resident && person.kind != schemas::PersonKind::Family && person.kind != schemas::PersonKind::Visitor)) {
    return forbidden(who.role == Role::Resident ? "a resident records their own household's family and visitors"
                                                : "a staff token records people of its own community");
  }
  if (existing) {
    if (!may_act(who, community, existing->value("unit", ""))) return forbidden("this person belongs to another household");
    const std::string was = existing->value("kind", "");
    if (who.role == Role::Resident && was != "family" && was != "visitor") {
      return forbidden("a resident changes their household's family and visitors only");
    }
    // A kind decides retention (a visitor's record is erased after its days): only admin changes it.
    if (was != schemas::to_string(person.kind) && who.role != Role::Admin) {
      return forbidden("only an admin token changes what kind of person someone is");
    }
  }
  person.subject = subject;
  if (person.subject.empty()) {
    auto made = sources_.vault->create_subject();
    if (!made) return error(503, "unavailable", "the vault cannot make a key: " + made.error().detail);
    person.subject = *made;
  }
  auto sealed = sources_.vault->seal(community, person.subject, *fields);
  if (!sealed) {
    if (sealed.error().code == VaultError::Code::Erased) return error(410, "gone", "this person's key is destroyed");
    return error(503, "unavailable", "the vault cannot seal: " + sealed.error().detail);
  }
  person.sealed = std::move(*sealed);
  const std::string id = person.subject;
  auto offset = append("people", community, std::move(person));
  if (!offset) return offset.error();
  return json_response(subject.empty() ? 201 : 202,
                       request_fields(json{{"accepted", true}, {"community", community}, {"subject", id},
                                           {"href", "/api/v1/people/" + community + "/" + id}},
                                      *offset));
}

HttpResponse Api::forget_person(const Principal& who, const std::string& community, const std::string& subject,
                                const std::string& body) {
  if (who.role != Role::Admin) return forbidden("only an admin token forgets a person");
  if (!sources_.vault) return error(503, "unavailable", "this hub has no vault");
  auto request = object_body(body, {"reason"});
  if (!request) return request.error();
  const std::string reason = request->value("reason", "");
  if (reason.empty() || reason.size() > 200 || !valid_utf8(reason)) {
    return error(400, "bad_request", "reason is required: 1..200 bytes of text (the person's request, retention, ...)");
  }
  auto view = sources_.store->view();
  auto existing = stored(view, person_key(community, subject));
  // The record, in this community: a subject id under another community's name forgets nobody.
  if (!existing) return not_found_or_hidden("person", community + "/" + subject, false);
  // The key first: once it is gone the fields are, whatever happens next. The event says so
  // afterwards; a retry after a failed append appends it then (destroying twice is harmless).
  auto destroyed = sources_.vault->destroy(subject);
  if (!destroyed) return error(503, "unavailable", "the vault cannot destroy the key: " + destroyed.error().detail);
  auto offset = append("people", community, schemas::PersonForgotten{subject, actor_of(who), reason});
  if (!offset) return offset.error();
  return json_response(202, request_fields(json{{"accepted", true}, {"community", community}, {"subject", subject},
                                                 {"erased", true}, {"key_destroyed_now", *destroyed}},
                                            *offset));
}

HttpResponse Api::set_contacts(const Principal& who, const std::string& community, const std::string& body) {
  if (!schemas::valid_id(community)) return error(404, "not_found", "use POST /api/v1/contacts/{community}");
  auto request = object_body(body, {"unit", "device", "wearer"});
  if (!request) return request.error();
  schemas::EmergencyContacts c;
  c.unit = request->value("unit", "");
  c.device = request->value("device", "");
  c.wearer = request->value("wearer", "");
  if (!schemas::valid_id(c.unit)) return error(400, "bad_request", "unit is required: 1..64 of [A-Za-z0-9_.-]");
  if (!may_act(who, community, c.unit)) return forbidden("contacts are set by admin, the community's staff or the household");
  auto view = sources_.store->view();
  if (!c.device.empty()) {
    auto device = stored(view, processors::Projector::device_key(c.device));
    if (!schemas::valid_id(c.device) || !device || device->value("community", "") != community ||
        device->value("unit", "") != c.unit) {
      return error(400, "bad_request", "device " + c.device + " is not a device of " + community + "/" + c.unit);
    }
  }
  // People of the community (a resident: of their own household), not forgotten. The same answer
  // whether a subject does not exist or is not the caller's to name.
  auto known = [&](const std::string& subject) {
    auto person = valid_subject(subject) ? stored(view, person_key(community, subject)) : std::nullopt;
    return person && !person->value("erased", false) &&
           (who.role != Role::Resident || person->value("unit", "") == c.unit);
  };
  if (!c.wearer.empty() && !known(c.wearer)) return error(400, "bad_request", "wearer " + c.wearer + " is not a person of " + community);
  auto list = request->find("contacts");
  if (list == request->end() || !list->is_array() || list->size() > kMaxContacts) {
    return error(400, "bad_request", fmt::format("contacts must be a list of at most {} subject ids, first to call first", kMaxContacts));
  }
  for (const auto& s : *list) {
    if (!s.is_string() || !known(s.get<std::string>())) {
      return error(400, "bad_request", "each contact is the subject id of a person of " + community + " (POST /api/v1/people)");
    }
    if (std::find(c.contacts.begin(), c.contacts.end(), s.get<std::string>()) != c.contacts.end()) {
      return error(400, "bad_request", "a contact appears twice");
    }
    c.contacts.push_back(s.get<std::string>());
  }
  const std::string key = fmt::format("{}/{}/{}", community, c.unit, c.device.empty() ? kNone : c.device);
  auto offset = append("people", community, std::move(c));
  if (!offset) return offset.error();
  return json_response(202, request_fields(json{{"accepted", true}, {"href", "/api/v1/contacts/" + key}}, *offset));
}

std::expected<json, HttpResponse> Api::reveal(const Principal& who, const std::string& community,
                                              const std::vector<std::string>& subjects, const std::string& purpose) {
  auto view = sources_.store->view();
  json people = json::array();
  std::vector<std::string> opened;
  for (const auto& subject : subjects) {
    auto record = stored(view, person_key(community, subject));
    json shown{{"subject", subject}};
    if (!record) {
      shown["unknown"] = true;
      people.push_back(std::move(shown));
      continue;
    }
    if (record->value("erased", false)) {
      shown["erased"] = true;
    } else if (!may_see_personal(who, community, record->value("unit", ""))) {
      shown["withheld"] = true;  // the caller's role may not see this person: nothing of them
    } else if (!sources_.vault) {
      return std::unexpected(error(503, "unavailable", "this hub has no vault"));
    } else {
      auto sealed = base64_decode(record->value("sealed", ""));
      auto fields = sealed ? sources_.vault->unseal(community, subject, *sealed)
                           : std::unexpected(VaultError{VaultError::Code::Damaged, "no sealed fields"});
      if (fields) {
        shown["kind"] = record->value("kind", "");
        shown["unit"] = record->value("unit", "");
        shown["fields"] = to_json(shown_to(who, *fields));
        shown["erased"] = false;
        opened.push_back(subject);
      } else if (fields.error().code == VaultError::Code::Erased) {
        // No key, and the log does not (yet) say forgotten: being forgotten right now, or a hub
        // whose vault is not the one the person was recorded in (several hubs: docs/privacy.md).
        shown["error"] = "no key for this person in this hub's vault";
      } else {
        shown["error"] = "damaged";
      }
    }
    people.push_back(std::move(shown));
  }
  if (!opened.empty()) {
    // No answer with fields unless the read is in the log: what cannot be recorded is not shown.
    auto offset = append("people", community, schemas::PersonalDataRead{actor_of(who), opened, field_names_for(who), purpose});
    if (!offset) return std::unexpected(offset.error());
    if (*offset < 0) return std::unexpected(error(503, "unavailable", "the read trail could not be recorded in time; nothing shown"));
  }
  return people;
}

HttpResponse Api::person_fields(const Principal& who, const std::string& community, const std::string& subject,
                                const std::string& purpose) {
  auto view = sources_.store->view();
  auto record = stored(view, person_key(community, subject));
  if (!record || !may_read(who, person_key(community, subject), scope_of(person_key(community, subject), *record))) {
    return not_found_or_hidden("person", community + "/" + subject, record.has_value());
  }
  if (!record->value("erased", false) && !may_see_personal(who, community, record->value("unit", ""))) {
    return forbidden("this token may not see personal fields (auditors read the read trail, not the data)");
  }
  if (purpose.size() > 200 || !valid_utf8(purpose)) return error(400, "bad_request", "purpose is up to 200 bytes of text");
  auto people = reveal(who, community, {subject}, purpose.empty() ? "person" : "person: " + purpose);
  if (!people) return people.error();
  json out = without_ciphertext(*record);
  out["id"] = community + "/" + subject;
  out.update(people->at(0));
  return json_response(200, out);
}

HttpResponse Api::alert_contacts(const Principal& who, const std::string& alert_id) {
  auto view = sources_.store->view();
  const auto key = processors::Projector::alert_key(alert_id);
  auto raw = view.get(key);
  json alert = raw ? processors::parse_record(*raw) : json();
  if (!raw || !alert.is_object() || !may_read(who, key, scope_of("alerts/", alert))) {
    return not_found_or_hidden("alert", alert_id, raw.has_value());
  }
  const std::string community = alert.value("community", ""), unit = alert.value("unit", ""),
                    device = alert.value("device", "");
  json out{{"alert", alert_id}, {"community", community}, {"unit", unit}, {"device", device}};
  // A wearable's own list first (its wearer's family), else the household's.
  std::optional<json> list;
  if (!unit.empty() && !device.empty()) list = stored(view, fmt::format("contacts/{}/{}/{}", community, unit, device));
  if (!list && !unit.empty()) list = stored(view, fmt::format("contacts/{}/{}/{}", community, unit, kNone));
  std::vector<std::string> subjects;
  std::string wearer;
  if (list) {
    wearer = list->value("wearer", "");
    if (!wearer.empty()) subjects.push_back(wearer);
    for (const auto& s : list->value("contacts", json::array())) subjects.push_back(s.get<std::string>());
  }
  auto people = reveal(who, community, subjects, "alert:" + alert_id);
  if (!people) return people.error();
  json contacts = json::array();
  for (std::size_t i = 0; i < people->size(); ++i) {
    if (!wearer.empty() && i == 0) {
      out["wearer"] = people->at(0);
      continue;
    }
    json c = people->at(i);
    c["order"] = contacts.size() + 1;
    contacts.push_back(std::move(c));
  }
  out["contacts"] = std::move(contacts);
  return json_response(200, out);
}

std::expected<PersonRequest, std::string> person_request_from_json(const json& j) {
  if (!j.is_object()) return std::unexpected(std::string("body must be a JSON object"));
  static const std::set<std::string, std::less<>> kKnown = {"community", "kind",         "unit",      "tokens", "name",
                                                            "phone",     "relationship", "id_number", "notes"};
  for (const auto& [field, value] : j.items()) {
    if (!kKnown.contains(field)) return std::unexpected(field + " is not a field of a person");
    if ((field == "community" || field == "kind" || field == "unit") && !value.is_string()) {
      return std::unexpected(field + " must be a string");
    }
  }
  PersonRequest r;
  r.community = j.value("community", "");
  if (!schemas::valid_id(r.community)) return std::unexpected(std::string("community must be 1..64 of [A-Za-z0-9_.-]"));
  auto kind = schemas::parse_person_kind(j.value("kind", "resident"));
  if (!kind) return std::unexpected(std::string("kind must be resident, family, visitor or staff"));
  r.kind = *kind;
  r.unit = j.value("unit", "");
  if (!r.unit.empty() && !schemas::valid_id(r.unit)) return std::unexpected(std::string("unit must be 1..64 of [A-Za-z0-9_.-]"));
  if (r.unit.empty() && r.kind != schemas::PersonKind::Staff) {
    return std::unexpected(std::string("residents, family and visitors belong to a household: unit is required"));
  }
  if (auto tokens = j.find("tokens"); tokens != j.end()) {
    if (!tokens->is_array() || tokens->size() > kMaxTokens) {
      return std::unexpected(fmt::format("tokens must be a list of at most {} tokens", kMaxTokens));
    }
    for (const auto& t : *tokens) {
      if (!t.is_string() || !schemas::valid_id(t.get<std::string>())) {
        return std::unexpected(std::string("each token is 1..64 of [A-Za-z0-9_.-] (a gate credential's or plate's token)"));
      }
      r.tokens.push_back(t.get<std::string>());
    }
  }
  json fields_only = json::object();
  for (auto name : kPersonalFieldNames) {
    if (auto it = j.find(name); it != j.end()) fields_only[std::string(name)] = *it;
  }
  auto fields = personal_fields_from_json(fields_only);
  if (!fields) return std::unexpected(fields.error());
  r.fields = std::move(*fields);
  return r;
}

std::optional<json> person_export(const processors::Store::View& view, const Vault& vault, const std::string& community,
                                  const std::string& subject) {
  auto record = valid_subject(subject) ? stored(view, person_key(community, subject)) : std::nullopt;
  if (!record) return std::nullopt;
  json person = without_ciphertext(*record);
  if (person.value("erased", false)) {
    person["erased"] = true;
  } else if (auto sealed = base64_decode(record->value("sealed", "")); !sealed) {
    person["error"] = "damaged";
  } else if (auto fields = vault.unseal(community, subject, *sealed)) {
    person["fields"] = to_json(*fields);
  } else {
    person["error"] = fields.error().code == VaultError::Code::Erased ? "no key for this person in this vault" : "damaged";
  }
  const std::string unit = record->value("unit", "");
  // A token counts as theirs only when the registry puts it in their household: a token someone
  // attached to them that is a neighbour's must not bring the neighbour's passes into this answer.
  std::set<std::string> tokens, unconfirmed;
  for (const auto& t : record->value("tokens", json::array())) {
    if (!t.is_string()) continue;
    const auto token = t.get<std::string>();
    bool confirmed = false;
    for (const char* kind : {"person", "vehicle"}) {
      auto entry = stored(view, processors::Projector::registry_key(community, kind, token));
      confirmed |= entry && !unit.empty() && entry->value("unit", "") == unit;
    }
    (confirmed ? tokens : unconfirmed).insert(token);
  }
  auto scan_all = [&](const std::string& prefix, auto&& keep) {
    json items = json::array();
    std::string after;
    for (;;) {
      auto chunk = view.scan(prefix, after, 256);
      if (chunk.empty()) break;
      for (const auto& [key, raw] : chunk) {
        after = key;
        json j = json::parse(processors::Projector::served_record(view, key, raw), nullptr, false);
        if (j.is_object() && keep(j)) {
          j["id"] = key.substr(key.find('/') + 1);
          items.push_back(std::move(j));
        }
      }
    }
    return items;
  };
  const json trail = scan_all("reads/" + community + "/", [&](const json& j) { return j.value("subject", "") == subject; });
  if (person.value("erased", false)) {  // nothing ties them to anything any more but the trail
    return json{{"person", person}, {"reads", trail}};
  }
  // The lists of their household that name them: where they stand in each, not who else is on it.
  json lists = json::array();
  std::set<std::string> worn;  // the wearables they wear
  for (auto& l : scan_all("contacts/" + community + "/" + unit + "/", [](const json&) { return true; })) {
    json mine{{"id", l["id"]}, {"unit", l.value("unit", "")}, {"device", l.value("device", "")}};
    if (l.value("wearer", "") == subject) {
      mine["as"] = "wearer";
      if (!l.value("device", "").empty()) worn.insert(l.value("device", ""));
    } else {
      const auto contacts = l.value("contacts", json::array());
      auto at = std::find(contacts.begin(), contacts.end(), json(subject));
      if (at == contacts.end()) continue;
      mine["as"] = "contact";
      mine["order"] = std::distance(contacts.begin(), at) + 1;
    }
    lists.push_back(std::move(mine));
  }
  return json{{"person", person},
              {"households", unit.empty() ? json::array() : json::array({unit})},
              {"contact_lists", lists},
              {"registry", scan_all("registry/" + community + "/",
                                    [&](const json& j) { return tokens.contains(j.value("id", "")); })},
              {"alerts", scan_all("alerts/" + community + ":",
                                  [&](const json& j) {
                                    return tokens.contains(j.value("subject", "")) || worn.contains(j.value("device", ""));
                                  })},
              {"reads", trail},
              {"tokens", tokens},
              {"tokens_not_in_registry", unconfirmed}};
}

HttpResponse Api::export_person(const Principal& who, const std::string& community, const std::string& subject) {
  if (who.role != Role::Admin) return forbidden("an access request's export is for admin tokens");
  if (!sources_.vault) return error(503, "unavailable", "this hub has no vault");
  auto out = person_export(sources_.store->view(), *sources_.vault, community, subject);
  if (!out) return not_found_or_hidden("person", community + "/" + subject, false);
  if (out->at("person").contains("fields")) {
    const std::vector<std::string> names(std::begin(kPersonalFieldNames), std::end(kPersonalFieldNames));
    auto offset = append("people", community, schemas::PersonalDataRead{actor_of(who), {subject}, names, "export"});
    if (!offset) return offset.error();
    if (*offset < 0) return error(503, "unavailable", "the read trail could not be recorded in time; nothing shown");
  }
  (*out)["passes"] = {{"note", "the log holds every gate and vehicle pass of the tokens: `courtyard people export` adds them"}};
  return json_response(200, *out);
}

}  // namespace courtyard::hub
