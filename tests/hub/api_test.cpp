#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "api_sources.h"
#include "events.h"
#include "hub/api.h"
#include "processors/projector.h"
#include "processors/record.h"
#include "temp_dir.h"

using namespace courtyard;
using json = nlohmann::json;

namespace {

struct Fixture {
  test::TempDir dir;
  std::unique_ptr<processors::Store> store;
  Metrics metrics;
  hub::TokenStore tokens{dir.path() / "tokens.json"};
  std::string admin = *tokens.add(hub::Role::Admin, "", "", "test");
  processors::RunnerStats runner_stats;
  std::unique_ptr<hub::Api> api;

  // `adjust`: the sources changed before the API is made (a role, a changelog's progress).
  explicit Fixture(const std::function<void(hub::ApiSources&)>& adjust = {}) {
    processors::StoreConfig config;
    config.dir = dir.str("state");
    store = std::move(*processors::Store::open(config));
    processors::Projector projector(*store, {});
    std::vector<processors::LogMessage> batch;
    std::int64_t offset = 0;
    for (const char* device : {"gate-1", "meter-1", "meter-2", "wear-1"}) {
      schemas::Event reg;
      reg.device = DeviceId(device);
      reg.community = CommunityId(std::string(device) == "wear-1" ? "c2" : "c1");
      reg.device_time_ms = 1;
      reg.body = schemas::DeviceRegistered{std::string(device).starts_with("meter") ? schemas::DeviceKind::Meter
                                                                                      : schemas::DeviceKind::Gate,
                                           "", "somewhere"};
      batch.push_back(test::log_message(reg, offset++));
      batch.push_back(test::log_message(test::status_event(device, 1), offset++));
    }
    batch.push_back({"courtyard.deadletter.v1", 0, 0, "gate-1", "{", {{"reason", "malformed"}, {"device", "gate-1"}}});
    REQUIRE(projector.apply(batch));
    hub::ApiSources sources;
    sources.store = store.get();
    sources.freshness = [] {
      processors::Freshness f;
      f[{"courtyard.events.v1", 0}] = {8, 10};
      return f;
    };
    sources.runner_stats = [this] { return runner_stats; };
    sources.healthy = [] { return true; };
    sources.tokens = &tokens;
    if (adjust) adjust(sources);
    api = std::make_unique<hub::Api>(sources, metrics);
  }

  hub::HttpResponse get(const std::string& target) { return api->handle({"GET", target, "", "Bearer " + admin}); }
  json get_json(const std::string& target) { return json::parse(get(target).body); }
};

}  // namespace

