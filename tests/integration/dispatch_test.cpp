// Dispatch over the real brokers (issue 16): a compound of two grids with duty rosters; a fall in
// grid A goes to grid A's worker, unacknowledged it escalates to the duty manager at the
// configured time, the hub is SIGKILLed in between and neither loses nor repeats a step; the duty
// manager's own pass at the building's door is their arrival; the daughter's webhook hears of the
// fall, the staff assigned, their arrival and the resolution, signed; resolved, the day's response
// figures hold the incident; a replay reproduces every decision. And a whole compound imported from
// one CSV file (scripts/import-compound) through the hub's API.
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
    bool told_staff = false, relieved = false;
    for (const auto& r : gateway.requests()) {
      if (!ours(r)) continue;
      CHECK(r.headers.at("x-courtyard-signature") ==
            "sha256=" + hmac_sha256_hex(*secret, r.headers.at("x-courtyard-timestamp") + "." + r.body));
      CHECK(r.body.find("Wang Mei") == std::string::npos);
      CHECK(r.body.find("0000 0000") == std::string::npos);
      const auto body = json::parse(r.body);
      if (body["to"] == "family") CHECK(body["recipients"] == json::array({daughter}));
      told_staff |= body["to"] == "staff" && body["recipients"] == json::array({"chen"}) && body["what"] == "escalated";
      relieved |= body["to"] == "staff" && body["recipients"] == json::array({"wang"}) && body["what"] == "relieved";
    }
    CHECK(told_staff);
    CHECK(relieved);  // wang stands down
    // Each delivery is in the log and on the notification's record.
    REQUIRE(test::eventually([&] {
      auto n = stack.get("/api/v1/notifications?community=" + community + "&limit=100");
      if (!n) return false;
      for (const auto& item : (*n)["items"]) {
        if (item["webhook"]["state"] != "delivered") return false;
      }
      return (*n)["count"] == 8;  // the family's four; wang assigned and relieved; chen escalated to and told of the end
    }, 60s));

    // A replay from the log decides the same: every alert record and the figures equal live.
    REQUIRE(test::eventually([&] { auto h = stack.get("/healthz"); return h && (*h)["lag_total"] == 0; }, 30s));
    auto [verified, out] = test::run_courtyard(stack, {"replay", "verify"}, "verify");
    INFO(out.substr(0, 2000));
    CHECK(verified == 0);
  }

  TEST_CASE("a whole compound is imported from one CSV file: buildings, units, grids, staff in the vault, rosters that say who "
            "is on duty; a bad file sends nothing, a resident's token is refused, and importing it again changes nothing") {
    const std::string community = test::unique_name("imp");
    test::Stack stack({community});
    stack.start_ingest();
    stack.start_hub();
    const std::string header = "type,id,label,building,grid,floors,x,y,role,name,phone,days,from,to\n";
    const std::string good = header +
                             "grid,grid-a,北区,,,,,,,,,,,\n"
                             "grid,grid-b,南区,,,,,,,,,,,\n"
                             "building,b1,1号楼,,grid-a,18,0,0,,,,,,\n"
                             "building,b2,2号楼,,grid-b,18,60,0,,,,,,\n"
                             "unit,b1-0101,,b1,,,,,,,,,,\n"
                             "unit,b2-0101,,b2,,,,,,,,,,\n"
                             "door,door-b1,,b1,,,,,,,,,,\n"
                             "door,gate-east,,,grid-a,,,,,,,,,\n"
                             "staff,staff-wang,,,grid-a,,,,grid_worker,Wang Lei,+86 138 0000 0001,mon-fri,08:00,20:00\n"
                             "staff,staff-li,,,grid-a,,,,grid_worker,Li Qiang,,mon-fri,20:00,08:00\n"
                             "staff,staff-chen,,,all,,,,duty_manager,Chen Jing,,daily,00:00,24:00\n";
    const std::string bad = header + "building,b-bad,,,,18,0,0,,,,,,\nunit,b9-0101,,b9,,,,,,,,,,\n";
    std::ofstream(stack.dir().str("good.csv")) << good;
    std::ofstream(stack.dir().str("bad.csv")) << bad;
    int runs = 0;
    auto import = [&](const std::string& file, const std::string& token) {
      const std::string log = stack.dir().str("import-" + std::to_string(++runs) + ".log");
      test::Process tool({"/usr/bin/env", "python3", std::string(COURTYARD_SOURCE_DIR) + "/scripts/import-compound", "--community",
                          community, "--url", "http://127.0.0.1:" + std::to_string(stack.http_port()), stack.dir().str(file)},
                         {{"COURTYARD_TOKEN", token}}, log);
      const int status = tool.wait();
      return std::pair{status, test::read_file(log)};
    };
    const auto staff = stack.token("staff", community);

    auto [refused, why] = import("bad.csv", staff);
    INFO(why);
    CHECK(refused == 1);
    CHECK(why.find("line 3: unit b9-0101 is in building 'b9'") != std::string::npos);
    auto [residents, answer] = import("good.csv", stack.token("resident", community, "b1-0101"));
    INFO(answer);
    CHECK(residents == 2);  // the hub refuses a household's token the compound's structure

    auto [done, said] = import("good.csv", staff);
    INFO(said);
    REQUIRE(done == 0);
    CHECK(said.find("3 staff recorded") != std::string::npos);
    REQUIRE(test::eventually([&] {
      auto site = stack.get("/api/v1/site?community=" + community);
      auto rosters = stack.get("/api/v1/rosters?community=" + community);
      auto people = stack.get("/api/v1/people?kind=staff&community=" + community);
      return site && (*site)["count"] == 4 && rosters && (*rosters)["count"] == 2 && people && (*people)["count"] == 3;
    }, 30s));
    auto b1 = stack.get("/api/v1/site/" + community + "/building/b1");
    REQUIRE(b1);
    CHECK((*b1)["label"] == "1号楼");
    CHECK((*b1)["members"] == json::array({"b1-0101", "door-b1"}));
    CHECK((*stack.get("/api/v1/site/" + community + "/grid/grid-a"))["members"] == json::array({"b1", "gate-east"}));
    CHECK_FALSE(stack.get("/api/v1/site/" + community + "/building/b-bad"));  // the refused file sent nothing
    CHECK((*stack.get("/api/v1/registry/" + community + "/person/staff-wang"))["role"] == "staff");
    CHECK(stack.get("/api/v1/registry/" + community + "/household/b2-0101"));
    // Monday 2026-11-30 10:00 and 22:00 in the compound (UTC+8): the day worker, then the night one.
    const std::int64_t monday_10 = 1796004000000, hours = 3600000;
    auto on_duty = [&](const std::string& roster, std::int64_t at) {
      auto r = stack.get("/api/v1/rosters/" + community + "/" + roster + "/on-duty?at=" + std::to_string(at));
      return r ? (*r)["staff"] : json("no answer");
    };
    CHECK(on_duty("grid-a/grid_worker", monday_10) == "staff-wang");
    CHECK(on_duty("grid-a/grid_worker", monday_10 + 12 * hours) == "staff-li");
    CHECK(on_duty("grid-a/grid_worker", monday_10 + 5 * 24 * hours) == nullptr);  // Saturday: nobody in the file
    CHECK(on_duty("all/duty_manager", monday_10 + 5 * 24 * hours) == "staff-chen");
    // Their names are in the vault, not the log's records.
    auto people = stack.get("/api/v1/people?kind=staff&community=" + community);
    CHECK(people->dump().find("Wang Lei") == std::string::npos);

    auto [again, said_again] = import("good.csv", staff);
    INFO(said_again);
    CHECK(again == 0);
    CHECK(said_again.find("3 staff already in the vault") != std::string::npos);
    CHECK(said_again.find("staff recorded") == std::string::npos);
    CHECK((*stack.get("/api/v1/people?kind=staff&community=" + community))["count"] == 3);
  }

  TEST_CASE("a staff member's handheld is paged on its own topic when an alert is assigned to them, and nobody else's is") {
    const std::string community = test::unique_name("page");
    test::Stack stack({community});
    stack.start_ingest();
    stack.start_hub();
    // The handhelds' ids are the staff members' person tokens: that is how the hub knows whose they are.
    const std::string wang = community + "-wang", li = community + "-li";
    auto pager = test::provision_via_api(stack, community, wang, "handheld");
    auto other = test::provision_via_api(stack, community, li, "handheld");
    auto smoke = test::provision_via_api(stack, community, community + "-smoke", "home_sensor", "b1-0101");
    const std::string rosters = "/api/v1/rosters/" + community;
    REQUIRE(stack.post(rosters + "/all/grid_worker", test::always_on_duty(wang)).first == 202);
    REQUIRE(stack.post(rosters + "/all/duty_manager", test::always_on_duty(li)).first == 202);
    REQUIRE(test::eventually([&] {
      auto r = stack.get("/api/v1/rosters?community=" + community);
      return r && (*r)["count"] == 2;
    }, 30s));
    publish(smoke, community, 1, "home.sensor", {{"sensor", "smoke"}, {"state", "alarm"}});
    std::optional<json> page;
    REQUIRE(test::eventually([&] {
      while (auto m = pager.client->next_message(10ms)) {
        auto j = json::parse(m->payload, nullptr, false);
        if (j.is_object() && j.value("command", "") == "notification") page = j;
      }
      return page.has_value();
    }, 30s));
    CHECK((*page)["device"] == wang);
    CHECK((*page)["body"]["what"] == "assigned");
    CHECK((*page)["body"]["rule"] == "smoke");
    CHECK((*page)["body"]["unit"] == "b1-0101");
    CHECK((*page)["body"]["staff"] == wang);
    // The duty manager's handheld hears nothing of it (nothing was escalated to them).
    while (auto m = other.client->next_message(500ms)) {
      auto j = json::parse(m->payload, nullptr, false);
      CHECK_FALSE((j.is_object() && j.value("command", "") == "notification"));
    }
  }
}
