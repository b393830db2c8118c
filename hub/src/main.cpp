// The `courtyard` command: one binary, one subcommand per role.
#include <sys/stat.h>

#include <charconv>
#include <csignal>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "devices/provisioner.h"
#include "devices/simulator.h"
#include "hub/access.h"
#include "hub/config.h"
#include "hub/api.h"
#include "hub/hub.h"
#include "log_writer.h"
#include "people_cli.h"
#include "replay_cli.h"
#include "ingest/bridge.h"
#include "common/handles.h"
#include "common/kafka_access.h"
#include "common/random.h"
#include "schemas/event.h"

namespace {

using namespace courtyard;

// SIGINT and SIGTERM request a stop; a second one exits at once.
std::stop_source install_signal_stop() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // before any thread starts, so all inherit it
  std::stop_source source;
  std::thread([set, source]() mutable {
    int sig = 0;
    sigwait(&set, &sig);
    spdlog::info("signal {}: stopping", sig);
    source.request_stop();
    sigwait(&set, &sig);
    std::_Exit(130);
  }).detach();
  return source;
}

// "90s", "30m", "12h", "7d" in milliseconds; nullopt for anything else.
std::optional<std::int64_t> parse_duration_ms(const std::string& text) {
  if (text.size() < 2) return std::nullopt;
  std::int64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size() - 1, n);
  if (ec != std::errc() || end != text.data() + text.size() - 1 || n <= 0 || n > 3650LL * 86400) return std::nullopt;
  switch (text.back()) {
    case 's': return n * 1000;
    case 'm': return n * 60'000;
    case 'h': return n * 3'600'000;
    case 'd': return n * 86'400'000;
    default: return std::nullopt;
  }
}

// Kafka credentials of `role` (ingest, hub, auditor, admin) from the credentials directory.
void sign_in_as(hub::Config& config, const std::string& role) {
  if (config.kafka.sasl_mechanism.empty()) return;
  const auto dir = std::filesystem::path(config.kafka_credentials_dir);
  const auto file = (dir.is_absolute() ? dir : config.var_path(config.kafka_credentials_dir)) / ("kafka-" + role);
  auto password = read_secret(file.string());
  if (!password) throw std::runtime_error("Kafka password of " + role + ": " + password.error() + " (is `scripts/services up` done?)");
  config.kafka.sasl_username = role;
  config.kafka.sasl_password = *password;
}

std::string service_password(const hub::Config& config) {
  auto secret = read_secret(config.var_path(config.mqtt.password_file).string());
  if (!secret) throw std::runtime_error(secret.error() + " (is `scripts/services up` done?)");
  return *secret;
}

int run_ingest(const hub::Config& config) {
  ingest::BridgeConfig bridge;
  bridge.kafka = config.kafka;
  bridge.mqtt = config.mqtt;
  bridge.mqtt_password = service_password(config);
  bridge.client_id = config.ingest.client_id;
  bridge.communities = config.ingest.communities;
  bridge.spool_dir = config.var_path("ingest/" + config.ingest.client_id).string();
  bridge.spool_sync = config.ingest.spool_sync;
  bridge.instance = static_cast<unsigned>(config.ingest.instance);
  bridge.limits.max_payload_bytes = static_cast<std::size_t>(config.ingest.max_payload_bytes);
  bridge.limits.max_snapshot_bytes = static_cast<std::size_t>(config.ingest.max_snapshot_bytes);
  bridge.snapshot_retention = std::chrono::minutes(config.vision.raw_retention_minutes);
  bridge.tick_interval = std::chrono::milliseconds(std::max<std::int64_t>(0, config.ingest.tick_interval_ms));
  bridge.commit_interval = std::chrono::milliseconds(std::clamp<std::int64_t>(config.ingest.commit_interval_ms, 1, 10000));
  bridge.linger = std::chrono::milliseconds(std::clamp<std::int64_t>(config.ingest.linger_ms, 0, 1000));
  auto chain_key = read_or_create_secret(config.var_path(config.ingest.chain_key_file).string());
  if (!chain_key) throw std::runtime_error("chain key: " + chain_key.error());
  bridge.chain_key = *chain_key;
  std::filesystem::create_directories(bridge.spool_dir);
  auto stop = install_signal_stop();
  ingest::Bridge(bridge).run(stop.get_token());
  return 0;
}