TEST_SUITE("hub API") {
  TEST_CASE("a device is served with its projection, its rejections and the offsets it reflects") {
    Fixture f;
    auto res = f.get("/api/v1/devices/gate-1");
    CHECK(res.status == 200);
    auto j = json::parse(res.body);
    CHECK(j["id"] == "gate-1");
    CHECK(j["kind"] == "gate");
    CHECK(j["events"] == 1);
    CHECK(j["rejections"]["by_reason"]["malformed"] == 1);
    CHECK(j["as_of"]["courtyard.events.v1"]["0"] == 8);
    CHECK(j["lag_total"] == 2);
  }

  TEST_CASE("a community's presence is served with who is inside, stored one record per person; the occupancy without") {
    Fixture f;
    processors::Projector projector(*f.store, {});
    std::vector<processors::LogMessage> batch;
    std::int64_t offset = 100;
    for (const char* subject : {"subj-a", "subj-b"}) {
      auto pass = test::status_event("gate-1", static_cast<std::uint64_t>(offset));
      pass.body = schemas::GatePass{schemas::Credential::Face, subject, schemas::Direction::In, schemas::Decision::Granted};
      batch.push_back(test::log_message(pass, offset++));
    }
    REQUIRE(projector.apply(batch));
    auto one = f.get_json("/api/v1/communities/c1/presence");
    CHECK(one["people_inside"] == json::array({"subj-a", "subj-b"}));
    CHECK(one["people_now"] == 2);
    auto list = f.get_json("/api/v1/communities");
    bool listed = false;
    for (const auto& item : list["items"]) {
      if (item["id"] == "c1/presence") listed = item["people_inside"] == json::array({"subj-a", "subj-b"});
      if (item["id"] == "c1/occupancy") CHECK_FALSE(item.contains("people_inside"));
    }
    CHECK(listed);
    CHECK(f.get("/api/v1/communities/inside").status == 404);  // the pieces are not records of their own here
  }

  TEST_CASE("an unknown device is a 404 with a reason") {
    Fixture f;
    auto res = f.get("/api/v1/devices/nope");
    CHECK(res.status == 404);
    CHECK(json::parse(res.body)["error"] == "not_found");
  }

  TEST_CASE("the device list filters by community and kind") {
    Fixture f;
    CHECK(f.get_json("/api/v1/devices")["count"] == 4);
    CHECK(f.get_json("/api/v1/devices?community=c2")["items"][0]["id"] == "wear-1");
    CHECK(f.get_json("/api/v1/devices?kind=meter&community=c1")["count"] == 2);
  }

  TEST_CASE("the device list pages with limit and after") {
    Fixture f;
    auto first = f.get_json("/api/v1/devices?limit=3");
    CHECK(first["count"] == 3);
    REQUIRE(first["next"] == "meter-2");
    auto rest = f.get_json("/api/v1/devices?limit=3&after=meter-2");
    CHECK(rest["count"] == 1);
    CHECK(rest["items"][0]["id"] == "wear-1");
    CHECK(rest["next"].is_null());
  }

  TEST_CASE("a bad limit is a 400") {
    Fixture f;
    CHECK(f.get("/api/v1/devices?limit=lots").status == 400);
  }

  TEST_CASE("metrics expose events by type, rejections by reason, lag and requests") {
    Fixture f;
    f.get("/api/v1/devices/nope");
    auto res = f.get("/metrics");
    CHECK(res.status == 200);
    CHECK(res.body.find("courtyard_events_total{type=\"device.status\"} 4") != std::string::npos);
    CHECK(res.body.find("courtyard_rejected_total{reason=\"malformed\"} 1") != std::string::npos);
    CHECK(res.body.find("courtyard_consumer_lag{topic=\"courtyard.events.v1\",partition=\"0\"} 2") != std::string::npos);
    CHECK(res.body.find("courtyard_http_requests_total{route=\"/api/v1/devices/{id}\",status=\"404\"} 1") != std::string::npos);
  }

  TEST_CASE("health reports ok while the processors run") {
    Fixture f;
    CHECK(f.get("/healthz").status == 200);
  }

  TEST_CASE("health reports a store that refuses writes by its class, never with the store's file names") {
    Fixture f;
    f.runner_stats.store_error =
        "store write failed: IO error: No space left on device: While appending to file: /srv/courtyard/var/hub/state/000123.log";
    auto res = f.api->handle({"GET", "/healthz", "", ""});
    CHECK(res.status == 503);
    CHECK(json::parse(res.body)["status"] == "folding stopped: store write failed (no space left on device)");
    CHECK(res.body.find("/srv") == std::string::npos);
  }

  TEST_CASE("health names the partitions this hub folds; sharing them, a hub serving reads is unready until its store "
            "holds every partition") {
    CHECK(json::parse(Fixture().get("/healthz").body)["folding"] == json{{"courtyard.events.v1", {0}}});
    processors::ChangelogProgress progress{false, 1200};
    Fixture f([&](hub::ApiSources& s) { s.changelog_progress = [&] { return progress; }; });
    auto res = f.get("/healthz");
    CHECK(res.status == 503);
    CHECK(json::parse(res.body)["status"] == "restoring from the changelog");
    CHECK(json::parse(res.body)["changelog_lag"] == 1200);
    progress = {true, 3};
    res = f.get("/healthz");
    CHECK(res.status == 200);
    CHECK(json::parse(res.body)["changelog_lag"] == 3);
    // Reads say it too, beside the lag of what this hub folds.
    CHECK(f.get_json("/api/v1/devices/gate-1")["changelog_lag"] == 3);
    CHECK(f.get_json("/api/v1/devices")["changelog_lag"] == 3);
    CHECK_FALSE(Fixture().get_json("/api/v1/devices").contains("changelog_lag"));  // one hub alone
    // A hub that only applies the changelog says when its disk refuses it, by class only.
    progress = {true, 40, "IO error: No space left on device: While appending to file: /srv/courtyard/var/hub/state/000123.log"};
    res = f.get("/healthz");
    CHECK(res.status == 503);
    CHECK(json::parse(res.body)["status"] == "applying the changelog stopped: store write failed (no space left on device)");
    CHECK(res.body.find("/srv") == std::string::npos);
  }

  TEST_CASE("a hub of role processors serves /healthz and /metrics, and nothing else, restoring or not") {
    Fixture f([](hub::ApiSources& s) {
      s.serves_reads = false;
      s.changelog_progress = [] { return processors::ChangelogProgress{false, 10}; };
    });
    CHECK(f.get("/healthz").status == 200);  // it folds: ready, whatever it holds of the others
    CHECK(f.get("/metrics").status == 200);
    for (const char* target : {"/api/v1/devices", "/api/v1/devices/gate-1", "/", "/index.html", "/api/v1/alerts"}) {
      CAPTURE(target);
      auto res = f.get(target);
      CHECK(res.status == 404);
      CHECK(res.body.find("hub.role = processors") != std::string::npos);
    }
    CHECK(f.api->handle({"POST", "/api/v1/alerts/x/ack", "{}", "Bearer " + f.admin}).status == 404);
  }

  TEST_CASE("methods a route does not take are a 405") {
    Fixture f;
    CHECK(f.api->handle({"PUT", "/api/v1/devices", "", "Bearer " + f.admin}).status == 405);
  }
}

