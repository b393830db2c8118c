#pragma once
// What integration tests need to reach the real services that scripts/test started, and to run
// Courtyard's own processes as child processes (so they can be SIGKILLed).
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/kafka.h"
#include "common/kafka_access.h"
#include "common/mqtt.h"
#include "devices/simulator.h"
#include "temp_dir.h"

namespace courtyard::test {

// Where the services are: COURTYARD_MQTT_PORT, COURTYARD_KAFKA_PORT and COURTYARD_SERVICES_VAR
// (the services' var directory, holding the service credentials).
struct Services {
  int mqtt_port;
  int kafka_port;
  std::string var;
  // Kafka as its admin (the super user): what a test does behind Courtyard's back.
  KafkaConfig kafka() const;
  // Kafka signed in as one of Courtyard's roles: ingest, hub, auditor.
  KafkaConfig kafka_as(const std::string& role) const;
  MqttConfig mqtt() const;
  std::string service_password() const;
  std::string service_password_file() const;
  // A simulator reaching these services with Courtyard's service identity.
  devices::SimulatorConfig simulator(std::vector<std::string> communities) const;
};
Services services();

// A name no earlier run used: tests share one broker and one Kafka.
std::string unique_name(const std::string& stem);
int free_port();

// A child process with its output in a log file. Killed (SIGKILL) when destroyed.
class Process {
 public:
  Process(std::vector<std::string> argv, std::map<std::string, std::string> env, std::string log_path);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  void kill_now();    // SIGKILL, then reap
  int terminate();    // SIGTERM, wait, exit status
  int wait();         // waits for it to exit on its own; its exit status
  int pid() const { return pid_; }
  bool running();
  const std::string& log_path() const { return log_path_; }
  // Waits until the log contains `text`; false after `timeout` or if the process exited.
  bool wait_for_log(const std::string& text, std::chrono::milliseconds timeout);

 private:
  int pid_ = -1;
  std::string log_path_;
};

// Polls `condition` every 50 ms until it holds or `timeout` passes.
bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout);

// One ingest and one hub against the real services, with their own state and names.
class Stack {
 public:
  explicit Stack(std::vector<std::string> communities, std::map<std::string, std::string> extra_env = {});
  ~Stack();
  void start_ingest();
  void start_hub();
  Process& ingest() { return *ingest_; }
  Process& hub() { return *hub_; }
  // Another hub of this deployment (with hub.cluster on, they share the partitions): its own
  // store, instance id and port; the same secrets and tokens. Returns its number (1, 2, ...);
  // start_hub(n) starts it (again). `env`: settings of its own (COURTYARD_HUB_ROLE, ...).
  std::size_t add_hub(std::map<std::string, std::string> env = {});
  void start_hub(std::size_t n);
  Process& hub(std::size_t n) { return n == 0 ? *hub_ : *extra_hubs_.at(n - 1).process; }
  // Hub n's hub.instance_id (whose audit records `courtyard replay audit --hub` checks).
  std::string hub_instance_id(std::size_t n) const;
  // GET on hub n's API (0: the first); nullopt when it does not answer 200.
  std::optional<nlohmann::json> get(std::size_t n, const std::string& target);
  std::map<std::string, nlohmann::json> devices(std::size_t n);
  int http_port() const { return http_port_; }
  int http_port(std::size_t n) const { return n == 0 ? http_port_ : extra_hubs_.at(n - 1).http_port; }
  // A token for the hub's API (`courtyard token add` into this stack's var/); get and post use admin_token().
  std::string token(const std::string& role, const std::string& community = "", const std::string& unit = "");
  const std::string& admin_token() const { return admin_token_; }
  // GET on the hub's API; nullopt when it does not answer 200.
  std::optional<nlohmann::json> get(const std::string& target);
  // POST on the hub's API: status and parsed body.
  std::pair<int, nlohmann::json> post(const std::string& target, const nlohmann::json& body);
  // Every device of these communities as the hub serves them, by id.
  std::map<std::string, nlohmann::json> devices();
  const std::vector<std::string>& communities() const { return communities_; }
  const TempDir& dir() const { return dir_; }
  // The environment this stack's processes run with (its var/, ports, names, rules).
  std::map<std::string, std::string> env() const;