int run_hub(const hub::Config& config) {
  auto stop = install_signal_stop();
  hub::run_hub(config, stop.get_token());
  return 0;
}

int run_simulate(const hub::Config& config, devices::SimulatorConfig sim, bool skip_provision) {
  sim.kafka = config.kafka;
  sim.mqtt = config.mqtt;
  sim.mqtt_password = service_password(config);
  sim.photos_dir = config.simulate.photos_dir;
  if (sim.scenes_per_minute > 0) {  // the vehicle gates tokenise plates with the hub's key
    auto key = read_or_create_secret(config.var_path(config.vision.plate_key_file).string());
    if (!key) throw std::runtime_error(key.error());
    sim.plate_key = *key;
  }
  devices::Simulator simulator(sim);
  if (!skip_provision) {
    if (auto ok = simulator.provision(); !ok) throw std::runtime_error("provisioning: " + ok.error());
    spdlog::info("simulator: provisioned {} devices in {} communities", simulator.fleet().size(), sim.communities.size());
  }
  auto stop = install_signal_stop();
  auto report = simulator.run(stop.get_token());
  if (!report) throw std::runtime_error(report.error());
  std::uint64_t valid = 0;
  for (const auto& [_, types] : report->valid) {
    for (const auto& [__, n] : types) valid += n;
  }
  for (const auto& incident : report->injected) std::cout << "injected " << incident << "\n";
  std::cout << "sent " << report->sent << " payloads (" << valid << " valid, " << report->bad.size()
            << " deliberately bad) from " << simulator.fleet().size() << " devices in " << report->seconds
            << " s; broker acknowledged " << report->acked << ", refused " << report->refused << "\n";
  if (report->scenes) {
    std::cout << "gate scenes " << report->scenes << " (" << report->tailgating_scenes << " tailgating, "
              << report->plate_mismatch_scenes << " with a plate the gate did not let in)\n";
  }
  return 0;
}

// Prints the events of the log (optionally of one community or device) as JSON lines, from the
// start of every partition to its current end.
int run_log(const hub::Config& config, const std::string& community, const std::string& device) {
  auto ok = read_to_end(config.kafka, config.kafka.events_topic, [&](const rd_kafka_message_t& m) {
    if (!community.empty() && std::string_view(static_cast<const char*>(m.key), m.key_len) != community) return;
    auto event = schemas::decode(std::string_view(static_cast<const char*>(m.payload), m.len));
    nlohmann::json line{{"partition", m.partition}, {"offset", m.offset}};
    if (!event) {
      line["error"] = event.error();
    } else {
      if (!device.empty() && event->device.str() != device) return;
      line["event"] = schemas::to_json(*event);
    }
    std::cout << line.dump() << "\n";
  });
  if (!ok) throw std::runtime_error(ok.error());
  return 0;
}

int run_registry(const hub::Config& config, const std::string& community, const nlohmann::json& request) {
  auto entry = hub::registry_entry_from_json(request);
  if (!entry) throw std::runtime_error(entry.error());
  if (!schemas::valid_id(community)) throw std::runtime_error("community id must be 1..64 of [A-Za-z0-9_.-]");
  schemas::Event event;
  event.device = DeviceId("registry");
  event.community = CommunityId(community);
  event.body = *entry;
  hub::LogWriter writer(config.kafka);
  auto offset = writer.append(event, std::chrono::seconds(30));
  if (!offset) throw std::runtime_error(offset.error());
  std::cout << (entry->removed ? "removed " : "registered ") << schemas::to_string(entry->kind) << " " << entry->id
            << " in " << community << " (request offset " << *offset << "; ingest appends it to the log)\n";
  return 0;
}

