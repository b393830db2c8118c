// The compound's structure and duty rosters through the API (issue 16): set by staff, in the log,
// asked "who is on duty".
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "api_sources.h"
#include "events.h"
#include "hub/api.h"
#include "processors/projector.h"
#include "temp_dir.h"

using namespace courtyard;
using json = nlohmann::json;

namespace {

constexpr std::int64_t kMonday = 1795968000000;  // 2026-11-30 00:00 +08:00
constexpr std::int64_t kHour = 3'600'000;

// A hub whose appends are folded at once.
struct Office {
  test::TempDir dir;
  std::unique_ptr<processors::Store> store;
  std::unique_ptr<processors::Projector> projector;
  Metrics metrics;
  hub::TokenStore tokens{dir.path() / "tokens.json"};
  std::unique_ptr<hub::Api> api;
  std::int64_t offset = 0;
  std::string staff = *tokens.add(hub::Role::Staff, "c1", "", "duty office");
  std::string other_staff = *tokens.add(hub::Role::Staff, "c2", "", "");
  std::string auditor = *tokens.add(hub::Role::Auditor, "", "", "");
  std::string resident = *tokens.add(hub::Role::Resident, "c1", "b1-101", "");

  Office() {
    processors::StoreConfig config;
    config.dir = dir.str("state");
    store = std::move(*processors::Store::open(config));
    projector = std::make_unique<processors::Projector>(*store, processors::ProjectorConfig{});
    auto sources = test::api_sources(store.get(), &tokens);
    sources.utc_offset_min = 480;
    sources.append = [this](const schemas::Event& e) -> std::expected<std::int64_t, std::string> {
      fold(e, kMonday);
      return offset;
    };
    api = std::make_unique<hub::Api>(sources, metrics);
  }
  void fold(schemas::Event e, std::int64_t at_ms) {
    e.event_id = static_cast<std::uint64_t>(offset + 1);
    e.device_time_ms = e.ingest_time_ms = at_ms;
    const std::vector<processors::LogMessage> batch{test::log_message(e, offset++)};
    REQUIRE(projector->apply(batch));
  }
  hub::HttpResponse call(const std::string& method, const std::string& target, const std::string& token, const json& body = nullptr) {
    return api->handle({method, target, body.is_null() ? "" : body.dump(), "Bearer " + token});
  }
  json on_duty(const std::string& query = "") {
    auto r = call("GET", "/api/v1/rosters/c1/grid-a/grid_worker/on-duty" + query, staff);
    INFO(r.body);
    REQUIRE(r.status == 200);
    return json::parse(r.body);
  }
};

const json kGridA = json::parse(R"({"week":[
  {"day":"mon","from":"08:00","to":"20:00","staff":"zhang"},
  {"day":"mon","from":"20:00","to":"08:00","staff":"li"}],
  "exceptions":[{"from":1795968000000,"to":1795971600000,"staff":""}]})");

}  // namespace

