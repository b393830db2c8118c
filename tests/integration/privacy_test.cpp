// The privacy vault over the real brokers (issue 15): a family with contacts, a fall, staff reading
// whom to call (the read trail), the daughter forgotten; then her name and number are nowhere in
// Kafka's files or the hub's, the API says "erased", replay and the audit still pass, and an
// access request for her mother still answers.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "common/kafka.h"
#include "devices/provisioner.h"
#include "http_client.h"
#include "services.h"

using namespace courtyard;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// Every regular file under `root` that holds `needle`, byte for byte.
std::vector<std::string> files_holding(const std::filesystem::path& root, const std::string& needle) {
  std::vector<std::string> found;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(root, std::filesystem::directory_options::skip_permission_denied, ec);
       it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (ec || !it->is_regular_file(ec)) continue;
    std::ifstream in(it->path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), {});
    if (bytes.find(needle) != std::string::npos) found.push_back(it->path().string());
  }
  return found;
}

json get_as(test::Stack& stack, const std::string& target, const std::string& token) {
  auto r = test::http_get("127.0.0.1", stack.http_port(), target, token);
  REQUIRE(r);
  INFO(target, " -> ", r->status, " ", r->body);
  REQUIRE(r->status == 200);
  return json::parse(r->body);
}

}  // namespace