 private:
  TempDir dir_;
  std::string name_;
  std::vector<std::string> communities_;
  int http_port_;
  std::unique_ptr<Process> ingest_, hub_;
  struct ExtraHub {
    std::string var;
    int http_port = 0;
    std::unique_ptr<Process> process;
    int starts = 0;
    std::map<std::string, std::string> env;
  };
  std::vector<ExtraHub> extra_hubs_;
  int ingest_starts_ = 0, hub_starts_ = 0;
  std::map<std::string, std::string> extra_env_;
  std::string admin_token_;
};

// A device provisioned through the hub's API (POST /api/v1/devices, as admin), known to the hub,
// and when `connect` connected to the broker as itself, subscribed to its cmd topic.
struct ApiDevice {
  std::string id, password;
  std::unique_ptr<MqttClient> client;
};
ApiDevice provision_via_api(Stack& stack, const std::string& community, const std::string& id, const std::string& kind,
                            const std::string& unit = "", bool connect = true);

// Runs `courtyard <args>` with the stack's environment; its exit status and everything it printed
// (the log is kept as `name`.log in the stack's directory).
std::pair<int, std::string> run_courtyard(const Stack& stack, std::vector<std::string> args, const std::string& name,
                                          std::map<std::string, std::string> extra_env = {});
// A process's resident memory, kB (-1 when it cannot be read).
long rss_kb(int pid);
// A metric of the stack's hub as /metrics has it (the admin token's view); -1 when absent.
double metric(Stack& stack, const std::string& name);
double metric(Stack& stack, std::size_t hub, const std::string& name);  // of hub n (add_hub)

// The last line of `output` that is a JSON object (the commands' summary), or null.
nlohmann::json last_json_line(const std::string& output);

// Dead letters of these devices' payloads, read from the start of the topic to its end.
struct DeadLetterRecord {
  std::string device, reason, detail, source_topic, payload;
};
std::vector<DeadLetterRecord> read_dead_letters(const KafkaConfig& kafka, const std::string& device_prefix);

// A duty roster's body (POST /api/v1/rosters/...) with `staff` on duty all week, round the clock:
// who is on duty does not depend on when a test runs (the unit tests cover shifts and exceptions).
nlohmann::json always_on_duty(const std::string& staff);

// Creates a topic on the test broker (auto-creation is off) with the access rules of its kind;
// REQUIREs success. `kafka` must be the admin's.
void create_topic(const KafkaConfig& kafka, const std::string& name, int partitions, TopicKind kind = TopicKind::Events);

// What the log holds of one community: its device messages by (device, boot, seq), how many of
// them are there more than once, and its chain positions (each must be there once, 1..N).
struct CommunityLog {
  std::uint64_t messages = 0;            // distinct device messages
  std::uint64_t doubled = 0;             // device messages there more than once
  std::uint64_t positions = 0;           // distinct chain positions
  std::uint64_t repeated_positions = 0;  // chain positions there more than once
  std::uint64_t first_position = 0, last_position = 0;
};
CommunityLog read_community_log(const Services& services, const std::string& community);

// Kills the test services' Kafka with SIGKILL, waits `down`, and starts it again (scripts/services
// up: same data, same credentials); returns once it accepts clients again. REQUIREs success.
void kill_and_restart_kafka(const Services& services, std::chrono::milliseconds down);

// Kills the test services' Mosquitto with SIGKILL, waits `down`, and starts it again from its
// persistence file (scripts/services up). REQUIREs success.
void kill_and_restart_mosquitto(const Services& services, std::chrono::milliseconds down);

// Waits (up to 30 s) until the test services' Mosquitto has written its persistence file after
// `after`; false if it did not.
bool mosquitto_saved_after(const Services& services, std::filesystem::file_time_type after);

// A small file system of its own (tmpfs with a size limit) mounted at `dir` for its lifetime,
// which a test can fill to the last byte and free again. Needs root (CI has it).
class SmallDisk {
 public:
  SmallDisk(const std::string& dir, const std::string& size);
  ~SmallDisk();
  SmallDisk(const SmallDisk&) = delete;
  SmallDisk& operator=(const SmallDisk&) = delete;
  // Writes ballast until no more than `leave` bytes are free (0: not one byte).
  void fill(std::uint64_t leave = 0);
  void free_space();

 private:
  std::string dir_;
  int ballasts_ = 0;
};

// The sum of a report's per-type counts.
std::uint64_t total(const std::map<std::string, std::uint64_t>& counts);
// True when the hub counts exactly the valid events the simulator sent, for every device.
bool projections_match(Stack& stack, const devices::SimReport& report);

}  // namespace courtyard::test
