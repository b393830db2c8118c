// The hub's dashboard users against the real services: a browser sees a fever appear and
// acknowledges it, and a responder's phone (in Chinese) finds a fall on the site map and answers it
// from its card; a command travels API -> log -> device and back; a notice reaches the home
// panels; thousands of WebSocket subscribe/close cycles leave the hub's memory where it was.
#include <doctest/doctest.h>

#include <fstream>

#include "http_client.h"
#include "services.h"
#include "ws_client.h"

using namespace courtyard;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// A device provisioned through the API, listening to its commands and the community's notices.
test::ApiDevice provision(test::Stack& stack, const std::string& community, const std::string& id, const std::string& kind,
                          const std::string& unit = "", bool connect = true) {
  auto d = test::provision_via_api(stack, community, id, kind, unit, connect);
  if (connect) REQUIRE(d.client->subscribe("courtyard/v1/" + community + "/notices", 1, 10s));
  return d;
}

std::optional<json> next_json(MqttClient& client, std::chrono::milliseconds timeout) {
  auto m = client.next_message(timeout);
  if (!m) return std::nullopt;
  return json::parse(m->payload, nullptr, false);
}



}  // namespace

TEST_SUITE("integration: dashboards") {
  TEST_CASE("in a real browser, a fever at a gate appears on the open page and is acknowledged from it; a fall's card shows "
            "whom to call; on a phone in Chinese the fall is on its building in the site map and is answered from there") {
    const std::string node_modules = std::string(COURTYARD_SOURCE_DIR) + "/tests/browser/node_modules/playwright-core";
    REQUIRE_MESSAGE(std::filesystem::exists(node_modules), "playwright-core is missing: run scripts/setup");
    std::string community = test::unique_name("web");
    test::Stack stack({community});
    stack.start_ingest();
    stack.start_hub();
    auto gate = provision(stack, community, community + "-gate", "gate", "", /*connect=*/false);
    auto staff = stack.token("staff", community);
    // An elder's wearable with her family as contacts: her daughter, and her son, who was forgotten.
    auto wearable = provision(stack, community, community + "-wear", "wearable", "b1-101", /*connect=*/false);
    auto record = [&](const json& person) {
      auto [status, out] = stack.post("/api/v1/people", person);
      REQUIRE(status == 201);
      return out["subject"].get<std::string>();
    };
    const auto mother = record({{"community", community}, {"unit", "b1-101"}, {"name", "Li Lan"}});
    const auto daughter = record({{"community", community}, {"kind", "family"}, {"unit", "b1-101"}, {"name", "Wang Mei"},
                                  {"phone", "+86 138 0013 8000"}, {"relationship", "daughter"}});
    const auto son = record({{"community", community}, {"kind", "family"}, {"unit", "b1-101"}, {"name", "Wang Lei"},
                             {"phone", "+86 139 0000 1111"}, {"relationship", "son"}});
    REQUIRE(test::eventually([&] { return stack.get("/api/v1/people/" + community + "/" + son).has_value(); }, 30s));
    REQUIRE(stack.post("/api/v1/contacts/" + community, {{"unit", "b1-101"}, {"device", wearable.id}, {"wearer", mother},
                                                        {"contacts", {daughter, son}}}).first == 202);
    REQUIRE(stack.post("/api/v1/people/" + community + "/" + son + "/forget", {{"reason", "his request"}}).first == 202);
    // The compound: building 1 (the flat and the gate) in the north grid, building 2 in the south;
    // the north grid's worker on duty round the clock.
    const std::string site = "/api/v1/site/" + community;
    REQUIRE(stack.post(site, {{"kind", "building"}, {"id", "b1"}, {"label", "1号楼"}, {"floors", 6}, {"map", {{"x", 0}, {"y", 0}}},
                              {"members", {"b1-101", gate.id}}}).first == 202);
    // (Attack: labels are text anyone with a staff token writes; the map must show them, never run them.)
    REQUIRE(stack.post(site, {{"kind", "building"}, {"id", "b2"}, {"label", "<img src=x onerror=window.__xss=1>2号楼"}, {"floors", 6},
                              {"map", {{"x", 80}, {"y", 10}}}, {"members", {"b2-101"}}}).first == 202);
    REQUIRE(stack.post(site, {{"kind", "grid"}, {"id", "grid-a"}, {"label", "北区"}, {"members", {"b1"}}}).first == 202);
    REQUIRE(stack.post(site, {{"kind", "grid"}, {"id", "grid-b"}, {"label", "\"><script>window.__xss=2</script>"}, {"members", {"b2"}}}).first == 202);
    const std::string on_duty = "staff-zhao";
    REQUIRE(stack.post("/api/v1/rosters/" + community + "/grid-a/grid_worker", test::always_on_duty(on_duty)).first == 202);
    REQUIRE(test::eventually([&] {
      auto s = stack.get("/api/v1/site?community=" + community);
      return s && (*s)["count"] == 4 && stack.get("/api/v1/rosters/" + community + "/grid-a/grid_worker").has_value();
    }, 30s));
    REQUIRE(test::eventually([&] {
      auto p = stack.get("/api/v1/people/" + community + "/" + son);
      return p && (*p)["erased"] == true && stack.get("/api/v1/contacts/" + community + "/b1-101/" + wearable.id);
    }, 30s));
    std::string screenshot = std::string(COURTYARD_BINARY_DIR) + "/dashboard.png";
    std::filesystem::remove(screenshot);
    test::Process browser({"/usr/bin/env", "node", std::string(COURTYARD_SOURCE_DIR) + "/tests/browser/dashboard.mjs"},
                          {{"COURTYARD_URL", "http://127.0.0.1:" + std::to_string(stack.http_port())},
                           {"COURTYARD_TOKEN", staff},
                           {"RESIDENT_TOKEN", stack.token("resident", community, "b1-101")},
                           {"STAFF_ON_DUTY", on_duty},
                           {"UTC_OFFSET_MINUTES", "480"},
                           {"COURTYARD_COMMUNITY", community},
                           {"MQTT_PORT", std::to_string(test::services().mqtt_port)},
                           {"GATE_ID", gate.id},
                           {"GATE_PASSWORD", gate.password},
                           {"WEARABLE_ID", wearable.id},
                           {"WEARABLE_PASSWORD", wearable.password},
                           {"SCREENSHOT", screenshot}},
                          stack.dir().str("browser.log"));
    int status = browser.wait();
    std::string output = test::read_file(stack.dir().str("browser.log"));
    MESSAGE("browser: ", output);
    REQUIRE_MESSAGE(status == 0, output);
    CHECK(std::filesystem::file_size(screenshot) > 10000);
    // What the page showed is what the hub holds: one fever alert, acknowledged, by this staff token.
    auto alerts = stack.get("/api/v1/alerts?rule=fever&community=" + community);
    REQUIRE(alerts);
    REQUIRE((*alerts)["items"].size() == 1);
    auto alert = (*alerts)["items"][0];
    CHECK(alert["state"] == "acknowledged");
    CHECK(alert["location"] == "Building 1, east gate");
    CHECK(alert["timeline"].back()["by"].get<std::string>().find("test staff") != std::string::npos);
    auto falls = stack.get("/api/v1/alerts?rule=fall&community=" + community);
    REQUIRE(falls);
    REQUIRE((*falls)["items"].size() == 1);
    const std::string fall = (*falls)["items"][0]["id"];
    // Answered from the phone: acknowledged and on the way, by this staff token, assigned to the one on duty.
    CHECK((*falls)["items"][0]["assignee"] == on_duty);
    CHECK((*falls)["items"][0]["building"] == "b1");
    CHECK((*falls)["items"][0]["grid"] == "grid-a");
    CHECK((*falls)["items"][0]["acknowledged_at"].get<std::int64_t>() > 0);
    CHECK((*falls)["items"][0]["response"] == "on_my_way");
    // Opening the fall's contacts, on the desk and on the phone, was a read of personal data each
    // time: in the trail, by this staff token.
    REQUIRE(test::eventually([&] {
      auto trail = stack.get("/api/v1/reads?community=" + community + "&subject=" + daughter);
      if (!trail || (*trail)["count"] != 2) return false;
      for (const auto& read : (*trail)["items"]) {
        if (read["purpose"] != "alert:" + fall || read["actor"].get<std::string>().find("test staff") == std::string::npos) return false;
      }
      return true;
    }, 30s));
  }

  TEST_CASE("a command goes from the API through the log to the device, and its state follows the device's answer") {
    std::string community = test::unique_name("cmd");
    test::Stack stack({community});
    stack.start_ingest();
    stack.start_hub();
    auto valve = provision(stack, community, community + "-valve", "home_sensor", "b1-101");
    auto resident = stack.token("resident", community, "b1-101");
    auto res = test::http_post("127.0.0.1", stack.http_port(), "/api/v1/devices/" + valve.id + "/commands",
                               R"({"action":"close_valve","args":{"reason":"gas"},"ttl_s":120})", resident);
    REQUIRE(res);
    REQUIRE_MESSAGE(res->status == 202, res->body);
    auto id = json::parse(res->body)["command_id"].get<std::string>();

    std::optional<json> command;
    REQUIRE(test::eventually([&] {
      while (auto m = next_json(*valve.client, 10ms)) {
        if (m->value("command_id", "") == id) command = m;
      }
      return command.has_value();
    }, 30s));
    CHECK((*command)["command"] == "close_valve");
    CHECK((*command)["body"]["reason"] == "gas");
    auto state_of = [&] {
      auto r = test::http_get("127.0.0.1", stack.http_port(), "/api/v1/commands/" + id, resident);
      return r && r->status == 200 ? json::parse(r->body).value("state", "") : std::string();
    };
    REQUIRE(test::eventually([&] { return state_of() == "delivered"; }, 30s));

    json ack{{"seq", 1}, {"boot", 1}, {"ts", 1795950000000}, {"type", "command.ack"},
             {"body", {{"command_id", id}, {"result", "ok"}, {"detail", "valve closed"}}}};
    REQUIRE(valve.client->publish_and_wait(schemas::topic_for(CommunityId(community), DeviceId(valve.id), "telemetry"),
                                           ack.dump(), 1, 10s) == 0);
    REQUIRE(test::eventually([&] { return state_of() == "acknowledged"; }, 30s));
    // A neighbour's token cannot see it, nor tell it exists.
    auto neighbour = stack.token("resident", community, "b1-102");
    CHECK(test::http_get("127.0.0.1", stack.http_port(), "/api/v1/commands/" + id, neighbour)->status == 404);
  }

  TEST_CASE("a notice reaches the community's home panels over MQTT and is served to its residents") {
    std::string community = test::unique_name("ntc");
    test::Stack stack({community});
    stack.start_ingest();
    stack.start_hub();
    auto panel = provision(stack, community, community + "-panel", "home_sensor", "b2-202");
    auto staff = stack.token("staff", community);
    auto res = test::http_post("127.0.0.1", stack.http_port(), "/api/v1/notices",
                               R"({"title":"Water off Tuesday","text":"9:00-12:00, buildings 1-3","severity":"warning"})", staff);
    REQUIRE(res);
    REQUIRE_MESSAGE(res->status == 202, res->body);
    std::optional<json> notice;
    REQUIRE(test::eventually([&] {
      while (auto m = next_json(*panel.client, 10ms)) {
        if (m->value("command", "") == "notice") notice = m;
      }
      return notice.has_value();
    }, 30s));
    CHECK((*notice)["body"]["title"] == "Water off Tuesday");
    auto resident = stack.token("resident", community, "b2-202");
    REQUIRE(test::eventually([&] {
      auto r = test::http_get("127.0.0.1", stack.http_port(), "/api/v1/notices", resident);
      return r && r->status == 200 && json::parse(r->body)["count"] == 1;
    }, 30s));
  }

  TEST_CASE("thousands of WebSocket subscribe and close cycles free everything they held") {
    std::string community = test::unique_name("ws");
    // A log of its own: a hub on the shared test log would fold every earlier test's events first,
    // and its memory would grow by tens of MiB at some point of the cycles, for reasons of its own.
    auto kafka = test::services().kafka();
    test::create_topic(kafka, community + ".events", 12);
    test::create_topic(kafka, community + ".deadletter", 3, TopicKind::DeadLetter);
    test::Stack stack({community}, {{"COURTYARD_KAFKA_EVENTS_TOPIC", community + ".events"},
                                    {"COURTYARD_KAFKA_DEADLETTER_TOPIC", community + ".deadletter"}});
    stack.start_hub();
    const std::string target = "/api/v1/subscribe";
    CHECK_FALSE(test::WsClient::connect(stack.http_port(), target, "cy_wrong"));
    auto cycle = [&](int i) {
      auto ws = test::WsClient::connect(stack.http_port(), target, stack.admin_token());
      REQUIRE(ws);
      REQUIRE(ws->receive());  // hello
      ws->send(json{{"op", "subscribe"}, {"id", "a"}, {"stream", "alerts"}}.dump());
      ws->send(json{{"op", "subscribe"}, {"id", "b"}, {"prefix", "devices/" + std::to_string(i)}}.dump());
      auto snapshot = ws->receive();
      REQUIRE(snapshot);
      CHECK(json::parse(*snapshot)["type"] == "snapshot");
      REQUIRE(ws->receive());
      if (i % 2) ws->close();  // and half of them just drop the connection
    };
    auto settled_rss = [&] {
      REQUIRE(test::eventually([&] { return test::metric(stack, "courtyard_ws_connections") == 0; }, 10s));
      return test::rss_kb(stack.hub().pid());
    };
    // Warm-up, then blocks of 1,000 cycles. A leak grows every block alike (1,000 leaked sessions
    // of even 1 KiB each: 1 MiB a block).
    for (int i = 0; i < 500; ++i) cycle(i);
    const long warm = settled_rss();
    std::vector<long> rss{warm};
    for (int block = 0; block < 3; ++block) {
      for (int i = 0; i < 1000; ++i) cycle(block * 1000 + i);
      rss.push_back(settled_rss());
    }
    MESSAGE("hub RSS after warm-up and after each 1,000 cycles (kB): ", rss[0], " ", rss[1], " ", rss[2], " ", rss[3]);
    CHECK(test::metric(stack, "courtyard_ws_subscriptions") == 0);
    CHECK(test::metric(stack, "courtyard_ws_connections_total") == 3500);
    // Something outside the sessions (RocksDB's memtable arena, librdkafka's buffers) may take a
    // one-time step of a few MiB at any moment; a leak would grow in every block.
    int flat_blocks = 0;
    for (int block = 1; block <= 3; ++block) flat_blocks += rss[block] - rss[block - 1] < 1024;
    CHECK(flat_blocks >= 2);
  }
}