TEST_SUITE("integration: privacy") {
  TEST_CASE("a forgotten daughter is erased from every copy, while replay, the chains and her mother's export still hold") {
    auto services = test::services();
    const std::string community = test::unique_name("pv");
    // Her name and number, unique to this run: a byte scan finds them only if they leaked.
    const std::string name = "Wang Mei " + community, phone = "+86 138 " + std::to_string(10000000 + std::rand() % 89999999);
    test::Stack stack({community}, {{"COURTYARD_INGEST_TICK_INTERVAL_MS", "200"}, {"COURTYARD_HUB_AUDIT_INTERVAL_S", "1"}});
    stack.start_ingest();
    stack.start_hub();
    auto wearable = test::provision_via_api(stack, community, community + "-wear", "wearable", "b1-101");

    auto record = [&](const json& person) {
      auto [status, out] = stack.post("/api/v1/people", person);
      INFO(out.dump());
      REQUIRE(status == 201);
      return out["subject"].get<std::string>();
    };
    const auto mother = record({{"community", community}, {"kind", "resident"}, {"unit", "b1-101"},
                                {"name", "Li Lan " + community}, {"tokens", {"face-" + community}}});
    const auto daughter = record({{"community", community}, {"kind", "family"}, {"unit", "b1-101"}, {"name", name},
                                  {"phone", phone}, {"relationship", "daughter"}});
    REQUIRE(test::eventually([&] { return stack.get("/api/v1/people/" + community + "/" + daughter).has_value(); }, 30s));
    auto [set, _] = stack.post("/api/v1/contacts/" + community, {{"unit", "b1-101"},
                                                                 {"device", wearable.id},
                                                                 {"wearer", mother},
                                                                 {"contacts", {daughter}}});
    REQUIRE(set == 202);

    // The fall, and the night desk reading whom to call.
    REQUIRE(wearable.client->publish_and_wait(
                schemas::topic_for(CommunityId(community), DeviceId(wearable.id), "telemetry"),
                json{{"seq", 1}, {"ts", 1795950000000}, {"type", "wearable.alarm"}, {"body", {{"kind", "fall"}}}}.dump(), 1,
                10s) == 0);
    std::string alert;
    REQUIRE(test::eventually([&] {
      auto alerts = stack.get("/api/v1/alerts?rule=fall&community=" + community);
      if (!alerts || (*alerts)["count"] != 1) return false;
      alert = (*alerts)["items"][0]["id"];
      return stack.get("/api/v1/contacts/" + community + "/b1-101/" + wearable.id).has_value();
    }, 30s));
    const auto staff = stack.token("staff", community);
    auto card = get_as(stack, "/api/v1/alerts/" + alert + "/contacts", staff);
    CHECK(card["wearer"]["fields"]["name"] == "Li Lan " + community);
    REQUIRE(card["contacts"].size() == 1);
    CHECK(card["contacts"][0]["fields"]["name"] == name);
    CHECK(card["contacts"][0]["fields"]["phone"] == phone);
    // The read is an event in the log, folded into the trail the household and auditors see.
    REQUIRE(test::eventually([&] {
      auto trail = stack.get("/api/v1/reads?community=" + community + "&subject=" + daughter);
      return trail && (*trail)["count"] == 1 && (*trail)["items"][0]["purpose"] == "alert:" + alert;
    }, 30s));
    auto household = get_as(stack, "/api/v1/reads?unit=b1-101", stack.token("resident", community, "b1-101"));
    CHECK(household["count"] == 2);  // the mother's and the daughter's fields were shown

    // Forget the daughter (the CLI, on the hub's vault directory).
    auto [forgot, forget_out] = test::run_courtyard(stack, {"people", "forget", community, daughter, "--reason",
                                                            "her request of 2026-12-01"}, "forget");
    INFO(forget_out);
    REQUIRE(forgot == 0);
    REQUIRE(test::eventually([&] {
      auto p = stack.get("/api/v1/people/" + community + "/" + daughter);
      return p && (*p)["erased"] == true;
    }, 30s));
    auto fields = get_as(stack, "/api/v1/people/" + community + "/" + daughter + "/fields", stack.admin_token());
    CHECK(fields["erased"] == true);
    CHECK_FALSE(fields.contains("fields"));
    card = get_as(stack, "/api/v1/alerts/" + alert + "/contacts", staff);
    CHECK(card["contacts"][0]["erased"] == true);
    CHECK(card["wearer"]["fields"]["name"] == "Li Lan " + community);

    // Her mother's access request still answers, from the API and the CLI (with her passes from the log).
    auto exported = get_as(stack, "/api/v1/people/" + community + "/" + mother + "/export", stack.admin_token());
    CHECK(exported["person"]["fields"]["name"] == "Li Lan " + community);
    CHECK(exported["alerts"].size() == 1);
    auto [cli_status, cli_out] = test::run_courtyard(stack, {"people", "export", community, mother}, "export");
    REQUIRE(cli_status == 0);
    auto cli_export = test::last_json_line(cli_out);
    CHECK(cli_export["person"]["fields"]["name"] == "Li Lan " + community);
    CHECK(cli_export["contact_lists"][0]["as"] == "wearer");
    CHECK(cli_export.dump().find(daughter) == std::string::npos);  // her mother's answer names nobody else
    CHECK(cli_export["passes"].is_array());

    // A full replay still equals live, and the audit (chains, signed digests) still passes.
    REQUIRE(test::eventually([&] { auto h = stack.get("/healthz"); return h && (*h)["lag_total"] == 0; }, 30s));
    auto [verified, verify_out] = test::run_courtyard(stack, {"replay", "verify"}, "verify");
    INFO(verify_out.substr(0, 2000));
    CHECK(verified == 0);
    // The hub's signed digests of a moment after the forgetting are on the audit topic.
    const auto forgotten_at = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch()).count();
    REQUIRE(test::eventually([&] {
      bool after = false;
      auto read = read_to_end(services.kafka_as("auditor"), services.kafka().audit_topic, [&](const rd_kafka_message_t& m) {
        const std::string key = m.key ? std::string(static_cast<const char*>(m.key), m.key_len) : "";
        const auto prefix = stack.hub_instance_id(0) + "/";
        after |= key.starts_with(prefix) && std::stoll(key.substr(prefix.size())) > forgotten_at;
      });
      return read && after;
    }, 30s));
    auto [audited, audit_out] = test::run_courtyard(stack, {"replay", "audit"}, "audit");
    INFO(audit_out.substr(0, 2000));
    CHECK(audited == 0);

    // None of her plaintext anywhere: Kafka's log files (every topic) and the hub's directory
    // (its store, checkpoints, vault, logs). The community's id is there: the scan reads the right bytes.
    const auto kafka_data = std::filesystem::path(services.var) / "kafka" / "data";
    REQUIRE_FALSE(files_holding(kafka_data, community).empty());
    REQUIRE_FALSE(files_holding(stack.dir().path() / "var" / "hub", community).empty());
    for (const auto& secret : {name, phone}) {
      CAPTURE(secret);
      CHECK(files_holding(kafka_data, secret).empty());
      CHECK(files_holding(stack.dir().path(), secret).empty());
    }
  }
}
