// Dispatch over the real brokers (issue 16): a compound of two grids with duty rosters; a fall in
// grid A goes to grid A's worker, unacknowledged it escalates to the duty manager at the
// configured time, the hub is SIGKILLed in between and neither loses nor repeats a step; the duty
// manager's own pass at the building's door is their arrival; the daughter's webhook hears of the
// fall, the staff assigned, their arrival and the resolution, signed; resolved, the day's response
// figures hold the incident; a replay reproduces every decision.
#include <doctest/doctest.h>

#include <fstream>
#include <set>

#include "common/digest.h"
#include "common/mqtt.h"
#include "http_client.h"
#include "services.h"
#include "webhook_receiver.h"

using namespace courtyard;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// Every day, all day: who is on duty does not depend on when the test runs (the unit tests cover
// shifts, nights and exceptions).
void publish(test::ApiDevice& device, const std::string& community, std::uint64_t seq, const std::string& type, const json& body) {
  REQUIRE(device.client->publish_and_wait(schemas::topic_for(CommunityId(community), DeviceId(device.id), "telemetry"),
                                          json{{"seq", seq}, {"ts", 1795950000000}, {"type", type}, {"body", body}}.dump(),
                                          1, 10s) == 0);
}

// The dispatch's steps on an alert's timeline: "what: note".
std::vector<std::string> dispatch_steps(const json& alert) {
  std::vector<std::string> steps;
  for (const auto& t : alert["timeline"]) {
    if (t["by"] == "dispatch") steps.push_back(t["what"].get<std::string>() + ": " + t["note"].get<std::string>());
  }
  return steps;
}

}  // namespace

