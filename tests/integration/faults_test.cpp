// Faults of the machine under a running stack: each is provoked for real, and what devices were
// told is safe must come out of the log exactly once.
#include <doctest/doctest.h>

#include <csignal>

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include "common/handles.h"
#include "http_client.h"
#include "common/kafka_access.h"
#include "devices/simulator.h"
#include "schemas/event.h"
#include "services.h"

using namespace courtyard;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

std::uint64_t applied(test::Stack& stack) {
  std::uint64_t n = 0;
  for (const auto& [_, d] : stack.devices()) n += d["events"].get<std::uint64_t>();
  return n;
}

// The broker's admin takes ingest's permission to read the registry topic away, for as long as
// this lives (or until restore()): Kafka refusing ingest its registry, as an outage of that
// topic would.
class RegistryReadRevoked {
 public:
  explicit RegistryReadRevoked(KafkaConfig admin) : admin_(std::move(admin)) {
    char error[512] = {0};
    AclBindingPtr filter(rd_kafka_AclBindingFilter_new(
        RD_KAFKA_RESOURCE_TOPIC, admin_.registry_topic.c_str(), RD_KAFKA_RESOURCE_PATTERN_LITERAL, "User:ingest", "*",
        RD_KAFKA_ACL_OPERATION_READ, RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW, error, sizeof error));
    REQUIRE_MESSAGE(filter, error);
    auto client = make_producer(admin_, {});
    REQUIRE(client);
    AdminQueuePtr queue(rd_kafka_queue_new(client->get()));
    rd_kafka_AclBindingFilter_t* filters[] = {filter.get()};
    rd_kafka_DeleteAcls(client->get(), filters, 1, nullptr, queue.get());
    AdminEventPtr event(rd_kafka_queue_poll(queue.get(), 30000));
    REQUIRE(event);
    REQUIRE_MESSAGE(!rd_kafka_event_error(event.get()), rd_kafka_event_error_string(event.get()));
  }
  ~RegistryReadRevoked() { restore(); }
  RegistryReadRevoked(const RegistryReadRevoked&) = delete;
  RegistryReadRevoked& operator=(const RegistryReadRevoked&) = delete;

  void restore() {
    if (restored_) return;
    restored_ = true;
    for (const auto& plan : courtyard_topics(admin_)) {
      if (plan.kind == TopicKind::Registry) CHECK(create_topic_with_access(admin_, plan).has_value());
    }
  }

 private:
  KafkaConfig admin_;
  bool restored_ = false;
};

// Waits until the hub's device counts have not changed for `quiet` (at most 3 minutes): the
// devices are done and whatever the brokers still held has had time to flow.
bool settled(test::Stack& stack, std::chrono::seconds quiet) {
  std::uint64_t before = 0;
  auto changed_at = std::chrono::steady_clock::now();
  return test::eventually([&] {
    const std::uint64_t now = applied(stack);
    if (now != before) changed_at = std::chrono::steady_clock::now();
    before = now;
    return std::chrono::steady_clock::now() - changed_at > quiet;
  }, 180s);
}

// Valid events the simulator sent, over its whole fleet.
std::uint64_t valid_sent(const devices::SimReport& report) {
  std::uint64_t n = 0;
  for (const auto& [device, counts] : report.valid) n += test::total(counts);
  return n;
}

// The fleet publishing on a thread of its own from construction on; finish() waits for it and
// requires that its run went through.
class Publishing {
 public:
  explicit Publishing(const devices::SimulatorConfig& sim) : simulator_(sim) {
    REQUIRE(simulator_.provision());
    thread_ = std::jthread([this](std::stop_token stop) { report_ = simulator_.run(stop); });
  }
  // The fleet stops after its current payload (for a fleet told to publish until stopped; a
  // test that fails stops it too, as the thread is destroyed).
  const devices::SimReport& stop() {
    thread_.request_stop();
    return finish();
  }
  const devices::SimReport& finish() {
    if (thread_.joinable()) thread_.join();
    REQUIRE_MESSAGE(report_, (report_ ? "" : report_.error()));
    return *report_;
  }

