// The privacy vault through the API: people recorded sealed, contacts on alerts shown to the roles
// allowed, every showing in the read trail first, forgetting, access requests, retention.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "api_sources.h"
#include "events.h"
#include "hub/api.h"
#include "hub/vault.h"
#include "privacy_sweep.h"
#include "processors/projector.h"
#include "temp_dir.h"

using namespace courtyard;
using json = nlohmann::json;

namespace {

constexpr std::int64_t kT0 = 1795950000000;

// A hub with a vault whose appends are folded at once, as ingest and the processors would.
struct Compound {
  test::TempDir dir;
  std::unique_ptr<processors::Store> store;
  std::unique_ptr<processors::Projector> projector;
  Metrics metrics;
  hub::TokenStore tokens{dir.path() / "tokens.json"};
  std::optional<hub::Vault> vault;
  std::unique_ptr<hub::Api> api;
  std::vector<schemas::Event> appended;
  std::int64_t offset = 0, now_ms = kT0;
  bool log_down = false;
  std::string admin = *tokens.add(hub::Role::Admin, "", "", "dpo");
  std::string staff = *tokens.add(hub::Role::Staff, "c1", "", "night desk");
  std::string other_staff = *tokens.add(hub::Role::Staff, "c2", "", "");
  std::string auditor = *tokens.add(hub::Role::Auditor, "", "", "");
  std::string household = *tokens.add(hub::Role::Resident, "c1", "b1-101", "li family");
  std::string neighbour = *tokens.add(hub::Role::Resident, "c1", "b1-102", "");

  Compound() {
    processors::StoreConfig config;
    config.dir = dir.str("state");
    store = std::move(*processors::Store::open(config));
    projector = std::make_unique<processors::Projector>(*store, processors::ProjectorConfig{});
    vault.emplace(*hub::Vault::open(dir.path() / "keys", dir.path() / "master"));
    schemas::Event reg;
    reg.device = DeviceId("wear-9");
    reg.community = CommunityId("c1");
    reg.device_time_ms = kT0;
    reg.body = schemas::DeviceRegistered{schemas::DeviceKind::Wearable, "b1-101", "Building 1, 101"};
    fold(reg);
    auto sources = test::api_sources(store.get(), &tokens);
    sources.vault = &*vault;
    sources.append = [this](const schemas::Event& e) -> std::expected<std::int64_t, std::string> {
      if (log_down) return std::unexpected(std::string("broker down"));
      appended.push_back(e);
      fold(e);
      return offset;
    };
    api = std::make_unique<hub::Api>(sources, metrics);
  }

  void fold(schemas::Event e) {
    e.event_id = static_cast<std::uint64_t>(offset + 1);
    if (e.device_time_ms == 0) e.device_time_ms = now_ms;
    e.ingest_time_ms = now_ms;
    const std::vector<processors::LogMessage> batch{test::log_message(e, offset++)};
    REQUIRE(projector->apply(batch));
  }