TEST_SUITE("integration: dispatch") {
  TEST_CASE("a fall goes to its grid's worker, escalates to the duty manager once across a hub crash, and is counted") {
    auto services = test::services();
    const std::string community = test::unique_name("dp");
    test::TempDir rules_dir;
    std::ofstream(rules_dir.str("rules.toml")) << "[defaults]\nfall_escalate_s = 600\n"
                                                  "[defaults.dispatch]\nchain = [\"duty_manager\"]\n"
                                                  "[defaults.dispatch.ack_target_s]\nmajor = 4\n";
    test::WebhookReceiver gateway;  // what an SMS or voice gateway would receive
    test::Stack stack({community}, {{"COURTYARD_HUB_RULES_FILE", rules_dir.str("rules.toml")},
                                    {"COURTYARD_INGEST_TICK_INTERVAL_MS", "200"},
                                    {"COURTYARD_NOTIFY_WEBHOOK_URL", gateway.url()},
                                    {"COURTYARD_NOTIFY_WEBHOOK_BACKOFF_MS", "200"}});
    stack.start_ingest();
    stack.start_hub();
    auto watch = test::provision_via_api(stack, community, community + "-watch", "wearable", "b3-0402");
    auto door = test::provision_via_api(stack, community, community + "-door-b3", "door");
    // The wearer's daughter, in the vault, is the watch's emergency contact.
    auto [recorded, person] = stack.post("/api/v1/people", {{"community", community}, {"kind", "family"}, {"unit", "b3-0402"},
                                                            {"name", "Wang Mei"}, {"phone", "+86 138 0000 0000"},
                                                            {"relationship", "daughter"}});
    REQUIRE(recorded == 201);
    const std::string daughter = person["subject"];
    // (The API checks her record and the watch's, which the processors fold a moment later.)
    REQUIRE(test::eventually([&] {
      return stack.post("/api/v1/contacts/" + community, {{"unit", "b3-0402"}, {"device", watch.id}, {"contacts", {daughter}}}).first == 202;
    }, 30s));

    // The compound: b3 (flat b3-0402 and its door) in grid-a, b1 in grid-b; a worker per grid and a duty manager.
    const std::string site = "/api/v1/site/" + community;
    CHECK(stack.post(site, {{"kind", "building"}, {"id", "b3"}, {"members", {"b3-0402", door.id}}}).first == 202);
    CHECK(stack.post(site, {{"kind", "building"}, {"id", "b1"}, {"members", {"b1-0101"}}}).first == 202);
    CHECK(stack.post(site, {{"kind", "grid"}, {"id", "grid-a"}, {"members", {"b3"}}}).first == 202);
    CHECK(stack.post(site, {{"kind", "grid"}, {"id", "grid-b"}, {"members", {"b1"}}}).first == 202);
    const std::string rosters = "/api/v1/rosters/" + community;
    CHECK(stack.post(rosters + "/grid-a/grid_worker", test::always_on_duty("wang")).first == 202);
    CHECK(stack.post(rosters + "/grid-b/grid_worker", test::always_on_duty("zhao")).first == 202);
    CHECK(stack.post(rosters + "/all/duty_manager", test::always_on_duty("chen")).first == 202);
    REQUIRE(test::eventually([&] {
      auto r = stack.get("/api/v1/rosters?community=" + community);
      auto s = stack.get("/api/v1/site?community=" + community);
      auto c = stack.get("/api/v1/contacts?community=" + community);
      return r && s && c && (*r)["count"] == 3 && (*s)["count"] == 4 && (*c)["count"] == 1;
    }, 30s));

    publish(watch, community, 1, "wearable.alarm", {{"kind", "fall"}});
    json alert;
    auto fall = [&] {
      auto alerts = stack.get("/api/v1/alerts?rule=fall&community=" + community);
      if (!alerts || (*alerts)["count"] != 1) return false;
      alert = (*alerts)["items"][0];
      return true;
    };
    REQUIRE(test::eventually([&] { return fall() && alert["assignee"] == "wang"; }, 30s));
    CHECK(alert["grid"] == "grid-a");
    CHECK(alert["building"] == "b3");
    CHECK(alert["assignee_role"] == "grid_worker");

    // The hub dies while wang's four seconds run, and comes back.
    stack.hub().kill_now();
    stack.start_hub();
    REQUIRE_MESSAGE(test::eventually([&] { return fall() && alert["assignee"] == "chen"; }, 60s), alert.dump(1));
    CHECK(alert["assignee_role"] == "duty_manager");
    const auto steps = dispatch_steps(alert);
    REQUIRE(steps.size() >= 2);
    CHECK(steps[0] == "assigned: grid_worker wang");
    CHECK(steps[1] == "escalated: wang did not acknowledge within 4 s; now duty_manager chen");
    CHECK(std::count_if(steps.begin(), steps.end(), [](const std::string& s) { return s.starts_with("escalated"); }) == 1);
    // Told at the configured time, on the log's clock (ticks every 200 ms).
    const auto assigned_at = alert["timeline"][1]["at"].get<std::int64_t>();
    CHECK(alert["assigned_at"].get<std::int64_t>() - assigned_at >= 4000);
    CHECK(alert["assigned_at"].get<std::int64_t>() - assigned_at < 4000 + 2000);

    // Chen's own pass at the building's door: arrived.
    publish(door, community, 1, "gate.pass", {{"credential", "card"}, {"subject", "chen"}, {"direction", "in"}, {"decision", "granted"}});
    REQUIRE(test::eventually([&] { return fall() && alert["response"] == "arrived"; }, 30s));
    CHECK(alert["state"] == "acknowledged");
    CHECK(alert["timeline"].back()["by"] == "gate");

    // Resolved: the day's figures hold it, breached (it escalated), with chen as the responder.
    auto [resolved, _] = stack.post("/api/v1/alerts/" + alert["id"].get<std::string>() + "/resolve", {{"note", "ambulance"}});
    REQUIRE(resolved == 202);
    json day;
    REQUIRE(test::eventually([&] {
      auto figures = stack.get("/api/v1/responses?community=" + community);
      if (!figures || (*figures)["count"] != 1) return false;
      day = (*figures)["items"][0];
      return true;
    }, 30s));
    CHECK(day["figures"]["incidents"] == 1);
    CHECK(day["figures"]["breached"] == 1);
    CHECK(day["by_grid"]["grid-a"]["incidents"] == 1);
    CHECK(day["by_responder"]["chen"]["arrive"]["count"] == 1);
    CHECK(day["breached"] == json::array({alert["id"]}));
    CHECK(day["incidents"][alert["id"].get<std::string>()]["ack_ms"].get<std::int64_t>() >= 4000);

    // (The brokers are shared by every test: this hub folds other tests' communities too and tells
    // their families as well. Only this community's notifications are this test's.)
    auto ours = [&](const test::WebhookReceiver::Request& r) { return json::parse(r.body)["community"] == community; };
    // The daughter's gateway heard the fall, the staff assigned, their arrival and the end, each
    // once (the crash may repeat a delivery, never a decision: ids are the fold's), signed with
    // the hub's key, carrying her subject id and never her name or number.
    auto secret = read_secret(stack.env().at("COURTYARD_VAR") + "/secrets/webhook-secret");
    REQUIRE(secret);
    std::vector<std::string> family;  // "what", by notification id, first receipt
    std::set<std::string> seen;
    auto received = [&] {  // what the gateway got and what the hub recorded, for a failure's message
      json got = json::array();
      for (const auto& r : gateway.requests()) {
        if (!ours(r)) continue;
        const auto body = json::parse(r.body);
        got.push_back({body["id"], body["to"], body["what"], body["recipients"]});
      }
      return got.dump() + "\nrecorded: " + stack.get("/api/v1/notifications?community=" + community + "&limit=100").value_or(json()).dump();
    };
    REQUIRE_MESSAGE(test::eventually([&] {
      family.clear();
      seen.clear();
      for (const auto& r : gateway.requests()) {
        const auto body = json::parse(r.body);
        if (!ours(r) || body["to"] != "family" || !seen.insert(body["id"].get<std::string>()).second) continue;
        family.push_back(body["what"]);
      }
      return family.size() == 4;
    }, 60s), received());
    CHECK(family == std::vector<std::string>{"alert", "staff_assigned", "staff_arrived", "resolved"});
    bool told_staff = false;
    for (const auto& r : gateway.requests()) {
      if (!ours(r)) continue;
      CHECK(r.headers.at("x-courtyard-signature") ==
            "sha256=" + hmac_sha256_hex(*secret, r.headers.at("x-courtyard-timestamp") + "." + r.body));
      CHECK(r.body.find("Wang Mei") == std::string::npos);
      CHECK(r.body.find("0000 0000") == std::string::npos);
      const auto body = json::parse(r.body);
      if (body["to"] == "family") CHECK(body["recipients"] == json::array({daughter}));
      told_staff |= body["to"] == "staff" && body["recipients"] == json::array({"chen"}) && body["what"] == "escalated";
    }
    CHECK(told_staff);
    // Each delivery is in the log and on the notification's record.
    REQUIRE(test::eventually([&] {
      auto n = stack.get("/api/v1/notifications?community=" + community + "&limit=100");
      if (!n) return false;
      for (const auto& item : (*n)["items"]) {
        if (item["webhook"]["state"] != "delivered") return false;
      }
      return (*n)["count"] == 6;  // the family's four, wang's and chen's
    }, 60s));

    // A replay from the log decides the same: every alert record and the figures equal live.
    REQUIRE(test::eventually([&] { auto h = stack.get("/healthz"); return h && (*h)["lag_total"] == 0; }, 30s));
    auto [verified, out] = test::run_courtyard(stack, {"replay", "verify"}, "verify");
    INFO(out.substr(0, 2000));
    CHECK(verified == 0);
  }
}