TEST_SUITE("hub API: writes") {
  struct Writable : Fixture {
    std::vector<schemas::Event> appended;
    bool kafka_down = false;   // the producer refuses the append at once
    bool unconfirmed = false;  // queued, but Kafka did not confirm within the API's wait
    Writable() {
      auto sources = test::api_sources(store.get(), &tokens);
      sources.append = [this](const schemas::Event& e) -> std::expected<std::int64_t, std::string> {
        if (kafka_down) return std::unexpected(std::string("Local: Broker transport failure"));
        appended.push_back(e);
        return unconfirmed ? -1 : static_cast<std::int64_t>(appended.size());
      };
      api_sources = sources;
      api = std::make_unique<hub::Api>(sources, metrics);
    }
    hub::HttpResponse post(const std::string& target, const std::string& body, const std::string& key = "") {
      return api->handle({"POST", target, body, "Bearer " + admin, key});
    }
    // The hub restarted: a new API over the same sources, its answers to earlier keys forgotten.
    void restart() { api = std::make_unique<hub::Api>(api_sources, metrics); }
    hub::ApiSources api_sources;
  };

  std::string header(const hub::HttpResponse& r, const std::string& name) {
    for (const auto& [k, v] : r.headers) {
      if (k == name) return v;
    }
    return "";
  }

  TEST_CASE("a device's binary record is served as its JSON, and commands it by its community: staff of another are refused") {
    Writable f;
    const auto raw = f.store->view().get(processors::Projector::device_key("gate-1"));
    REQUIRE(raw);
    REQUIRE(processors::is_binary_record(*raw));
    auto served = json::parse(f.get("/api/v1/devices/gate-1").body);
    auto stored = processors::record_json(*raw);
    for (const auto& [field, value] : stored.items()) CHECK(served[field] == value);
    auto res = f.post("/api/v1/devices/gate-1/commands", R"({"action":"ping"})");
    CHECK(res.status == 202);
    REQUIRE(f.appended.size() == 1);
    CHECK(f.appended[0].community.str() == "c1");
    CHECK(std::get<schemas::Command>(f.appended[0].body).target.str() == "gate-1");
    const std::string elsewhere = *f.tokens.add(hub::Role::Staff, "c2", "", "another compound's office");
    auto refused = f.api->handle({"POST", "/api/v1/devices/gate-1/commands", R"({"action":"ping"})", "Bearer " + elsewhere});
    CHECK(refused.status == 404);  // hidden: not a device of theirs
    CHECK(f.appended.size() == 1);
  }

  TEST_CASE("a registry change is appended to the log as an event of its community") {
    Writable f;
    auto res = f.post("/api/v1/registry/c1", R"({"kind":"person","id":"tok-1","role":"visitor","unit":"b1-0101","valid_to":1795960000000})");
    CHECK(res.status == 202);
    REQUIRE(f.appended.size() == 1);
    CHECK(f.appended[0].community.str() == "c1");
    const auto& entry = std::get<schemas::RegistryEntry>(f.appended[0].body);
    CHECK(entry.role == schemas::PersonRole::Visitor);
    CHECK(entry.valid_to_ms == 1795960000000);
  }

  TEST_CASE("bad registry changes are refused with a reason and never reach the log") {
    Writable f;
    CHECK(f.post("/api/v1/registry/c1", R"({"kind":"pet","id":"x"})").status == 400);
    CHECK(f.post("/api/v1/registry/c1", R"({"kind":"person","id":"Zhang San"})").status == 400);
    CHECK(f.post("/api/v1/registry/c1", R"({"kind":"person","id":"v","role":"visitor"})").status == 400);
    CHECK(f.post("/api/v1/registry/c1", "not json").status == 400);
    CHECK(f.appended.empty());
  }

  TEST_CASE("acknowledging an unknown alert is a 404 and nothing is appended") {
    Writable f;
    CHECK(f.post("/api/v1/alerts/c1:fever:x:1/ack", "{}").status == 404);
    CHECK(f.appended.empty());
  }

  TEST_CASE("a POST retried with its Idempotency-Key gets the first answer and is appended once") {
    Writable f;
    const std::string body = R"({"community":"c1","title":"Lift maintenance"})";
    auto first = f.post("/api/v1/notices", body, "retry-me-1");
    REQUIRE(first.status == 202);
    auto again = f.post("/api/v1/notices", body, "retry-me-1");
    CHECK(again.status == 202);
    CHECK(again.body == first.body);
    CHECK(header(again, "Idempotent-Replayed") == "true");
    CHECK(f.appended.size() == 1);
    // Without a key, the same body is another notice.
    CHECK(f.post("/api/v1/notices", body).status == 202);
    CHECK(f.appended.size() == 2);
  }

  TEST_CASE("attack: an Idempotency-Key reused for a different request is refused, and so is a malformed key") {
    Writable f;
    REQUIRE(f.post("/api/v1/notices", R"({"community":"c1","title":"Lift"})", "k-1").status == 202);
    CHECK(f.post("/api/v1/notices", R"({"community":"c1","title":"Water off"})", "k-1").status == 422);
    CHECK(f.post("/api/v1/registry/c1", R"({"kind":"person","id":"tok-1","role":"resident","unit":"b1-0101"})", "k-1").status == 422);
    CHECK(f.post("/api/v1/notices", R"({"community":"c1","title":"Lift"})", std::string(129, 'k')).status == 400);
    CHECK(f.post("/api/v1/notices", R"({"community":"c1","title":"Lift"})", "with space").status == 400);
    CHECK(f.post("/api/v1/notices", R"({"community":"c1","title":"Lift"})", "\xff\xfe").status == 400);
    CHECK(f.appended.size() == 1);
  }

  TEST_CASE("the key names what it creates: after a hub restart the retry appends the same notice id, which the folds count once") {
    Writable f;
    const std::string body = R"({"community":"c1","title":"Lift maintenance"})";
    auto first = f.post("/api/v1/notices", body, "restart-1");
    REQUIRE(first.status == 202);
    f.restart();
    auto retried = f.post("/api/v1/notices", body, "restart-1");
    REQUIRE(retried.status == 202);
    CHECK(header(retried, "Idempotent-Replayed").empty());  // the answer was forgotten ...
    REQUIRE(f.appended.size() == 2);
    CHECK(std::get<schemas::Notice>(f.appended[0].body).notice_id == std::get<schemas::Notice>(f.appended[1].body).notice_id);
    // ... and another token's same key names another notice.
    const std::string staff = *f.tokens.add(hub::Role::Staff, "c1", "", "gate office");
    auto other = f.api->handle({"POST", "/api/v1/notices", body, "Bearer " + staff, "restart-1"});
    REQUIRE(other.status == 202);
    CHECK(std::get<schemas::Notice>(f.appended.back().body).notice_id != std::get<schemas::Notice>(f.appended[0].body).notice_id);
  }

  TEST_CASE("a write that failed is not remembered: its retry with the same key runs again") {
    Writable f;
    f.kafka_down = true;
    CHECK(f.post("/api/v1/notices", R"({"community":"c1","title":"Lift"})", "k-2").status == 503);
    f.kafka_down = false;
    CHECK(f.post("/api/v1/notices", R"({"community":"c1","title":"Lift"})", "k-2").status == 202);
    CHECK(f.appended.size() == 1);
  }

  TEST_CASE("an unconfirmed answer is not kept: its retry appends again, under the same id") {
    Writable f;
    f.unconfirmed = true;
    const std::string body = R"({"community":"c1","title":"Lift"})";
    REQUIRE(f.post("/api/v1/notices", body, "k-3").status == 202);
    f.unconfirmed = false;
    auto retried = f.post("/api/v1/notices", body, "k-3");
    REQUIRE(retried.status == 202);
    CHECK(header(retried, "Idempotent-Replayed").empty());
    REQUIRE(f.appended.size() == 2);
    CHECK(std::get<schemas::Notice>(f.appended[0].body).notice_id == std::get<schemas::Notice>(f.appended[1].body).notice_id);
    // Settled now: the next retry is answered from memory.
    CHECK(header(f.post("/api/v1/notices", body, "k-3"), "Idempotent-Replayed") == "true");
    CHECK(f.appended.size() == 2);
  }

  TEST_CASE("an append Kafka has not confirmed in time is a 202 that says so, with the id to follow") {
    Writable f;
    f.unconfirmed = true;
    auto res = f.post("/api/v1/notices", R"({"community":"c1","title":"Lift"})");
    REQUIRE(res.status == 202);
    auto body = nlohmann::json::parse(res.body);
    CHECK(body["confirmed"] == false);
    CHECK(body["request_offset"].is_null());
    CHECK(body["href"].get<std::string>().starts_with("/api/v1/notices/c1/ntc-"));
  }
}
