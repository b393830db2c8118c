// The auditor's replay against a live run: the simulated community with alerts, an operator's
// acknowledgement, a command, a notice and ticks; `courtyard replay verify` must find the
// rebuilt projections identical to the live ones, and must name the record when they are not.
#include <doctest/doctest.h>

#include <filesystem>
#include <map>
#include <thread>

#include "common/handles.h"
#include "http_client.h"
#include "processors/store.h"
#include "schemas/event.h"
#include "services.h"

using namespace courtyard;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// Runs `courtyard replay ...` with the stack's environment: exit status and its JSON summary.
std::pair<int, json> replay(test::Stack& stack, std::vector<std::string> args, const std::string& name,
                            const std::map<std::string, std::string>& env = {}) {
  args.insert(args.begin(), {COURTYARD_BIN, "replay"});
  auto environment = stack.env();
  for (const auto& [k, v] : env) environment[k] = v;
  test::Process p(args, environment, stack.dir().str(name + ".log"));
  int status = p.wait();
  auto out = test::read_file(stack.dir().str(name + ".log"));
  MESSAGE(name, ": ", out.substr(0, 600));
  json summary;
  for (std::size_t at = 0; at < out.size();) {  // the summary is the JSON line among the logs
    auto end = out.find('\n', at);
    auto line = out.substr(at, end - at);
    if (line.starts_with("{")) summary = json::parse(line, nullptr, false);
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return {status, summary};
}

// Copies the events topic into a new one, message for message and partition for partition,
// letting `edit` change or drop (return false) each event on the way.
// Copies the events topic, partition for partition, through `edit` (false: leave the event out),
// which is told the offset the event gets in the copy: the copy is written without transactions,
// so it has no commit markers and its offsets are not the log's.
std::string copy_events(const KafkaConfig& kafka, const std::string& name,
                        const std::function<bool(std::int32_t, std::int64_t, schemas::Event&)>& edit) {
  test::create_topic(kafka, name, 12);
  auto producer = make_producer(kafka, {{"enable.idempotence", "true"}, {"acks", "all"}});
  REQUIRE(producer);
  std::map<std::int32_t, std::int64_t> next;  // partition -> offset of the next record of the copy
  REQUIRE(read_to_end(kafka, kafka.events_topic, [&](const rd_kafka_message_t& m) {
    std::string value(static_cast<const char*>(m.payload), m.len);
    auto event = schemas::decode(value);
    if (event && !event->community.empty()) {
      if (!edit(m.partition, next[m.partition], *event)) return;
      value = schemas::encode(*event);
    }
    ++next[m.partition];
    std::string key = m.key ? std::string(static_cast<const char*>(m.key), m.key_len) : std::string();
    rd_kafka_resp_err_t err;
    while ((err = rd_kafka_producev(producer->get(), RD_KAFKA_V_TOPIC(name.c_str()), RD_KAFKA_V_PARTITION(m.partition),
                                    RD_KAFKA_V_KEY(key.data(), key.size()), RD_KAFKA_V_VALUE(value.data(), value.size()),
                                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(producer->get(), 100);  // a long log outruns the producer's queue
    }
    REQUIRE(err == RD_KAFKA_RESP_ERR_NO_ERROR);
  }));
  REQUIRE(rd_kafka_flush(producer->get(), 30000) == RD_KAFKA_RESP_ERR_NO_ERROR);
  return name;
}

}  // namespace

TEST_SUITE("integration: replay") {
  TEST_CASE("a rebuild from the log after a live run gives projections identical to the live ones, and a changed record is named") {
    auto services = test::services();
    std::string community = test::unique_name("rp");
    test::Stack stack({community}, {{"COURTYARD_INGEST_TICK_INTERVAL_MS", "200"}, {"COURTYARD_HUB_AUDIT_INTERVAL_S", "1"}});
    stack.start_ingest();
    stack.start_hub();
    auto sim = services.simulator({community});
    sim.devices = 60;
    sim.rate = 400;
    sim.events = 3000;
    sim.bad_fraction = 0.02;
    sim.anomalies = {"fever", "fall", "sos"};  // kinds every fleet of 60 has (a home sensor's sensor depends on its id)
    sim.scenes_per_minute = 300;  // camera snapshots too: the log keeps what the vision processor saw, not the images
    auto plate_key = read_secret(stack.dir().str("var/secrets/plate-key"));
    REQUIRE(plate_key);
    sim.plate_key = *plate_key;
    devices::Simulator simulator(sim);
    REQUIRE(simulator.provision());
    auto report = simulator.run(std::stop_token{});
    REQUIRE_MESSAGE(report, (report ? "" : report.error()));
    REQUIRE(test::eventually([&] { return test::projections_match(stack, *report); }, 60s));
    REQUIRE(report->scenes > 0);
    REQUIRE(test::eventually([&] {
      auto cameras = stack.get("/api/v1/cameras?community=" + community);
      std::uint64_t analysed = 0;
      if (cameras) for (const auto& c : (*cameras)["items"]) analysed += c["analysed"].get<std::uint64_t>();
      return analysed == report->scenes;
    }, 60s));

    // What the live hub says now, and the time: an as-of query for this moment must say the same.
    REQUIRE(test::eventually([&] { auto h = stack.get("/healthz"); return h && (*h)["lag_total"] == 0; }, 30s));
    auto alerts = stack.get("/api/v1/alerts?state=active&community=" + community);
    auto occupancy_then = stack.get("/api/v1/communities/" + community + "/occupancy");
    const auto captured_at = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::system_clock::now().time_since_epoch()).count();
    REQUIRE(alerts);
    REQUIRE(occupancy_then);
    REQUIRE_FALSE((*alerts)["items"].empty());
    const std::string alert = (*alerts)["items"][0]["id"];
    const std::string alert_state_then = (*alerts)["items"][0]["state"];
    std::this_thread::sleep_for(50ms);  // what follows is appended strictly after the captured moment

    // Operators act: an acknowledgement, a command, a notice; all of them events in the log.
    CHECK(stack.post("/api/v1/alerts/" + alert + "/ack", {{"note", "on my way"}}).first == 202);
    auto devices = stack.devices();
    CHECK(stack.post("/api/v1/devices/" + devices.begin()->first + "/commands", {{"action", "ping"}}).first == 202);
    CHECK(stack.post("/api/v1/notices", {{"community", community}, {"title", "Lift maintenance"}}).first == 202);
    REQUIRE(test::eventually([&] {
      auto a = stack.get("/api/v1/alerts/" + alert);
      auto n = stack.get("/api/v1/notices?community=" + community);
      return a && (*a)["state"] == "acknowledged" && n && (*n)["count"] == 1;
    }, 30s));

    // The hub keeps running (and ticking) while the auditor verifies.
    auto [status, summary] = replay(stack, {"verify"}, "verify");
    CHECK(status == 0);
    CHECK(summary["equal"] == true);
    CHECK(summary["digests"]["alerts"]["records"].get<int>() >= 4);
    CHECK(summary["digests"]["devices"]["records"].get<int>() >= 60);
    // (the test services' log holds the other tests' communities too: the hub and the rebuild read them all)
    CHECK(summary["digests"]["notices"]["records"].get<int>() >= 1);
    CHECK(summary["digests"]["cameras"]["records"].get<int>() >= 1);
    CHECK(summary["digests"]["commands"]["records"].get<int>() >= 1);
    CHECK(summary["digests"]["rejections"]["records"].get<int>() >= 1);

    // The hub published a digest record every second; the log replays to each of them exactly.
    const auto checkpoints = std::filesystem::path(stack.dir().str("var")) / "hub/checkpoints";
    REQUIRE(test::eventually([&] {
      std::error_code ec;
      return std::distance(std::filesystem::directory_iterator(checkpoints, ec), std::filesystem::directory_iterator()) >= 3;
    }, 30s));
    // Each checkpoint holds only what was in Kafka by the time it is named by: the base of an
    // as-of query for that time must not contain a later event.
    {
      auto kafka = make_consumer(test::services().kafka(), {{"group.id", test::unique_name("checkpoint-check")}});
      REQUIRE(kafka);
      std::error_code ec;
      for (const auto& entry : std::filesystem::directory_iterator(checkpoints, ec)) {
        const auto name = entry.path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        processors::StoreConfig sc;
        sc.dir = entry.path().string();
        sc.read_only = true;
        auto checkpoint = processors::Store::open(sc);
        if (!checkpoint) {  // pruned by the hub (it keeps the newest few) while we looked
          CHECK_MESSAGE(!std::filesystem::exists(entry.path()), checkpoint.error());
          continue;
        }
        for (const auto& [tp, next] : (*checkpoint)->view().offsets()) {
          KafkaPartitionsPtr at(rd_kafka_topic_partition_list_new(1));
          rd_kafka_topic_partition_list_add(at.get(), tp.first.c_str(), tp.second)->offset = std::stoll(name) + 1;
          REQUIRE(rd_kafka_offsets_for_times(kafka->get(), at.get(), 10000) == RD_KAFKA_RESP_ERR_NO_ERROR);
          std::int64_t end = at->elems[0].offset;  // the first record after the name's time (-1: none)
          if (end < 0) {
            std::int64_t low = 0;
            REQUIRE(rd_kafka_query_watermark_offsets(kafka->get(), tp.first.c_str(), tp.second, &low, &end, 10000) ==
                    RD_KAFKA_RESP_ERR_NO_ERROR);
          }
          CAPTURE(name);
          CAPTURE(tp.first);
          CAPTURE(tp.second);
          CHECK(next <= end);
        }
      }
    }
    auto [audited, audit_summary] = replay(stack, {"audit"}, "audit");
    CHECK(audited == 0);
    CHECK(audit_summary["records"].get<int>() >= 3);
    CHECK(audit_summary["equal"] == true);

    // As of the captured moment (from the newest checkpoint before it plus the log): the alert not
    // yet acknowledged, no notice, the same occupancy. Through the hub for an auditor, and the CLI.
    auto auditor = stack.token("auditor");
    auto past = [&](const std::string& target) {
      const char* join = target.find('?') == std::string::npos ? "?" : "&";
      auto r = test::http_get("127.0.0.1", stack.http_port(), target + join + "as_of_time=" + std::to_string(captured_at), auditor);
      REQUIRE(r);
      INFO(r->body);
      REQUIRE(r->status == 200);
      return json::parse(r->body);
    };
    CHECK(past("/api/v1/alerts/" + alert)["state"] == alert_state_then);
    auto occupancy_past = past("/api/v1/communities/" + community + "/occupancy");
    for (const char* field : {"people_now", "vehicles_now", "entries_per_hour", "people_entries", "unknown_exits"}) {
      CHECK(occupancy_past[field] == (*occupancy_then)[field]);
    }
    CHECK(past("/api/v1/notices?community=" + community)["count"] == 0);
    CHECK(stack.get("/api/v1/alerts/" + alert).value()["state"] == "acknowledged");
    auto staff = stack.token("staff", community);
    CHECK(test::http_get("127.0.0.1", stack.http_port(), "/api/v1/notices?as_of_time=1", staff)->status == 403);
    auto [as_of_status, as_of_summary] =
        replay(stack, {"as-of", "--time", std::to_string(captured_at), "--key", "alerts/" + alert}, "as-of");
    CHECK(as_of_status == 0);
    CHECK(as_of_summary["records"] == 1);
    CHECK_FALSE(as_of_summary["checkpoint"].is_null());

    // An inquiry about the gate that saw the fever: its events, what it had refused, the alert.
    auto fevers = stack.get("/api/v1/alerts?rule=fever&community=" + community);
    REQUIRE(fevers);
    REQUIRE_FALSE((*fevers)["items"].empty());
    const std::string gate = (*fevers)["items"][0]["device"];
    auto [exported, export_summary] = replay(stack, {"export", "--device", gate}, "export");
    CHECK(exported == 0);
    const auto gate_record = stack.get("/api/v1/devices/" + gate).value();
    CHECK(export_summary["events"].get<int>() >= gate_record["events"].get<int>() + 1);  // and its registration
    CHECK(export_summary["alerts"].get<int>() >= 1);
    const auto export_log = test::read_file(stack.dir().str("export.log"));
    CHECK(export_log.find(R"("kind":"alert")") != std::string::npos);
    CHECK(export_log.find(R"("rule":"fever")") != std::string::npos);
    auto [exported_csv, csv_summary] = replay(stack, {"export", "--device", gate, "--format", "csv"}, "export-csv");
    CHECK(exported_csv == 0);
    CHECK(csv_summary["events"] == export_summary["events"]);
    CHECK(test::read_file(stack.dir().str("export-csv.log")).starts_with("kind,time,community,device,type,partition,offset,detail\n"));

    // A rebuild to a directory holds every alert verify saw (and any the log's clock raised since:
    // ingest ticks on, so an elder of another test's community may have gone quiet meanwhile).
    auto [rebuilt, rebuild_summary] = replay(stack, {"rebuild", "--to", stack.dir().str("rebuilt")}, "rebuild");
    CHECK(rebuilt == 0);
    CHECK(rebuild_summary["digests"]["alerts"]["records"].get<int>() >= summary["digests"]["alerts"]["records"].get<int>());

    // Folded on one thread or on three, each with its share of the partitions: the same projections.
    const auto until = std::to_string(captured_at);
    auto [one_lane, one_lane_summary] = replay(stack, {"rebuild", "--to", stack.dir().str("one-lane"), "--until-time", until},
                                               "rebuild-one-lane", {{"COURTYARD_HUB_FOLD_LANES", "1"}});
    auto [three_lanes, three_lanes_summary] = replay(stack, {"rebuild", "--to", stack.dir().str("three-lanes"), "--until-time", until},
                                                     "rebuild-three-lanes", {{"COURTYARD_HUB_FOLD_LANES", "3"}});
    CHECK(one_lane == 0);
    CHECK(three_lanes == 0);
    CHECK(one_lane_summary["digests"]["devices"]["records"].get<int>() >= 60);
    CHECK(three_lanes_summary["digests"] == one_lane_summary["digests"]);
    CHECK(three_lanes_summary["offsets"] == one_lane_summary["offsets"]);
    CHECK(three_lanes_summary["applied"] == one_lane_summary["applied"]);

    // Someone edits the live store behind the log's back: verify says no, and names the record.
    stack.hub().terminate();
    {
      processors::StoreConfig config;
      config.dir = stack.dir().str("var") + "/hub/state";
      auto live = processors::Store::open(config);
      REQUIRE(live);
      auto record = json::parse(*(*live)->view().get("alerts/" + alert));
      record["state"] = "resolved";
      REQUIRE((*live)->write({{"alerts/" + alert, record.dump()}}, {}));
    }
    auto [tampered, tampered_summary] = replay(stack, {"verify"}, "verify-tampered");
    CHECK(tampered == 1);
    CHECK(tampered_summary["equal"] == false);
    CHECK(tampered_summary["first_difference"]["key"] == "alerts/" + alert);
    CHECK(tampered_summary["digests"]["alerts"]["equal"] == false);
    CHECK(tampered_summary["digests"]["devices"]["equal"] == true);
    CHECK(tampered_summary["chain_breaks"].empty());  // the log itself is intact

    // Every event of the community is chained, one position after the other.
    auto [intact, intact_summary] = replay(stack, {"rebuild", "--to", stack.dir().str("intact")}, "rebuild-intact");
    CHECK(intact == 0);
    const auto& chain = intact_summary["chains"][community];
    CHECK(chain["events"].get<int>() > 3000);
    CHECK(chain["seq"] == chain["events"]);
    CHECK(chain["unchained"] == 0);

    // Somebody with access to Kafka edits one event of the community, in a copy of the log.
    const auto services_kafka = services.kafka();
    std::int64_t altered_offset = -1;
    auto altered = copy_events(services_kafka, test::unique_name("altered"), [&](std::int32_t, std::int64_t offset, schemas::Event& e) {
      if (e.community.str() == community && e.chain_seq == 100) {
        e.device_time_ms += 60'000;  // a minute later than it was
        altered_offset = offset;
      }
      return true;
    });
    auto env = stack.env();
    auto run_on = [&](const std::string& topic, const std::string& name) {
      std::vector<std::string> args = {COURTYARD_BIN, "replay", "rebuild", "--to", stack.dir().str(name)};
      auto e = env;
      e["COURTYARD_KAFKA_EVENTS_TOPIC"] = topic;
      test::Process p(args, e, stack.dir().str(name + ".log"));
      int status = p.wait();
      auto out = test::read_file(stack.dir().str(name + ".log"));
      json summary;
      for (std::size_t at = 0; at < out.size();) {
        auto end = out.find('\n', at);
        auto line = out.substr(at, end - at);
        if (line.starts_with("{")) summary = json::parse(line, nullptr, false);
        if (end == std::string::npos) break;
        at = end + 1;
      }
      MESSAGE(name, ": ", out.substr(out.find("chain"), 600));
      return std::pair{status, summary};
    };
    auto [altered_status, altered_summary] = run_on(altered, "rebuild-altered");
    CHECK(altered_status == 1);
    REQUIRE(altered_summary["chain_breaks"].size() == 1);
    CHECK(altered_summary["chain_breaks"][0]["community"] == community);
    CHECK(altered_summary["chain_breaks"][0]["offset"] == altered_offset);
    CHECK(altered_summary["chain_breaks"][0]["seq"] == 100);
    CHECK(altered_summary["chain_breaks"][0]["what"].get<std::string>().starts_with("altered"));

    // ... or drops one.
    std::int64_t after_dropped = -1;
    bool dropped = false;
    auto dropping = copy_events(services_kafka, test::unique_name("dropped"), [&](std::int32_t, std::int64_t offset, schemas::Event& e) {
      if (e.community.str() != community) return true;
      if (e.chain_seq == 200) return !(dropped = true);
      if (dropped && after_dropped < 0) after_dropped = offset;
      return true;
    });
    auto [dropped_status, dropped_summary] = run_on(dropping, "rebuild-dropped");
    CHECK(dropped_status == 1);
    REQUIRE(dropped_summary["chain_breaks"].size() == 1);
    CHECK(dropped_summary["chain_breaks"][0]["seq"] == 201);
    CHECK(dropped_summary["chain_breaks"][0]["what"] == "missing event(s) 200..200 of the chain before this one");
    CHECK(after_dropped >= 0);
  }
}