  hub::HttpResponse call(const std::string& method, const std::string& target, const std::string& token,
                         const json& body = nullptr) {
    return api->handle({method, target, body.is_null() ? "" : body.dump(), "Bearer " + token});
  }
  json ok(const std::string& method, const std::string& target, const std::string& token, const json& body = nullptr) {
    auto res = call(method, target, token, body);
    INFO(res.body);
    REQUIRE(res.status / 100 == 2);
    return json::parse(res.body);
  }
  std::string record(const json& person, const std::string& token = "") {
    return ok("POST", "/api/v1/people", token.empty() ? admin : token, person)["subject"];
  }
  std::size_t reads_in_log() const {
    return static_cast<std::size_t>(std::count_if(appended.begin(), appended.end(), [](const schemas::Event& e) {
      return std::holds_alternative<schemas::PersonalDataRead>(e.body);
    }));
  }
};

// A family: the wearer (an elder living alone), her daughter and her son as contacts, and a fall.
struct Family : Compound {
  std::string mother = record({{"community", "c1"}, {"kind", "resident"}, {"unit", "b1-101"}, {"name", "Li Lan"},
                               {"tokens", {"face-li-lan"}}});
  std::string daughter = record({{"community", "c1"}, {"kind", "family"}, {"unit", "b1-101"}, {"name", "Wang Mei"},
                                 {"phone", "+86 138 0013 8000"}, {"relationship", "daughter"}});
  std::string son = record({{"community", "c1"}, {"kind", "family"}, {"unit", "b1-101"}, {"name", "Wang Lei"},
                            {"phone", "+86 139 0000 1111"}, {"relationship", "son"}});
  std::string alert;
  Family() {
    ok("POST", "/api/v1/contacts/c1", admin,
       {{"unit", "b1-101"}, {"device", "wear-9"}, {"wearer", mother}, {"contacts", {daughter, son}}});
    schemas::Event fall;
    fall.device = DeviceId("wear-9");
    fall.community = CommunityId("c1");
    fall.boot = 1;
    fall.seq = 1;
    fall.body = schemas::WearableAlarm{schemas::AlarmKind::Fall, false};
    fold(fall);
    auto alerts = ok("GET", "/api/v1/alerts?community=c1&rule=fall", admin);
    REQUIRE(alerts["count"] == 1);
    alert = alerts["items"][0]["id"];
  }
  std::string log_bytes() const {
    std::string all;
    for (const auto& e : appended) all += schemas::encode(e);
    return all;
  }
};

}  // namespace

