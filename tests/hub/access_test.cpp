#include <doctest/doctest.h>

#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "common/digest.h"
#include "api_sources.h"
#include "events.h"
#include "hub/api.h"
#include "processors/projector.h"
#include "temp_dir.h"

using namespace courtyard;
using json = nlohmann::json;

namespace {

constexpr std::int64_t kT0 = 1795950000000;

schemas::Event event_of(const std::string& device, const std::string& community, std::uint64_t seq, schemas::Body body) {
  schemas::Event e;
  e.device = DeviceId(device);
  e.community = CommunityId(community);
  e.boot = 1;
  e.seq = seq;
  e.device_time_ms = kT0 + static_cast<std::int64_t>(seq) * 1000;
  e.ingest_time_ms = e.device_time_ms + 5;
  e.body = std::move(body);
  return e;
}

// Two households of c1 (b1-101, b1-102), a household of the same unit name in c2, and records of
// every projection for each: what a resident of c1/b1-101 may see is exactly their own.
struct Community {
  test::TempDir dir;
  std::unique_ptr<processors::Store> store;
  Metrics metrics;
  hub::TokenStore tokens{dir.path() / "tokens.json"};
  std::vector<schemas::Event> appended;
  std::unique_ptr<hub::Api> api;

  Community() {
    processors::StoreConfig config;
    config.dir = dir.str("state");
    store = std::move(*processors::Store::open(config));
    processors::Projector projector(*store, {});
    std::vector<processors::LogMessage> batch;
    std::int64_t offset = 0;
    auto add = [&](schemas::Event e) { batch.push_back(test::log_message(e, offset++)); };
    struct Device {
      const char* id;
      const char* community;
      schemas::DeviceKind kind;
      const char* unit;
    };
    const Device fleet[] = {{"smoke-101", "c1", schemas::DeviceKind::HomeSensor, "b1-101"},
                            {"smoke-102", "c1", schemas::DeviceKind::HomeSensor, "b1-102"},
                            {"meter-101", "c1", schemas::DeviceKind::Meter, "b1-101"},
                            {"meter-102", "c1", schemas::DeviceKind::Meter, "b1-102"},
                            {"watch-102", "c1", schemas::DeviceKind::Wearable, "b1-102"},
                            {"gate-1", "c1", schemas::DeviceKind::Gate, ""},
                            {"smoke-c2", "c2", schemas::DeviceKind::HomeSensor, "b1-101"}};
    for (const auto& d : fleet) {
      auto reg = event_of(d.id, d.community, 0, schemas::DeviceRegistered{d.kind, d.unit, "somewhere"});
      reg.seq = 0;
      add(reg);
    }
    std::uint64_t seq = 1;
    for (const char* device : {"smoke-101", "smoke-102"}) {
      add(event_of(device, "c1", seq++, schemas::HomeSensor{schemas::SensorKind::Smoke, "alarm", std::nullopt}));
    }
    add(event_of("smoke-c2", "c2", seq++, schemas::HomeSensor{schemas::SensorKind::Smoke, "alarm", std::nullopt}));
    add(event_of("meter-101", "c1", seq++, schemas::MeterReading{schemas::MeterKind::Water, 10, "m3"}));
    add(event_of("meter-102", "c1", seq++, schemas::MeterReading{schemas::MeterKind::Water, 20, "m3"}));
    schemas::WearableVitals vitals;
    vitals.heart_rate_bpm = 70;
    add(event_of("watch-102", "c1", seq++, vitals));
    add(event_of("gate-1", "c1", seq++,
                 schemas::GatePass{schemas::Credential::Face, "subj-1", schemas::Direction::In, schemas::Decision::Granted}));
    add(event_of("registry", "c1", 0, schemas::RegistryEntry{schemas::RegistryKind::Person, "subj-1",
                                                             schemas::PersonRole::Resident, "b1-102"}));
    add(event_of("registry", "c1", 0, schemas::RegistryEntry{schemas::RegistryKind::Person, "staff-wang",
                                                             schemas::PersonRole::Staff, ""}));
    add(event_of("registry", "c1", 0, schemas::RegistryEntry{schemas::RegistryKind::Household, "b1-101",
                                                             schemas::PersonRole::Resident, "b1-101"}));
    add(event_of("operator", "c1", 0, schemas::Notice{"n-all", "Water off", "Tuesday 9-12", schemas::NoticeSeverity::Info, "", "staff"}));
    add(event_of("operator", "c1", 0, schemas::Notice{"n-102", "Parcel", "At the gate", schemas::NoticeSeverity::Info, "b1-102", "staff"}));
    add(event_of("operator", "c1", 0, schemas::Command{"cmd-102", DeviceId("smoke-102"), "silence_alarm", "", "staff", kT0 + 600000}));
    add(event_of("operator", "c1", 0, schemas::Command{"cmd-101", DeviceId("smoke-101"), "silence_alarm", "", "staff", kT0 + 600000}));
    REQUIRE(projector.apply(batch));

    auto sources = test::api_sources(store.get(), &tokens);
    sources.append = [this](const schemas::Event& e) -> std::expected<std::int64_t, std::string> {
      appended.push_back(e);
      return static_cast<std::int64_t>(appended.size());
    };
    api = std::make_unique<hub::Api>(sources, metrics);
  }