 private:
  devices::Simulator simulator_;
  std::expected<devices::SimReport, std::string> report_ = std::unexpected(std::string("not run"));
  std::jthread thread_;
};

// Every device counted exactly once in the projections: each valid event it sent, no gap in its
// sequence, nothing folded twice. Returns the valid events over the fleet.
std::uint64_t check_each_device_once(test::Stack& stack, const devices::SimReport& report) {
  std::uint64_t valid = 0;
  for (const auto& [device, p] : stack.devices()) {
    CAPTURE(device);
    CHECK(p["events"].get<std::uint64_t>() == test::total(report.valid.at(device)));
    CHECK(p["seq"]["gaps"] == 0);
    CHECK(p["duplicates"] == 0);
    valid += test::total(report.valid.at(device));
  }
  return valid;
}

// A fleet of 30 publishing 500 events/s until stopped (or `seconds` pass) to one new community.
devices::SimulatorConfig publishing_until_stopped(const std::string& stem, int seconds) {
  auto sim = test::services().simulator({test::unique_name(stem)});
  sim.devices = 30;
  sim.events = 0;  // until stopped: the fleet must still be publishing when the disk fills, however slow the start
  sim.duration_s = seconds;  // and no longer, whatever a stall costs: the backlog stays one the stack folds in time
  sim.rate = 500;
  sim.scenes_per_minute = 0;
  return sim;
}

// A stack whose hub keeps its store on a small disk, started with the disk too full for RocksDB
// to reserve its write-ahead log's space ahead (1.1 memtables), as a disk that fills up is: the
// writes themselves meet the full disk once it fills.
struct HubOnSmallDisk {
  test::Stack stack;
  test::SmallDisk disk;
  explicit HubOnSmallDisk(const std::vector<std::string>& communities)
      : stack(communities), disk(stack.dir().str("var/hub/state"), "256m") {  // room for RocksDB to flush its memtables (32 MiB) on resume
    disk.fill(24 << 20);
    stack.start_ingest();
    stack.start_hub();
  }
};

}  // namespace