TEST_SUITE("privacy vault API") {
  TEST_CASE("a person recorded through the API reaches the log and the projections only sealed") {
    Family f;
    const auto log = f.log_bytes();
    for (const char* plain : {"Wang Mei", "138 0013", "daughter", "Li Lan"}) {
      CAPTURE(plain);
      CHECK(log.find(plain) == std::string::npos);
      for (const auto& [key, value] : f.store->view().scan("", "", 100000)) CHECK(value.find(plain) == std::string::npos);
    }
    auto person = f.ok("GET", "/api/v1/people/c1/" + f.daughter, f.admin);
    CHECK(person["kind"] == "family");
    CHECK(person["unit"] == "b1-101");
    CHECK_FALSE(person.contains("sealed"));
    CHECK_FALSE(person.contains("fields"));
    CHECK(f.reads_in_log() == 0);  // the record without fields is no read of personal data
  }

  TEST_CASE("staff on a fall alert are shown whom to call, in order, and the read is in the log before the answer") {
    Family f;
    auto card = f.ok("GET", "/api/v1/alerts/" + f.alert + "/contacts", f.staff);
    CHECK(card["wearer"]["fields"]["name"] == "Li Lan");
    REQUIRE(card["contacts"].size() == 2);
    CHECK(card["contacts"][0]["order"] == 1);
    CHECK(card["contacts"][0]["fields"]["name"] == "Wang Mei");
    CHECK(card["contacts"][0]["fields"]["phone"] == "+86 138 0013 8000");
    CHECK(card["contacts"][1]["fields"]["relationship"] == "son");
    REQUIRE(f.reads_in_log() == 1);
    const auto& read = std::get<schemas::PersonalDataRead>(f.appended.back().body);
    CHECK(read.purpose == "alert:" + f.alert);
    CHECK(read.actor.find("night desk") != std::string::npos);
    CHECK(read.subjects == std::vector<std::string>{f.mother, f.daughter, f.son});
    // The household sees who read its people's data.
    auto trail = f.ok("GET", "/api/v1/reads?unit=b1-101", f.household);
    CHECK(trail["count"] == 3);
    CHECK(trail["items"][0]["purpose"] == "alert:" + f.alert);
    CHECK(f.ok("GET", "/api/v1/reads", f.neighbour)["count"] == 0);
  }

  TEST_CASE("who may be shown personal fields: admin, the community's staff, the household; never an auditor") {
    Family f;
    CHECK(f.call("GET", "/api/v1/people/c1/" + f.daughter + "/fields", f.auditor).status == 403);
    CHECK(f.call("GET", "/api/v1/people/c1/" + f.daughter + "/fields", f.other_staff).status == 404);
    CHECK(f.call("GET", "/api/v1/people/c1/" + f.daughter + "/fields", f.neighbour).status == 404);
    CHECK(f.call("GET", "/api/v1/alerts/" + f.alert + "/contacts", f.neighbour).status == 404);
    CHECK(f.reads_in_log() == 0);
    CHECK(f.ok("GET", "/api/v1/people/c1/" + f.daughter + "/fields?purpose=called+back", f.household)["fields"]["name"] ==
          "Wang Mei");
    CHECK(std::get<schemas::PersonalDataRead>(f.appended.back().body).purpose == "person: called back");
    // The household sees its people's names and numbers, not the staff's notes or identity numbers.
    f.ok("POST", "/api/v1/people/c1/" + f.daughter, f.admin,
         {{"name", "Wang Mei"}, {"notes", "speaks to the night desk only"}, {"id_number", "110101199003071234"}});
    auto seen = f.ok("GET", "/api/v1/people/c1/" + f.daughter + "/fields", f.household);
    CHECK(seen["fields"]["notes"] == "");
    CHECK(seen["fields"]["id_number"] == "");
    CHECK(std::get<schemas::PersonalDataRead>(f.appended.back().body).fields ==
          std::vector<std::string>{"name", "phone", "relationship"});
    CHECK(f.ok("GET", "/api/v1/people/c1/" + f.daughter + "/fields", f.staff)["fields"]["notes"] == "speaks to the night desk only");
    const auto reads_before = f.reads_in_log();
    // An auditor reads the trail, not the data: the contacts answer withholds every person whole.
    auto card = f.ok("GET", "/api/v1/alerts/" + f.alert + "/contacts", f.auditor);
    CHECK(card["contacts"][0]["withheld"] == true);
    CHECK_FALSE(card["contacts"][0].contains("fields"));
    CHECK_FALSE(card["contacts"][0].contains("unit"));
    CHECK(f.reads_in_log() == reads_before);
    CHECK(f.ok("GET", "/api/v1/reads", f.auditor)["count"] == 3);

    using hub::Principal;
    using hub::Role;
    CHECK(hub::may_see_personal(Principal{"t", Role::Admin, "", "", ""}, "c9", "u"));
    CHECK(hub::may_see_personal(Principal{"t", Role::Staff, "c1", "", ""}, "c1", ""));
    CHECK_FALSE(hub::may_see_personal(Principal{"t", Role::Staff, "c1", "", ""}, "c2", "u"));
    CHECK_FALSE(hub::may_see_personal(Principal{"t", Role::Resident, "c1", "u", ""}, "c1", ""));
    CHECK_FALSE(hub::may_see_personal(Principal{"t", Role::Resident, "c1", "", ""}, "c1", ""));
    CHECK_FALSE(hub::may_see_personal(Principal{"t", Role::Auditor, "", "", ""}, "c1", "u"));
  }

  TEST_CASE("when the read cannot be recorded, nothing is shown") {
    Family f;
    f.log_down = true;
    for (const std::string& target : {"/api/v1/alerts/" + f.alert + "/contacts", "/api/v1/people/c1/" + f.daughter + "/fields",
                                      "/api/v1/people/c1/" + f.daughter + "/export"}) {
      auto res = f.call("GET", target, f.admin);
      CHECK(res.status == 503);
      CHECK(res.body.find("Wang Mei") == std::string::npos);
      CHECK(res.body.find("Li Lan") == std::string::npos);
    }
  }

  TEST_CASE("forgetting the daughter: her key is destroyed, she shows as erased everywhere, her mother's data stays") {
    Family f;
    CHECK(f.call("POST", "/api/v1/people/c1/" + f.daughter + "/forget", f.staff, {{"reason", "x"}}).status == 403);
    CHECK(f.call("POST", "/api/v1/people/c1/" + f.daughter + "/forget", f.admin, json::object()).status == 400);
    auto forgot = f.ok("POST", "/api/v1/people/c1/" + f.daughter + "/forget", f.admin, {{"reason", "her request of 2026-11-30"}});
    CHECK(forgot["key_destroyed_now"] == true);
    CHECK_FALSE(f.vault->holds(f.daughter));
    const auto& event = std::get<schemas::PersonForgotten>(f.appended.back().body);
    CHECK(event.subject == f.daughter);
    CHECK(event.actor.find("dpo") != std::string::npos);

    auto person = f.ok("GET", "/api/v1/people/c1/" + f.daughter + "/fields", f.admin);
    CHECK(person["erased"] == true);
    CHECK(person["erased_because"] == "her request of 2026-11-30");
    CHECK_FALSE(person.contains("fields"));
    auto card = f.ok("GET", "/api/v1/alerts/" + f.alert + "/contacts", f.staff);
    CHECK(card["contacts"][0]["erased"] == true);
    CHECK_FALSE(card["contacts"][0].contains("fields"));
    CHECK(card["contacts"][1]["fields"]["name"] == "Wang Lei");
    // Her record can no longer change, and forgetting again is harmless.
    CHECK(f.call("POST", "/api/v1/people/c1/" + f.daughter, f.admin, {{"name", "Wang Mei"}}).status == 410);
    CHECK(f.ok("POST", "/api/v1/people/c1/" + f.daughter + "/forget", f.admin, {{"reason", "again"}})["key_destroyed_now"] == false);
    // Her ciphertext is gone from the projections too.
    CHECK(f.store->view().get("people/c1/" + f.daughter)->find("sealed") == std::string::npos);

    SUBCASE("an access request for her mother still answers whole") {
      auto exported = f.ok("GET", "/api/v1/people/c1/" + f.mother + "/export", f.admin);
      CHECK(exported["person"]["fields"]["name"] == "Li Lan");
      CHECK(exported["households"] == json::array({"b1-101"}));
      CHECK(exported["contact_lists"].size() == 1);
      CHECK(exported["alerts"].size() == 1);  // the fall, by the wearable she wears
      CHECK(exported["reads"].size() == 1);   // the staff's read of the contacts card
      CHECK(std::get<schemas::PersonalDataRead>(f.appended.back().body).purpose == "export");
      CHECK(f.call("GET", "/api/v1/people/c1/" + f.mother + "/export", f.staff).status == 403);
    }
  }

  TEST_CASE("hostile people requests are refused with a reason and write nothing") {
    Compound c;
    const auto before = c.appended.size();
    auto refused = [&](const std::string& method, const std::string& target, const std::string& token, const json& body) {
      auto res = c.call(method, target, token, body);
      CAPTURE(target);
      CAPTURE(body.dump());
      CHECK(res.status / 100 == 4);
    };
    refused("POST", "/api/v1/people", c.admin, {{"community", "c1"}, {"unit", "b1-101"}});  // no name
    refused("POST", "/api/v1/people", c.admin, {{"community", "c1"}, {"unit", "b1-101"}, {"name", "a"}, {"password", "x"}});
    refused("POST", "/api/v1/people", c.admin, {{"community", "../c1"}, {"unit", "b1-101"}, {"name", "a"}});
    refused("POST", "/api/v1/people", c.admin, {{"community", "c1"}, {"unit", "b1-101"}, {"name", "a"}, {"kind", "king"}});
    refused("POST", "/api/v1/people", c.admin, {{"community", "c1"}, {"unit", "b1-101"}, {"name", "a"}, {"tokens", {"a b"}}});
    CHECK(c.api->handle({"POST", "/api/v1/people", "{\"community\":\"c1\",\"unit\":\"b1-101\",\"name\":\"\xc3\x28\"}",
                         "Bearer " + c.admin}).status == 400);
    refused("POST", "/api/v1/people", c.admin, {{"community", "c1"}, {"unit", 7}, {"name", "a"}});
    refused("POST", "/api/v1/people", c.auditor, {{"community", "c1"}, {"unit", "b1-101"}, {"name", "a"}});
    refused("POST", "/api/v1/people", c.other_staff, {{"community", "c1"}, {"unit", "b1-101"}, {"name", "a"}});
    refused("POST", "/api/v1/people", c.household, {{"community", "c1"}, {"unit", "b1-101"}, {"name", "a"}, {"kind", "staff"}});
    refused("POST", "/api/v1/people", c.household, {{"community", "c1"}, {"unit", "b1-102"}, {"name", "a"}, {"kind", "family"}});
    refused("POST", "/api/v1/people/c1/p-000000000000000000000000", c.admin, {{"name", "a"}});  // nobody
    refused("POST", "/api/v1/people/c1/..%2F..%2Fkeys/forget", c.admin, {{"reason", "x"}});
    refused("GET", "/api/v1/people/c1/p-000000000000000000000000/fields", c.admin, nullptr);
    refused("POST", "/api/v1/contacts/c1", c.admin, {{"unit", "b1-101"}, {"contacts", {"p-000000000000000000000000"}}});
    refused("POST", "/api/v1/contacts/c1", c.admin, {{"unit", "b1-101"}, {"contacts", "p-1"}});
    refused("POST", "/api/v1/contacts/c1", c.admin, {{"unit", "b1-101"}, {"device", "meter-x"}, {"contacts", json::array()}});
    refused("POST", "/api/v1/contacts/c1", c.neighbour, {{"unit", "b1-101"}, {"contacts", json::array()}});
    CHECK(c.appended.size() == before);
    CHECK(c.vault->subjects().empty());  // no key made for a refused request
    // Records that exist, attacked by those who may not change them so.
    const auto resident = c.record({{"community", "c1"}, {"kind", "resident"}, {"unit", "b1-101"}, {"name", "Li Lan"}});
    const auto neighbour = c.record({{"community", "c1"}, {"kind", "resident"}, {"unit", "b1-102"}, {"name", "Zhou"}});
    const auto after_records = c.appended.size();
    // Made a visitor, she would be erased by the next retention sweep: only admin changes a kind.
    refused("POST", "/api/v1/people/c1/" + resident, c.staff, {{"name", "Li Lan"}, {"kind", "visitor"}});
    refused("POST", "/api/v1/people/c1/" + resident, c.household, {{"name", "Li Lan"}, {"kind", "visitor"}});
    refused("POST", "/api/v1/people/c1/" + resident, c.household, {{"name", "Li Lan"}});  // a resident, not family
    // Forgetting under another community's name forgets nobody and destroys no key.
    refused("POST", "/api/v1/people/c2/" + resident + "/forget", c.admin, {{"reason", "x"}});
    CHECK(c.vault->holds(resident));
    // A household names only its own people; a wearable only of its own unit.
    refused("POST", "/api/v1/contacts/c1", c.household, {{"unit", "b1-101"}, {"contacts", {neighbour}}});
    refused("POST", "/api/v1/contacts/c1", c.household, {{"unit", "b1-101"}, {"wearer", neighbour}, {"contacts", json::array()}});
    refused("POST", "/api/v1/contacts/c1", c.admin, {{"unit", "b1-102"}, {"device", "wear-9"}, {"contacts", json::array()}});
    // Text the log could not carry is refused before anything is destroyed or appended.
    CHECK(c.api->handle({"POST", "/api/v1/people/c1/" + resident + "/forget", "{\"reason\":\"\xff\"}", "Bearer " + c.admin}).status == 400);
    CHECK(c.vault->holds(resident));
    CHECK(c.appended.size() == after_records);
    // A household records its own family contact; the vault's id is the hub's, never the caller's.
    auto made = c.ok("POST", "/api/v1/people", c.household,
                     {{"community", "c1"}, {"unit", "b1-101"}, {"name", "Wang Mei"}, {"kind", "family"}});
    CHECK(hub::valid_subject(made["subject"].get<std::string>()));
  }

  TEST_CASE("retention counts from when someone became a visitor, and a forgotten person's record keeps no tokens") {
    Compound c;
    const auto li = c.record({{"community", "c1"}, {"kind", "resident"}, {"unit", "b1-101"}, {"name", "Li"}, {"tokens", {"face-li"}}});
    c.now_ms = kT0 + 40 * 86'400'000LL;
    c.ok("POST", "/api/v1/people/c1/" + li, c.admin, {{"name", "Li"}, {"kind", "visitor"}});
    const hub::RetentionPolicy policy{30};
    CHECK(hub::due_for_erasure(c.store->view(), kT0 + 41 * 86'400'000LL, policy).empty());
    CHECK(hub::due_for_erasure(c.store->view(), kT0 + 71 * 86'400'000LL, policy).size() == 1);
    c.ok("POST", "/api/v1/people/c1/" + li, c.admin, {{"name", "Li"}, {"kind", "resident"}});
    CHECK(hub::due_for_erasure(c.store->view(), kT0 + 71 * 86'400'000LL, policy).empty());
    c.ok("POST", "/api/v1/people/c1/" + li + "/forget", c.admin, {{"reason", "moved out"}});
    auto record = c.ok("GET", "/api/v1/people/c1/" + li, c.admin);
    CHECK_FALSE(record.contains("tokens"));
    auto exported = c.ok("GET", "/api/v1/people/c1/" + li + "/export", c.admin);
    CHECK(exported["person"]["erased"] == true);
    CHECK_FALSE(exported.contains("alerts"));
  }

  TEST_CASE("retention: a visitor's record is erased after its days, by a sweep that records each erasure") {
    Compound c;
    const auto visitor = c.record({{"community", "c1"}, {"kind", "visitor"}, {"unit", "b1-101"}, {"name", "Zhao Qiang"}});
    const auto resident = c.record({{"community", "c1"}, {"kind", "resident"}, {"unit", "b1-101"}, {"name", "Li Lan"}});
    const hub::RetentionPolicy policy{30};
    auto append = [&](const schemas::Event& e) {
      c.appended.push_back(e);
      c.fold(e);
      return true;
    };
    CHECK(hub::due_for_erasure(c.store->view(), kT0 + 29 * 86'400'000LL, policy).empty());
    CHECK(hub::due_for_erasure(c.store->view(), kT0 + 31 * 86'400'000LL, {0}).empty());  // 0: kept
    std::filesystem::copy(c.dir.path() / "keys", c.dir.path() / "backup");
    auto report = hub::sweep(*c.store, *c.vault, kT0 + 31 * 86'400'000LL, policy, append);
    CHECK(report.erased == 1);
    CHECK_FALSE(c.vault->holds(visitor));
    CHECK(c.vault->holds(resident));
    const auto& event = std::get<schemas::PersonForgotten>(c.appended.back().body);
    CHECK(event.subject == visitor);
    CHECK(event.actor == "retention");
    CHECK(event.reason.find("30 days") != std::string::npos);
    CHECK(c.ok("GET", "/api/v1/people/c1/" + visitor, c.admin)["erased"] == true);
    CHECK(hub::sweep(*c.store, *c.vault, kT0 + 32 * 86'400'000LL, policy, append).erased == 0);

    SUBCASE("a key directory restored from a backup has the visitor's key destroyed again by the next sweep") {
      std::filesystem::remove_all(c.dir.path() / "keys");
      std::filesystem::rename(c.dir.path() / "backup", c.dir.path() / "keys");
      REQUIRE(c.vault->holds(visitor));
      auto again = hub::sweep(*c.store, *c.vault, kT0 + 32 * 86'400'000LL, policy, append);
      CHECK(again.keys_destroyed_again == 1);
      CHECK_FALSE(c.vault->holds(visitor));
      CHECK(c.vault->holds(resident));
    }
  }
}