  std::string token(hub::Role role, const std::string& community = "", const std::string& unit = "") {
    return *tokens.add(role, community, unit, "test");
  }
  hub::HttpResponse get(const std::string& token, const std::string& target) {
    return api->handle({"GET", target, "", "Bearer " + token});
  }
  hub::HttpResponse post(const std::string& token, const std::string& target, const std::string& body) {
    return api->handle({"POST", target, body, "Bearer " + token});
  }
  // Every record of every list endpoint this token gets.
  std::vector<std::pair<std::string, json>> everything(const std::string& token) {
    std::vector<std::pair<std::string, json>> out;
    for (const char* list : {"devices", "alerts", "meters", "gates", "elders", "homes", "communities", "registry",
                             "commands", "notices"}) {
      auto res = get(token, std::string("/api/v1/") + list + "?limit=1000");
      REQUIRE(res.status == 200);
      auto page = json::parse(res.body);
      for (auto& item : page["items"]) out.emplace_back(list, item);
    }
    return out;
  }
  // The id under which every record of every list is served, by list.
  std::vector<std::pair<std::string, std::string>> every_id() {
    std::vector<std::pair<std::string, std::string>> ids;
    for (auto& [list, item] : everything(token(hub::Role::Admin))) ids.emplace_back(list, item["id"].get<std::string>());
    return ids;
  }
};

}  // namespace