TEST_SUITE("integration: faults") {
  TEST_CASE("a device registered while Kafka refuses ingest the registry is never dead-lettered as unknown: its message waits at the broker until the registry can be read") {
    auto services = test::services();
    const std::string community = test::unique_name("regwait");
    test::Stack stack({community});
    stack.start_ingest();
    stack.start_hub();
    std::uint64_t seq = 0;
    auto reading = [&] {
      return json{{"seq", ++seq}, {"ts", 1795950000000}, {"type", "meter.reading"},
                  {"body", {{"kind", "water"}, {"total", 10.5}, {"unit", "m3"}}}}.dump();
    };
    auto events_of = [&](const std::string& id) {
      auto d = stack.get("/api/v1/devices/" + id);
      return d ? (*d)["events"].get<std::uint64_t>() : 0;
    };
    // A device known before: its readings go on being taken while the registry is unreadable.
    auto before = test::provision_via_api(stack, community, community + "-meter-1", "meter", "b1-0101");
    const auto before_topic = schemas::topic_for(CommunityId(community), DeviceId(before.id), "telemetry");
    REQUIRE(before.client->publish_and_wait(before_topic, reading(), 1, 10s) == 0);
    REQUIRE(test::eventually([&] { return events_of(before.id) == 1; }, 30s));

    RegistryReadRevoked revoked(services.kafka());
    // In force once ingest's registry reads are refused (not before: a fetch may be under way).
    REQUIRE(stack.ingest().wait_for_log("Topic authorization failed", 60s));
    // The hub writes the new device's registration; ingest cannot read it.
    // (The hub learns of a device from ingest's registration event, so it cannot know it yet.)
    const std::string fresh = community + "-meter-2";
    auto [status, body] = stack.post("/api/v1/devices", {{"id", fresh}, {"kind", "meter"}, {"community", community},
                                                         {"unit", "b1-0102"}, {"location", "Building 1"}});
    REQUIRE_MESSAGE(status == 201, body.dump());
    MqttClient::Options o;
    o.client_id = o.username = fresh;
    o.password = body["mqtt_password"].get<std::string>();
    auto fresh_client = MqttClient::connect("127.0.0.1", services.mqtt_port, o, 10s);
    REQUIRE(fresh_client);
    const auto fresh_topic = schemas::topic_for(CommunityId(community), DeviceId(fresh), "telemetry");
    REQUIRE((*fresh_client)->publish_and_wait(fresh_topic, reading(), 1, 10s) == 0);  // the broker has it
    REQUIRE_MESSAGE(stack.ingest().wait_for_log("message of " + fresh + " handed back", 60s),
                    test::read_file(stack.ingest().log_path()));
    REQUIRE(before.client->publish_and_wait(before_topic, reading(), 1, 10s) == 0);
    revoked.restore();

    REQUIRE_MESSAGE(test::eventually([&] { return events_of(fresh) == 1 && events_of(before.id) == 2; }, 60s),
                    test::read_file(stack.ingest().log_path()));
    CHECK(test::read_dead_letters(services.kafka(), fresh).empty());
    CHECK(stack.ingest().running());
  }

  TEST_CASE("with the spool's disk full, ingest acknowledges nothing it could not keep and takes messages again by itself once space returns") {
    auto services = test::services();
    auto sim = services.simulator({test::unique_name("diskfull")});
    sim.devices = 30;
    sim.events = 0;  // until stopped: the fleet must still be publishing when the disk fills, however slow the start
    sim.duration_s = 150;  // and no longer, whatever a stall costs: the backlog stays one the stack folds in time
    sim.rate = 500;
    sim.scenes_per_minute = 0;

    test::Stack stack(sim.communities);
    test::SmallDisk disk(stack.dir().str("var/ingest/" + stack.env().at("COURTYARD_INGEST_CLIENT_ID")), "256m");  // RocksDB resumes once its memtables' worth (128 MiB) is free
    // Nearly full from the start, as a disk that fills up is: RocksDB cannot reserve its next
    // write-ahead log's space in advance (it tries), so the writes themselves meet the full disk.
    disk.fill(40 << 20);
    stack.start_ingest();
    stack.start_hub();
    Publishing fleet(sim);

    REQUIRE(test::eventually([&] { return applied(stack) >= 800; }, 60s));
    disk.fill();
    // The next spool write fails: ingest says so, hands the message back unacknowledged and stays up.
    REQUIRE_MESSAGE(stack.ingest().wait_for_log("acknowledging nothing until the spool takes writes again", 60s),
                    "ingest did not notice the full disk");
    REQUIRE(stack.ingest().running());
    disk.free_space();
    REQUIRE_MESSAGE(stack.ingest().wait_for_log("acknowledging devices again", 60s), "ingest did not recover by itself");

    const auto& report = fleet.stop();
    REQUIRE(report.acked == report.sent);
    REQUIRE_MESSAGE(test::eventually([&] { return test::projections_match(stack, report); }, 120s),
                    "did not converge; applied " << applied(stack) << " of " << report.sent);
    REQUIRE(test::eventually([&] { auto h = stack.get("/healthz"); return h && (*h)["lag_total"] == 0; }, 60s));
    check_each_device_once(stack, report);
    // What Kafka confirmed while the disk was full leaves the spool too, or a restart would append it again.
    REQUIRE(stack.ingest().terminate() == 0);
    CHECK_MESSAGE(test::read_file(stack.ingest().log_path()).find("ingest stopped; 0 records left in the spool") != std::string::npos,
                  test::read_file(stack.ingest().log_path()));

    // A write the disk refused left the community's hash chain where it was: no link is missing.
    auto [status, out] = test::run_courtyard(stack, {"replay", "verify"}, "verify");
    const auto summary = test::last_json_line(out);
    REQUIRE_MESSAGE(summary.is_object(), out);
    for (const auto& b : summary["chain_breaks"]) CHECK_MESSAGE(b["community"] != sim.communities[0], b.dump());
  }

  TEST_CASE("with the hub's store disk full, folding stops with a clear reason, nothing is lost, and it resumes by itself once space returns") {
    auto sim = publishing_until_stopped("hubdiskfull", 150);
    HubOnSmallDisk hub(sim.communities);
    auto& [stack, disk] = hub;
    Publishing fleet(sim);

    REQUIRE(test::eventually([&] { return applied(stack) >= 800; }, 60s));
    disk.fill();
    REQUIRE_MESSAGE(stack.hub().wait_for_log("folding stopped, the store cannot be written", 60s),
                    "the hub did not notice the full disk");
    // The hub stays up, says why, tries again (a second failure: the back-off), and serves the
    // projections as they were meanwhile.
    const auto stalled = applied(stack);
    REQUIRE(test::eventually([&] { return test::metric(stack, "courtyard_store_failures_total") >= 2; }, 30s));
    auto health = test::http_get("127.0.0.1", stack.http_port(), "/healthz");
    REQUIRE(health);
    CHECK(health->status == 503);
    CHECK_MESSAGE(health->body.find("folding stopped: store write failed (no space left on device)") != std::string::npos,
                  health->body);
    // Unauthenticated: the class of failure, never RocksDB's text with the data directory's files.
    CHECK_MESSAGE(health->body.find('/') == std::string::npos, health->body);
    CHECK(applied(stack) == stalled);
    REQUIRE(stack.hub().running());
    disk.free_space();
    REQUIRE_MESSAGE(stack.hub().wait_for_log("the store takes writes again; folding resumed", 90s),
                    "the hub did not resume by itself");

    const auto& report = fleet.stop();
    REQUIRE(report.acked == report.sent);
    REQUIRE_MESSAGE(test::eventually([&] { return test::projections_match(stack, report); }, 120s),
                    "did not converge; applied " << applied(stack) << " of " << report.sent);
    REQUIRE(test::eventually([&] { auto h = stack.get("/healthz"); return h && (*h)["status"] == "ok" && (*h)["lag_total"] == 0; }, 60s));
    check_each_device_once(stack, report);
    CHECK(stack.hub().running());
  }

  TEST_CASE("a hub told to stop while its store disk is full stops: no fold lane waits out the disk, nothing waits on a lane") {
    auto sim = publishing_until_stopped("hubstopfull", 60);
    HubOnSmallDisk hub(sim.communities);
    auto& [stack, disk] = hub;
    Publishing fleet(sim);
    REQUIRE(test::eventually([&] { return applied(stack) >= 300; }, 60s));
    disk.fill();
    REQUIRE_MESSAGE(stack.hub().wait_for_log("folding stopped, the store cannot be written", 60s),
                    "the hub did not notice the full disk");
    ::kill(stack.hub().pid(), SIGTERM);
    CHECK_MESSAGE(test::eventually([&] { return !stack.hub().running(); }, 30s), "the hub did not stop while stalled");
    fleet.stop();
  }

  TEST_CASE("Kafka killed with SIGKILL under load and started again: every acknowledged event is in the log and the projections once") {
    auto services = test::services();
    auto sim = services.simulator({test::unique_name("kafkakill")});
    sim.devices = 40;
    sim.events = 6000;
    sim.rate = 500;
    sim.scenes_per_minute = 120;

    test::Stack stack(sim.communities);
    stack.start_ingest();
    stack.start_hub();
    auto plate_key = read_secret(stack.dir().str("var/secrets/plate-key"));
    REQUIRE(plate_key);
    sim.plate_key = *plate_key;
    Publishing fleet(sim);

    // The broker dies mid-transaction and stays away for 5 s while devices go on publishing:
    // ingest keeps acknowledging them into its spool and commits once the broker is back.
    REQUIRE(test::eventually([&] { return applied(stack) >= 1500; }, 60s));
    const auto killed_at = std::chrono::steady_clock::now();
    test::kill_and_restart_kafka(services, 5s);
    MESSAGE("Kafka down and back in " << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - killed_at).count() << " ms");
    REQUIRE(stack.ingest().running());
    REQUIRE(stack.hub().running());

    const auto& report = fleet.finish();
    REQUIRE(report.acked == report.sent);
    REQUIRE_MESSAGE(test::eventually([&] { return test::projections_match(stack, report); }, 180s),
                    "did not converge; applied " << applied(stack) << " of " << sim.events);
    REQUIRE(test::eventually([&] { auto h = stack.get("/healthz"); return h && (*h)["lag_total"] == 0; }, 60s));
    const std::uint64_t valid = check_each_device_once(stack, report);
    const auto log = test::read_community_log(services, sim.communities[0]);
    CHECK(log.messages == valid);  // 0 lost
    CHECK(log.doubled == 0);       // 0 doubled
    CHECK(log.repeated_positions == 0);
    CHECK(log.last_position == log.positions);
  }

  TEST_CASE("Mosquitto killed with SIGKILL under load and started again: ingest hears the devices again, nothing is doubled, and what the broker lost is counted") {
    auto services = test::services();
    auto sim = services.simulator({test::unique_name("mqttkill")});
    sim.devices = 40;
    sim.events = 6000;
    sim.rate = 500;
    sim.scenes_per_minute = 0;

    test::Stack stack(sim.communities);
    stack.start_ingest();
    stack.start_hub();
    Publishing fleet(sim);

    REQUIRE(test::eventually([&] { return applied(stack) >= 1500; }, 60s));
    // A deployment's ingest session is older than the broker's last save; this one is seconds old.
    // The broker saves every autosave_interval (scripts/services: 5 s): kill it once it has saved
    // the session at least once (the window of a younger session is the next test's).
    const auto saved = test::mosquitto_saved_after(services, std::filesystem::file_time_type::clock::now());
    REQUIRE_MESSAGE(saved, "Mosquitto did not save its store within 30 s");
    test::kill_and_restart_mosquitto(services, 2s);
    REQUIRE(stack.ingest().running());

    const auto& report = fleet.finish();
    // The devices sent again what the dead broker had not acknowledged (so PUBACKs can outnumber publishes).
    CHECK(report.acked >= report.sent);
    const std::uint64_t valid = valid_sent(report);
    // Converged: the projections stop growing (unchanged for 3 s: the devices are done, what the
    // broker still held for ingest's session has had time to flow).
    REQUIRE(settled(stack, 3s));
    REQUIRE(test::eventually([&] { auto h = stack.get("/healthz"); return h && (*h)["lag_total"] == 0; }, 60s));
    const auto log = test::read_community_log(services, sim.communities[0]);
    CHECK(log.doubled == 0);
    CHECK(log.repeated_positions == 0);
    CHECK(log.last_position == log.positions);
    CHECK(applied(stack) == log.messages);  // the projections count what the log holds, once
    CHECK(log.messages <= valid);
    CHECK(log.messages > valid - 1000);  // ingest heard the devices again after the restart
    MESSAGE("Mosquitto SIGKILL: " << valid << " valid events acknowledged to devices, " << log.messages
                                  << " in the log; lost with the broker: " << valid - log.messages);
  }

  TEST_CASE("Mosquitto killed while ingest is down: what it had queued for ingest and not yet saved is lost, and counted") {
    // The window docs/operations.md states: the broker acknowledges a device's message when it
    // receives it and saves its queues every autosave_interval; a crash in between loses them.
    auto services = test::services();
    auto sim = services.simulator({test::unique_name("mqttwin")});
    sim.devices = 20;
    sim.events = 1000;
    sim.rate = 500;
    sim.scenes_per_minute = 0;

    test::Stack stack(sim.communities);
    stack.start_ingest();
    stack.start_hub();
    devices::Simulator simulator(sim);
    REQUIRE(simulator.provision());
    REQUIRE(stack.ingest().terminate() == 0);  // ingest's persistent session stays, queueing at the broker
    auto report = simulator.run(std::stop_token{});
    REQUIRE_MESSAGE(report, (report ? "" : report.error()));
    REQUIRE(report->acked == report->sent);  // every message acknowledged to its device
    test::kill_and_restart_mosquitto(services, 0s);
    stack.start_ingest();

    REQUIRE(settled(stack, 5s));
    const std::uint64_t valid = valid_sent(*report);
    const auto log = test::read_community_log(services, sim.communities[0]);
    CHECK(log.doubled == 0);
    CHECK(log.messages <= valid);
    MESSAGE("Mosquitto SIGKILL with ingest down: " << valid << " events acknowledged to devices in "
                                                   << report->seconds << " s, queued for ingest; " << log.messages
                                                   << " reached the log; lost with the broker: " << valid - log.messages);
  }
}