int run_device_add(const hub::Config& config, const std::string& id, const std::string& kind_name,
                   const std::string& community, const std::string& unit, const std::string& location,
                   const std::string& password, bool rotate) {
  auto kind = schemas::parse_device_kind(kind_name);
  if (!kind) throw std::runtime_error("unknown kind " + kind_name);
  auto provisioner = devices::Provisioner::connect({config.kafka, config.mqtt, service_password(config)});
  if (!provisioner) throw std::runtime_error(provisioner.error());
  schemas::Registration r;
  r.device = DeviceId(id);
  r.community = CommunityId(community);
  r.kind = *kind;
  r.unit = unit;
  r.location = location;
  r.registered_at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch()).count();
  devices::NewDevice request{r, password};
  auto passwords =
      (*provisioner)->add(std::span(&request, 1), rotate ? devices::IfExists::Rotate : devices::IfExists::Refuse);
  if (!passwords) {
    throw std::runtime_error(passwords.error().detail +
                             (passwords.error().code == devices::ProvisionError::Code::Conflict && !rotate
                                  ? " (to give an existing device of this community a new password: --rotate)"
                                  : ""));
  }
  std::cout << (rotate ? "rotated the credentials of " : "registered ") << id << " (" << kind_name << ") in " << community << "\n"
            << "MQTT username: " << id << "\n"
            << "telemetry topic: " << devices::telemetry_topic(r) << "\n"
            << "password:\n"
            << passwords->front() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Whatever any part of Courtyard writes (stores, spools, keys, checkpoints) is its own user's only.
  ::umask(077);
  CLI::App app{"Courtyard: an event-sourced IoT hub for residential communities"};
  app.require_subcommand(1);
  std::optional<std::string> config_path;
  app.add_option("--config", config_path, "configuration file (default: $COURTYARD_CONFIG or config/courtyard.toml)");

  auto* hub_cmd = app.add_subcommand("hub", "run the processors and the HTTP API");
  int http_port = -1;
  hub_cmd->add_option("--http-port", http_port, "HTTP port (overrides http.port; 0 = any free port)");

  auto* ingest_cmd = app.add_subcommand("ingest", "move device events from MQTT into Kafka");
  std::vector<std::string> ingest_communities;
  ingest_cmd->add_option("--communities", ingest_communities, "communities this instance owns (default: all)")->delimiter(',');

  auto* sim_cmd = app.add_subcommand("simulate", "provision and drive a simulated community fleet over MQTT");
  devices::SimulatorConfig sim;
  std::size_t devices = 0;
  double rate = 0, bad = -1;
  std::vector<std::string> sim_communities;
  bool skip_provision = false;
  std::int64_t seed = -1;
  sim_cmd->add_option("--devices", devices, "fleet size (default: simulate.devices)");
  sim_cmd->add_option("--rate", rate, "events per second, whole fleet (default: simulate.rate)");
  sim_cmd->add_option("--duration", sim.duration_s, "seconds to run (default: until Ctrl-C)");
  sim_cmd->add_option("--events", sim.events, "stop after this many payloads");
  sim_cmd->add_option("--communities", sim_communities, "communities (default: simulate.communities)")->delimiter(',');
  sim_cmd->add_option("--bad-fraction", bad, "share of deliberately invalid payloads (default: simulate.bad_fraction)");
  sim_cmd->add_option("--prefix", sim.id_prefix, "prefix for device ids");
  sim_cmd->add_option("--seed", seed, "random seed (default: simulate.seed)");
  double scenes = -1;
  sim_cmd->add_option("--scenes-per-minute", scenes,
                      "gate scenes (a pass, then the camera's snapshot) per minute (default: simulate.scenes_per_minute)");
  sim_cmd->add_option("--boot", sim.boot, "boot number the devices report (raise it to simulate a restart)");
  sim_cmd->add_flag("--no-provision", skip_provision, "the fleet is already provisioned with these passwords");
  sim_cmd->add_option("--anomaly", sim.anomalies,
                      "incidents to inject at the start: fever,fall,sos,leak,smoke,gas,spo2,battery,tamper,door,offline")
      ->delimiter(',')
      ->check(CLI::IsMember(devices::known_anomalies()));

  auto* device_cmd = app.add_subcommand("device", "manage devices");
  device_cmd->require_subcommand(1);
  auto* add_cmd = device_cmd->add_subcommand("add", "register a device and create its broker credentials; prints its password last");
  std::string id, kind, community, unit, location, password;
  add_cmd->add_option("id", id, "device id: 1..64 of [A-Za-z0-9_.-]")->required();
  add_cmd->add_option("--kind", kind, "gate|vehicle_gate|door|camera|meter|home_sensor|wearable|handheld (a staff member's pager: its id is their person token)")
      ->required()
      ->check(CLI::IsMember({"gate", "vehicle_gate", "door", "camera", "meter", "home_sensor", "wearable", "handheld"}));
  add_cmd->add_option("--community", community, "community id")->required();
  add_cmd->add_option("--unit", unit, "household the device belongs to");
  add_cmd->add_option("--location", location, "where it is, for staff (\"Building 3, east gate\")");
  add_cmd->add_option("--password", password, "its MQTT password (default: generated; better: let it be generated)");
  bool rotate = false;
  add_cmd->add_flag("--rotate", rotate, "the device exists in this community: give it a new password (and its role afresh)");

  app.add_subcommand("config", "print every setting and its environment variable");

  auto* registry_cmd = app.add_subcommand(
      "registry", "add or remove a household, person or vehicle of a community (tokens only, never names)");
  std::string reg_community, reg_kind, reg_id, reg_role = "resident", reg_unit;
  std::int64_t reg_from = 0, reg_to = 0, reg_allowance = 0;
  bool reg_remove = false;
  registry_cmd->add_option("kind", reg_kind, "household|person|vehicle")->required()->check(CLI::IsMember({"household", "person", "vehicle"}));
  registry_cmd->add_option("id", reg_id, "unit code, person token or plate token")->required();
  registry_cmd->add_option("--community", reg_community, "community id")->required();
  registry_cmd->add_option("--role", reg_role, "people: resident|staff|visitor")->check(CLI::IsMember({"resident", "staff", "visitor"}));
  registry_cmd->add_option("--unit", reg_unit, "the household (the host, for a visitor)");
  registry_cmd->add_option("--valid-from", reg_from, "invitation start, ms since the epoch");
  registry_cmd->add_option("--valid-to", reg_to, "invitation end, ms since the epoch (visitors need one)");
  registry_cmd->add_option("--allowance", reg_allowance, "vehicles: longest stay inside, seconds (0: no limit)");
  registry_cmd->add_flag("--remove", reg_remove, "withdraw the entry");

  auto* token_cmd = app.add_subcommand("token", "manage API tokens (stored hashed in var/)");
  token_cmd->require_subcommand(1);
  auto* token_add = token_cmd->add_subcommand("add", "create a token; prints it alone on the last line (shown once)");
  std::string token_role, token_community, token_household, token_label;
  token_add->add_option("--role", token_role, "admin|staff|auditor|resident")
      ->required()
      ->check(CLI::IsMember({"admin", "staff", "auditor", "resident"}));
  token_add->add_option("--community", token_community, "staff and residents: their community");
  token_add->add_option("--household", token_household, "residents: their household's unit (\"b3-1201\")");
  token_add->add_option("--label", token_label, "who holds it, for the audit trail (\"gate office\")");
  std::string token_ttl;
  token_add->add_option("--ttl", token_ttl, "how long it works: 90s, 30m, 12h, 7d (default: until revoked)");
  auto* token_list = token_cmd->add_subcommand("list", "list tokens (ids and roles, never secrets)");
  auto* token_revoke = token_cmd->add_subcommand("revoke", "revoke a token by its id");
  std::string token_id;
  token_revoke->add_option("id", token_id, "the token's id (tok_...)")->required();

  auto* replay_cmd = app.add_subcommand("replay", "the auditor's tools: rebuild the projections from the log, verify the live ones");
  replay_cmd->require_subcommand(1);
  auto* rebuild_cmd = replay_cmd->add_subcommand("rebuild", "fold the log into a fresh store (never the live one)");
  hub::RebuildArgs rebuild_args;
  std::int64_t until_time = -1;
  rebuild_cmd->add_option("--to", rebuild_args.to, "directory of the new store (must be empty)")->required();
  rebuild_cmd->add_option("--until-time", until_time, "stop at the first message appended after this time (ms since the epoch)");
  rebuild_cmd->add_option("--until-offsets", rebuild_args.until_offsets, "stop at these offsets: topic:partition=offset,...");
  auto* verify_cmd = replay_cmd->add_subcommand(
      "verify", "rebuild up to the live store's offsets and compare every projection; exit 0 only when equal");
  std::string verify_dir;
  bool verify_keep = false;
  verify_cmd->add_option("--work", verify_dir, "where to rebuild (default: a new directory under var/replay, removed after)");
  verify_cmd->add_flag("--keep", verify_keep, "keep the rebuilt store");
  auto* audit_cmd = replay_cmd->add_subcommand(
      "audit", "replay the log against every digest the hub published to the audit topic; exit 0 only when all agree");
  std::string audit_hub, audit_dir, audit_key;
  audit_cmd->add_option("--hub", audit_hub, "whose records (default: hub.instance_id)");
  audit_cmd->add_option("--public-key", audit_key,
                        "the hub's public key (PEM) to check the records' signatures with (default: var/hub/audit-key.pub; "
                        "better: a copy kept since the hub was set up)");
  audit_cmd->add_option("--work", audit_dir, "where to rebuild (default: a new directory under var/replay, removed after)");
  auto* as_of_cmd = replay_cmd->add_subcommand(
      "as-of", "projection records as they were at a past time (from the newest checkpoint before it plus the log)");
  std::int64_t as_of_time = 0;
  std::string as_of_prefix, as_of_key, as_of_dir;
  as_of_cmd->add_option("--time", as_of_time, "ms since the epoch")->required();
  as_of_cmd->add_option("--prefix", as_of_prefix, "records under this key prefix: alerts/, communities/sunny-garden/, ...");
  as_of_cmd->add_option("--key", as_of_key, "one record: communities/sunny-garden/presence, ...");
  as_of_cmd->add_option("--work", as_of_dir, "where to build it (default: a new directory under var/replay, removed after)");
  auto* export_cmd = replay_cmd->add_subcommand(
      "export", "for an inquiry: the events of a device, subject or community, what was refused, and the alerts they caused");
  hub::ExportArgs export_args;
  std::int64_t export_from = -1, export_to = -1;
  export_cmd->add_option("--device", export_args.device, "a device id");
  export_cmd->add_option("--subject", export_args.subject, "a person's or plate's token");
  export_cmd->add_option("--community", export_args.community, "a community");
  export_cmd->add_option("--from", export_from, "from this ingest time (ms since the epoch)");
  export_cmd->add_option("--to", export_to, "to this ingest time (ms since the epoch), inclusive");
  export_cmd->add_option("--format", export_args.format, "jsonl (default) or csv")->check(CLI::IsMember({"jsonl", "csv"}));
  auto* digest_cmd = replay_cmd->add_subcommand("digest", "print a store's offsets and per-projection digests");
  std::string digest_dir;
  digest_cmd->add_option("--store", digest_dir, "the store (default: the live one, read-only)");

  auto* kafka_cmd = app.add_subcommand("kafka", "the broker's set-up (run by scripts/services)");
  kafka_cmd->require_subcommand(1);
  auto* kafka_setup_cmd = kafka_cmd->add_subcommand(
      "setup", "wait for the broker, then create Courtyard's topics and grant each role its access (as admin)");
  int kafka_wait_s = 90;
  kafka_setup_cmd->add_option("--wait", kafka_wait_s, "seconds to wait for the broker (default 90)");

  auto* people_cmd = app.add_subcommand("people", "the privacy vault: record, forget and export a person (docs/privacy.md)");
  people_cmd->require_subcommand(1);
  auto* people_add = people_cmd->add_subcommand("add", "record a person; their fields are sealed with a key of their own; prints their subject id last");
  std::string person_community, person_kind = "resident", person_unit, person_name, person_phone, person_relationship,
                                person_id_number, person_notes, forget_reason;
  std::vector<std::string> person_tokens;
  people_add->add_option("--community", person_community, "community id")->required();
  people_add->add_option("--kind", person_kind, "resident|family|visitor|staff")
      ->check(CLI::IsMember({"resident", "family", "visitor", "staff"}));
  people_add->add_option("--unit", person_unit, "the household they live in, or are family or host of");
  people_add->add_option("--name", person_name, "their name")->required();
  people_add->add_option("--phone", person_phone, "their phone number");
  people_add->add_option("--relationship", person_relationship, "to the household or wearer: daughter, son, carer, ...");
  people_add->add_option("--id-number", person_id_number, "an identity document's number, where the site needs one");
  people_add->add_option("--notes", person_notes, "notes for staff");
  people_add->add_option("--token", person_tokens, "a gate credential's or vehicle's token of theirs (repeatable)");
  auto* people_forget = people_cmd->add_subcommand("forget", "destroy a person's key: every copy of their fields becomes unreadable");
  std::string people_community, people_subject;
  people_forget->add_option("community", people_community, "community id")->required();
  people_forget->add_option("subject", people_subject, "their subject id (p-...)")->required();
  people_forget->add_option("--reason", forget_reason, "why: the person's request, ...")->required();
  auto* people_export = people_cmd->add_subcommand("export", "an access request: everything held about a person, as JSON");
  people_export->add_option("community", people_community, "community id")->required();
  people_export->add_option("subject", people_subject, "their subject id (p-...)")->required();

  auto* log_cmd = app.add_subcommand("log", "print the event log as JSON lines (from the start to the current end)");
  std::string log_community, log_device;
  log_cmd->add_option("--community", log_community, "only this community's events");
  log_cmd->add_option("--device", log_device, "only this device's events");

  CLI11_PARSE(app, argc, argv);
  try {
    auto config = hub::load_config(config_path);
    spdlog::set_level(spdlog::level::from_str(config.log_level));
    // Each command signs in to Kafka as the least role that does its work (docs/security.md).
    if (*ingest_cmd) {
      sign_in_as(config, "ingest");
    } else if (*hub_cmd || *sim_cmd || *add_cmd || *registry_cmd || *people_cmd) {
      sign_in_as(config, "hub");
    } else if (*replay_cmd || *log_cmd) {
      sign_in_as(config, "auditor");
    } else if (*kafka_setup_cmd) {
      sign_in_as(config, "admin");
    }
    if (*kafka_setup_cmd) {
      if (auto ok = set_up_kafka(config.kafka, {}, hub::consumer_groups(config), std::chrono::seconds(kafka_wait_s)); !ok) {
        throw std::runtime_error(ok.error());
      }
      std::cout << "kafka: topics and access rules in place\n";
      return 0;
    }
    if (*hub_cmd) {
      if (http_port >= 0) config.http.port = http_port;
      return run_hub(config);
    }
    if (*ingest_cmd) {
      if (!ingest_communities.empty()) config.ingest.communities = ingest_communities;
      return run_ingest(config);
    }
    if (*sim_cmd) {
      sim.devices = devices ? devices : static_cast<std::size_t>(config.simulate.devices);
      sim.rate = rate > 0 ? rate : config.simulate.rate;
      sim.bad_fraction = bad >= 0 ? bad : config.simulate.bad_fraction;
      sim.flatbuffer_fraction = config.simulate.flatbuffer_fraction;
      sim.communities = sim_communities.empty() ? config.simulate.communities : sim_communities;
      sim.seed = static_cast<std::uint64_t>(seed >= 0 ? seed : config.simulate.seed);
      sim.scenes_per_minute = scenes >= 0 ? scenes : config.simulate.scenes_per_minute;
      return run_simulate(config, sim, skip_provision);
    }
    if (*people_add) {
      nlohmann::json request{{"community", person_community}, {"kind", person_kind}, {"name", person_name}};
      for (auto [field, value] : {std::pair{"unit", &person_unit}, {"phone", &person_phone},
                                  {"relationship", &person_relationship}, {"id_number", &person_id_number},
                                  {"notes", &person_notes}}) {
        if (!value->empty()) request[field] = *value;
      }
      if (!person_tokens.empty()) request["tokens"] = person_tokens;
      return hub::run_people_add(config, request);
    }
    if (*people_forget) return hub::run_people_forget(config, people_community, people_subject, forget_reason);
    if (*people_export) return hub::run_people_export(config, people_community, people_subject);
    if (*add_cmd) return run_device_add(config, id, kind, community, unit, location, password, rotate);
    if (*log_cmd) return run_log(config, log_community, log_device);
    if (*rebuild_cmd) {
      if (until_time >= 0) rebuild_args.until_time_ms = until_time;
      return hub::run_replay_rebuild(config, rebuild_args);
    }
    if (*verify_cmd) return hub::run_replay_verify(config, verify_dir, verify_keep);
    if (*export_cmd) {
      if (export_from >= 0) export_args.from_ms = export_from;
      if (export_to >= 0) export_args.to_ms = export_to;
      return hub::run_replay_export(config, export_args);
    }
    if (*as_of_cmd) {
      if (as_of_prefix.empty() && as_of_key.empty()) throw std::runtime_error("as-of needs --prefix or --key");
      return hub::run_replay_as_of(config, as_of_time, as_of_prefix, as_of_key, as_of_dir);
    }
    if (*audit_cmd) {
      return hub::run_replay_audit(config, audit_hub.empty() ? config.hub.instance_id : audit_hub,
                                   audit_key.empty() ? config.var_path("hub/audit-key.pub").string() : audit_key, audit_dir);
    }
    if (*digest_cmd) return hub::run_replay_digest(digest_dir.empty() ? config.var_path("hub/state").string() : digest_dir);
    if (*token_cmd) {
      hub::TokenStore tokens(config.var_path(config.http.tokens_file));
      if (*token_add) {
        std::int64_t ttl_ms = 0;
        if (!token_ttl.empty()) {
          auto ttl = parse_duration_ms(token_ttl);
          if (!ttl) throw std::runtime_error("--ttl " + token_ttl + ": a number and a unit, as 90s, 30m, 12h or 7d");
          ttl_ms = *ttl;
        }
        auto secret = tokens.add(*hub::parse_role(token_role), token_community, token_household, token_label, ttl_ms);
        if (!secret) throw std::runtime_error(secret.error());
        std::cout << "created token (" << token_role << ")"
                  << (token_community.empty() ? "" : " for " + token_community)
                  << (token_household.empty() ? "" : "/" + token_household) << "; it is shown only now:\n"
                  << *secret << "\n";
      } else if (*token_list) {
        const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch()).count();
        for (const auto& t : tokens.list()) {
          const char* state = t.revoked ? "revoked" : (t.expires_ms && t.expires_ms <= now) ? "expired" : "active";
          std::cout << t.id << "\t" << hub::to_string(t.role) << "\t" << t.community << "\t" << t.unit << "\t" << state
                    << "\t" << t.label << "\n";
        }
      } else if (*token_revoke) {
        if (auto ok = tokens.revoke(token_id); !ok) throw std::runtime_error(ok.error());
        std::cout << "revoked " << token_id << "\n";
      }
      return 0;
    }
    if (*registry_cmd) {
      return run_registry(config, reg_community,
                          nlohmann::json{{"kind", reg_kind}, {"id", reg_id}, {"role", reg_role}, {"unit", reg_unit},
                                         {"valid_from", reg_from}, {"valid_to", reg_to}, {"allowance_s", reg_allowance},
                                         {"removed", reg_remove}});
    }
    if (app.got_subcommand("config")) {
      for (const auto& [key, env] : hub::config_keys()) std::cout << key << "\t" << env << "\n";
      return 0;
    }
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  return 0;
}