TEST_SUITE("hub API: tokens and roles") {
  TEST_CASE("a request without a token, or with an unknown or revoked one, is a 401 with a reason") {
    Community c;
    auto none = c.api->handle({"GET", "/api/v1/alerts"});
    CHECK(none.status == 401);
    CHECK(json::parse(none.body)["detail"].get<std::string>().find("Bearer") != std::string::npos);
    CHECK(c.get("cy_not-a-token", "/api/v1/alerts").status == 401);
    auto secret = c.token(hub::Role::Staff, "c1");
    CHECK(c.get(secret, "/api/v1/alerts").status == 200);
    REQUIRE(c.tokens.revoke(c.tokens.list().back().id));
    CHECK(c.get(secret, "/api/v1/alerts").status == 401);
  }

  TEST_CASE("whoami says the role, the place and the compound's clock (for the page's times)") {
    Community c;
    auto res = c.get(c.token(hub::Role::Resident, "c1", "b1-101"), "/api/v1/whoami");
    REQUIRE(res.status == 200);
    auto me = json::parse(res.body);
    CHECK(me["role"] == "resident");
    CHECK(me["unit"] == "b1-101");
    CHECK(me["utc_offset_minutes"] == 480);
  }

  TEST_CASE("tokens are stored hashed, never as the secret") {
    Community c;
    auto secret = c.token(hub::Role::Admin);
    std::ifstream in(c.dir.path() / "tokens.json");
    std::string stored((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(stored.find(secret) == std::string::npos);
    CHECK(stored.find(sha256_hex(secret)) != std::string::npos);
  }

  TEST_CASE("a resident token never returns another household's data, from any list") {
    Community c;
    auto resident = c.token(hub::Role::Resident, "c1", "b1-101");
    auto seen = c.everything(resident);
    std::set<std::string> lists;
    for (const auto& [list, item] : seen) {
      INFO(list, " ", item.dump());
      lists.insert(list);
      auto scope = hub::scope_of(std::string(list) + "/" + item["id"].get<std::string>(), item);
      CHECK(scope.community == "c1");
      CHECK((scope.unit == "b1-101" || (list == "notices" && scope.unit.empty())));
    }
    // and it does see its own: devices, alerts, meters, homes, registry, commands, notices
    CHECK(lists == std::set<std::string>{"devices", "alerts", "meters", "homes", "registry", "commands", "notices"});
  }

  TEST_CASE("a household reads what its family was told, never what staff were told, and no staff member's token") {
    const hub::Principal home{"t", hub::Role::Resident, "c1", "b1-101", ""}, staff{"s", hub::Role::Staff, "c1", "", ""};
    const json family{{"community", "c1"}, {"unit", "b1-101"}, {"to", "family"}, {"what", "staff_assigned"}};
    const json told_staff{{"community", "c1"}, {"unit", "b1-101"}, {"to", "staff"}, {"staff", "staff-wang"}};
    const json neighbours{{"community", "c1"}, {"unit", "b1-102"}, {"to", "family"}};
    auto readable = [](const hub::Principal& who, const json& record) {
      return hub::may_read(who, "notifications/c1/a~1", hub::scope_of("notifications/c1/a~1", record));
    };
    CHECK(readable(home, family));
    CHECK_FALSE(readable(home, told_staff));
    CHECK_FALSE(readable(home, neighbours));
    CHECK_FALSE(readable(home, json("not an object")));
    CHECK(readable(staff, told_staff));
    CHECK(readable(staff, neighbours));

    const json alert{{"community", "c1"}, {"unit", "b1-101"}, {"assignee", "staff-wang"}, {"assignee_role", "grid_worker"},
                     {"timeline", {{{"what", "assigned"}, {"by", "dispatch"}, {"note", "grid_worker staff-wang"}},
                                   {{"what", "reassigned"}, {"by", "office"}, {"note", "to staff-li"}},
                                   {{"what", "acknowledged"}, {"by", "li family"}, {"note", "we saw it"}}}}};
    json shown = alert;
    CHECK(hub::redact_for(home, "alerts/c1:fall:w1:1", shown));
    CHECK(shown["assignee"] == "");
    CHECK(shown["assignee_role"] == "grid_worker");
    CHECK(shown.dump().find("staff-wang") == std::string::npos);
    CHECK(shown.dump().find("staff-li") == std::string::npos);
    CHECK(shown["timeline"].size() == 3);
    CHECK(shown["timeline"][2]["note"] == "we saw it");
    json office = alert;
    CHECK_FALSE(hub::redact_for(staff, "alerts/c1:fall:w1:1", office));
    CHECK(office == alert);
    json hostile{{"assignee", 42}, {"timeline", "not a list"}};  // a record is outside input too
    CHECK(hub::redact_for(home, "alerts/c1:x", hostile));
    CHECK(hostile["assignee"] == "");
  }

  TEST_CASE("attack: a resident asking for another household's record by id cannot tell it from one that does not exist") {
    Community c;
    auto resident = c.token(hub::Role::Resident, "c1", "b1-101");
    auto mine = c.everything(resident);
    std::set<std::string> allowed;
    for (const auto& [list, item] : mine) allowed.insert(list + "/" + item["id"].get<std::string>());
    int refused = 0;
    for (const auto& [list, id] : c.every_id()) {
      auto res = c.get(resident, "/api/v1/" + list + "/" + id);
      INFO(list, "/", id);
      if (allowed.contains(list + "/" + id)) {
        CHECK(res.status == 200);
      } else {
        // The review's probe: 403 for a neighbour's alert, 404 for none, on predictable ids.
        auto none = c.get(resident, "/api/v1/" + list + "/" + id + "-none");
        std::string expected = none.body;
        expected.replace(expected.find(id + "-none"), id.size() + 5, id);
        CHECK(res.status == 404);
        CHECK(res.body == expected);
        ++refused;
      }
    }
    CHECK(refused > 10);
  }

  TEST_CASE("staff see their own community only, the auditor and admin see everything") {
    Community c;
    auto all = c.everything(c.token(hub::Role::Admin)).size();
    CHECK(c.everything(c.token(hub::Role::Auditor)).size() == all);
    auto staff_c2 = c.everything(c.token(hub::Role::Staff, "c2"));
    CHECK_FALSE(staff_c2.empty());
    for (const auto& [list, item] : staff_c2) {
      CHECK(hub::scope_of(list + "/" + item["id"].get<std::string>(), item).community == "c2");
    }
  }

  TEST_CASE("an auditor changes nothing, and /metrics is for admin and auditor tokens") {
    Community c;
    auto auditor = c.token(hub::Role::Auditor);
    CHECK(c.post(auditor, "/api/v1/notices", R"({"community":"c1","title":"x"})").status == 403);
    CHECK(c.post(auditor, "/api/v1/devices/smoke-101/commands", R"({"action":"reboot"})").status == 403);
    CHECK(c.appended.empty());
    CHECK(c.get(auditor, "/metrics").status == 200);
    CHECK(c.get(c.token(hub::Role::Staff, "c1"), "/metrics").status == 403);
    auto metrics = c.get(auditor, "/metrics").body;
    CHECK(metrics.find("courtyard_http_refused_total{reason=\"forbidden\"} 3") != std::string::npos);
  }

  TEST_CASE("token add refuses a resident without a household and staff without a community") {
    test::TempDir dir;
    hub::TokenStore tokens(dir.path() / "t.json");
    CHECK_FALSE(tokens.add(hub::Role::Resident, "c1", "", ""));
    CHECK_FALSE(tokens.add(hub::Role::Staff, "", "", ""));
    CHECK(tokens.add(hub::Role::Auditor, "", "", ""));
  }
}

TEST_SUITE("hub API: commands and notices") {
  TEST_CASE("a resident commands their own household's device; the command is an event in the log first") {
    Community c;
    auto resident = c.token(hub::Role::Resident, "c1", "b1-101");
    auto res = c.post(resident, "/api/v1/devices/smoke-101/commands", R"({"action":"silence_alarm","ttl_s":30})");
    REQUIRE(res.status == 202);
    auto body = json::parse(res.body);
    REQUIRE(c.appended.size() == 1);
    const auto& command = std::get<schemas::Command>(c.appended[0].body);
    CHECK(command.command_id == body["command_id"].get<std::string>());
    CHECK(command.target.str() == "smoke-101");
    CHECK(command.action == "silence_alarm");
    CHECK(c.appended[0].community.str() == "c1");
    CHECK(body["href"] == "/api/v1/commands/" + command.command_id);
  }

  TEST_CASE("commands to another household's device, or that the device does not take, are refused") {
    Community c;
    auto resident = c.token(hub::Role::Resident, "c1", "b1-101");
    // Devices the resident may not see are as unknown to them as devices that do not exist.
    CHECK(c.post(resident, "/api/v1/devices/smoke-102/commands", R"({"action":"reboot"})").status == 404);
    CHECK(c.post(resident, "/api/v1/devices/gate-1/commands", R"({"action":"open_gate"})").status == 404);
    auto staff = c.token(hub::Role::Staff, "c1");
    auto wrong = c.post(staff, "/api/v1/devices/gate-1/commands", R"({"action":"close_valve"})");
    CHECK(wrong.status == 400);
    CHECK(json::parse(wrong.body)["detail"] == "a gate takes: open_gate, close_gate, reboot, ping");
    CHECK(c.post(staff, "/api/v1/devices/gate-1/commands", R"({"action":"open_gate","ttl_s":0})").status == 400);
    CHECK(c.post(staff, "/api/v1/devices/nope/commands", R"({"action":"reboot"})").status == 404);
    CHECK(c.appended.empty());
    CHECK(c.post(staff, "/api/v1/devices/gate-1/commands", R"({"action":"open_gate"})").status == 202);
  }

  TEST_CASE("staff post notices to their community; residents and other communities' staff cannot") {
    Community c;
    auto staff = c.token(hub::Role::Staff, "c1");
    CHECK(c.post(staff, "/api/v1/notices", R"({"title":"Lift maintenance","text":"Building 1, Friday","severity":"warning"})").status == 202);
    REQUIRE(c.appended.size() == 1);
    CHECK(std::get<schemas::Notice>(c.appended[0].body).severity == schemas::NoticeSeverity::Warning);
    CHECK(c.post(c.token(hub::Role::Staff, "c2"), "/api/v1/notices", R"({"community":"c1","title":"x"})").status == 403);
    CHECK(c.post(c.token(hub::Role::Resident, "c1", "b1-101"), "/api/v1/notices", R"({"title":"x"})").status == 403);
    CHECK(c.post(staff, "/api/v1/notices", R"({"title":""})").status == 400);
    CHECK(c.post(staff, "/api/v1/notices", R"({"title":"x","severity":"panic"})").status == 400);
    CHECK(c.appended.size() == 1);
  }

  TEST_CASE("a resident acknowledges their own alert but does not resolve it") {
    Community c;
    auto resident = c.token(hub::Role::Resident, "c1", "b1-101");
    std::string own, other;
    for (const auto& [list, id] : c.every_id()) {
      if (list != "alerts") continue;
      if (id.find("smoke-101") != std::string::npos) own = id;
      if (id.find("smoke-102") != std::string::npos) other = id;
    }
    REQUIRE_FALSE(own.empty());
    REQUIRE_FALSE(other.empty());
    CHECK(c.post(resident, "/api/v1/alerts/" + own + "/ack", "{}").status == 202);
    CHECK(c.post(resident, "/api/v1/alerts/" + own + "/resolve", "{}").status == 403);
    CHECK(c.post(resident, "/api/v1/alerts/" + other + "/ack", "{}").status == 404);
    CHECK(c.appended.size() == 1);
  }

  TEST_CASE("staff say they are on their way, arrived, handed over, and reassign only to the community's staff") {
    Community c;
    auto staff = c.token(hub::Role::Staff, "c1");
    auto resident = c.token(hub::Role::Resident, "c1", "b1-101");
    const std::string alert = "/api/v1/alerts/c1:smoke:smoke-101:1/";
    for (const char* verb : {"on_my_way", "arrived", "handed_over"}) {
      CHECK(c.post(staff, alert + verb, R"({"note":"lift 2"})").status == 202);
      CHECK(c.post(resident, alert + verb, "{}").status == 403);  // a resident acknowledges, never responds
    }
    CHECK(c.post(staff, alert + "reassign", R"({"to":"staff-wang"})").status == 202);
    REQUIRE(c.appended.size() == 4);
    const auto& reassign = std::get<schemas::OperatorAction>(c.appended.back().body);
    CHECK(reassign.action == schemas::AlertAction::Reassign);
    CHECK(reassign.to == "staff-wang");
    CHECK(std::get<schemas::OperatorAction>(c.appended[1].body).action == schemas::AlertAction::Arrived);
    CHECK(c.post(staff, alert + "reassign", R"({"to":"subj-1"})").status == 409);     // a resident, not staff
    CHECK(c.post(staff, alert + "reassign", R"({"to":"nobody"})").status == 409);     // unknown
    CHECK(c.post(staff, alert + "reassign", R"({"to":"../etc"})").status == 400);     // not an id
    CHECK(c.post(staff, alert + "reassign", R"({"to":7})").status == 400);
    CHECK(c.post(staff, alert + "reassign", "{}").status == 400);
    CHECK(c.post(staff, alert + "ack", R"({"to":"staff-wang"})").status == 400);      // to is for reassign only
    CHECK(c.post(staff, alert + "teleport", "{}").status == 404);
    CHECK(c.post(c.token(hub::Role::Staff, "c2"), alert + "on_my_way", "{}").status == 404);  // not theirs to see
    CHECK(c.appended.size() == 4);
  }
}