TEST_SUITE("duty rosters API") {
  TEST_CASE("staff set a grid's roster; who is on duty follows it, at a given time or the log's") {
    Office o;
    REQUIRE(o.call("POST", "/api/v1/rosters/c1/grid-a/grid_worker", o.staff, kGridA).status == 202);
    CHECK(o.on_duty("?at=" + std::to_string(kMonday + 9 * kHour))["staff"] == "zhang");
    CHECK(o.on_duty("?at=" + std::to_string(kMonday + 23 * kHour))["staff"] == "li");
    CHECK(o.on_duty("?at=" + std::to_string(kMonday + 24 * kHour + 7 * kHour))["staff"] == "li");  // past midnight
    CHECK(o.on_duty("?at=" + std::to_string(kMonday))["staff"].is_null());  // the exception: nobody
    // Without ?at=, the community's log time: its latest event.
    o.fold(test::status_event("gate-1", 1, 1, kMonday + 10 * kHour), kMonday + 10 * kHour);
    auto now = o.on_duty();
    CHECK(now["clock"] == "log");
    CHECK(now["at"] == kMonday + 10 * kHour);
    CHECK(now["staff"] == "zhang");
    // The roster as stored reads back as it was given, with who set it.
    auto record = json::parse(o.call("GET", "/api/v1/rosters/c1/grid-a/grid_worker", o.auditor).body);
    CHECK(record["week"] == kGridA["week"]);
    CHECK(record["updated_by"].get<std::string>().find("duty office") != std::string::npos);
    CHECK(json::parse(o.call("GET", "/api/v1/rosters?role=grid_worker", o.staff).body)["count"] == 1);
  }

  TEST_CASE("the compound's structure: buildings with floors, a map position, units and doors; grids with their buildings and gates") {
    Office o;
    REQUIRE(o.call("POST", "/api/v1/site/c1", o.staff,
                   {{"kind", "building"}, {"id", "b1"}, {"label", "1号楼"}, {"floors", 18}, {"map", {{"x", 120}, {"y", 40}}},
                    {"members", {"b1-0101", "b1-door"}}})
                .status == 202);
    REQUIRE(o.call("POST", "/api/v1/site/c1", o.staff, {{"kind", "grid"}, {"id", "grid-a"}, {"label", "North grid"},
                                                        {"members", {"b1", "b2", "gate-east"}}}).status == 202);
    auto building = json::parse(o.call("GET", "/api/v1/site/c1/building/b1", o.staff).body);
    CHECK(building["label"] == "1号楼");
    CHECK(building["floors"] == 18);
    CHECK(building["map"] == json{{"x", 120}, {"y", 40}});
    CHECK(building["members"] == json::array({"b1-0101", "b1-door"}));
    auto grid = json::parse(o.call("GET", "/api/v1/site/c1/grid/grid-a", o.auditor).body);
    CHECK(grid["members"] == json::array({"b1", "b2", "gate-east"}));
    CHECK(json::parse(o.call("GET", "/api/v1/site?kind=grid", o.staff).body)["count"] == 1);
    CHECK(o.call("GET", "/api/v1/site/c1/grid/grid-a", o.other_staff).status == 404);
    CHECK(o.call("GET", "/api/v1/site/c1/grid/grid-a", o.resident).status == 404);
    const auto logged = o.offset;
    for (const json& bad : {json{{"kind", "tower"}, {"id", "t"}}, json{{"kind", "building"}, {"id", "a b"}},
                            json{{"kind", "building"}, {"id", "b"}, {"floors", 999}},
                            json{{"kind", "building"}, {"id", "b"}, {"map", {{"x", 1}}}},
                            json{{"kind", "building"}, {"id", "b"}, {"members", "b-0101"}},
                            json{{"kind", "grid"}, {"id", "g"}, {"floors", 3}},
                            json{{"kind", "grid"}, {"id", "g"}, {"members", {"b1", "b1"}}},
                            json{{"kind", "grid"}, {"id", "g"}, {"members", {"../b1"}}},
                            json{{"kind", "grid"}, {"id", "g"}, {"label", std::string(65, 'x')}},
                            json{{"kind", "grid"}, {"id", "g"}, {"owner", "me"}}}) {
      CAPTURE(bad.dump());
      CHECK(o.call("POST", "/api/v1/site/c1", o.staff, bad).status == 400);
    }
    CHECK(o.call("POST", "/api/v1/site/c1", o.resident, {{"kind", "grid"}, {"id", "g"}}).status == 403);
    CHECK(o.call("POST", "/api/v1/site/c1", o.auditor, {{"kind", "grid"}, {"id", "g"}}).status == 403);
    CHECK(o.offset == logged);
  }

  TEST_CASE("rosters are set by the community's staff and admin only, and must read as rosters") {
    Office o;
    CHECK(o.call("POST", "/api/v1/rosters/c1/grid-a/grid_worker", o.auditor, kGridA).status == 403);
    CHECK(o.call("POST", "/api/v1/rosters/c1/grid-a/grid_worker", o.resident, kGridA).status == 403);
    CHECK(o.call("POST", "/api/v1/rosters/c1/grid-a/grid_worker", o.other_staff, kGridA).status == 403);
    CHECK(o.call("POST", "/api/v1/rosters/c1/grid-a/janitor", o.staff, kGridA).status == 404);
    CHECK(o.call("POST", "/api/v1/rosters/c1/..%2Fx/grid_worker", o.staff, kGridA).status == 404);
    CHECK(o.call("POST", "/api/v1/rosters/c1/grid-a/grid_worker", o.staff, json{{"week", "all day"}}).status == 400);
    CHECK(o.call("POST", "/api/v1/rosters/c1/grid-a/grid_worker", o.staff,
                 json::parse(R"({"week":[{"day":"mon","from":"08:00","to":"20:00","staff":"王"}]})")).status == 400);
    CHECK(o.offset == 0);  // nothing reached the log
    REQUIRE(o.call("POST", "/api/v1/rosters/c1/grid-a/grid_worker", o.staff, kGridA).status == 202);
    // A resident does not read the office's rosters, and cannot tell they exist.
    CHECK(o.call("GET", "/api/v1/rosters/c1/grid-a/grid_worker/on-duty?at=1", o.resident).status == 404);
    CHECK(o.call("GET", "/api/v1/rosters/c1/grid-a/grid_worker/on-duty?at=1", o.other_staff).status == 404);
    CHECK(o.call("GET", "/api/v1/rosters/c1/grid-a/grid_worker/on-duty?at=x", o.staff).status == 400);
  }
}
