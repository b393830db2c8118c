#include "services.h"

#include <csignal>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <thread>
#include <tuple>

#include <doctest/doctest.h>

#include "common/handles.h"
#include "hub/access.h"
#include "http_client.h"
#include "schemas/event.h"

namespace courtyard::test {
namespace {

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : fallback;
}

}  // namespace

Services services() {
  const char* var = std::getenv("COURTYARD_SERVICES_VAR");
  if (!var) FAIL("COURTYARD_SERVICES_VAR is not set: run integration tests through scripts/test");
  return {env_int("COURTYARD_MQTT_PORT", 1883), env_int("COURTYARD_KAFKA_PORT", 9092), var};
}

KafkaConfig Services::kafka() const { return kafka_as("admin"); }

KafkaConfig Services::kafka_as(const std::string& role) const {
  KafkaConfig k;
  k.port = kafka_port;
  auto password = read_secret(var + "/secrets/kafka-" + role);
  REQUIRE_MESSAGE(password, (password ? "" : password.error()));
  k.sasl_username = role;
  k.sasl_password = *password;
  return k;
}

MqttConfig Services::mqtt() const {
  MqttConfig m;
  m.port = mqtt_port;
  return m;
}

std::string Services::service_password_file() const { return var + "/secrets/mqtt-service"; }

std::string Services::service_password() const {
  auto secret = read_secret(service_password_file());
  REQUIRE_MESSAGE(secret, (secret ? "" : secret.error()));
  return *secret;
}

std::string unique_name(const std::string& stem) {
  std::random_device rd;
  return stem + "-" + std::to_string(::getpid()) + "-" + std::to_string(rd() % 1000000);
}

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

Process::Process(std::vector<std::string> argv, std::map<std::string, std::string> env, std::string log_path)
    : log_path_(std::move(log_path)) {
  pid_ = ::fork();
  REQUIRE(pid_ >= 0);
  if (pid_ == 0) {
    int fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    // The test process blocks no signals the child needs; start it with a clean mask.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
}

Process::~Process() { kill_now(); }

void Process::kill_now() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

int Process::terminate() {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int Process::wait() {
  if (pid_ <= 0) return -1;
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool Process::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

bool Process::wait_for_log(const std::string& text, std::chrono::milliseconds timeout) {
  return eventually([&] { return read_file(log_path_).find(text) != std::string::npos || !running(); }, timeout) &&
         read_file(log_path_).find(text) != std::string::npos;
}

bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return condition();
}

Stack::Stack(std::vector<std::string> communities, std::map<std::string, std::string> extra_env)
    : name_(unique_name("it")), communities_(std::move(communities)), http_port_(free_port()),
      extra_env_(std::move(extra_env)) {
  admin_token_ = token("admin");
  // Ingest creates its snapshots topic at start, where it may: a name of this stack's own; and
  // this stack's consumer groups, granted by name as `courtyard kafka setup` grants a deployment's.
  create_topic(services().kafka(), name_ + ".snapshots", 3, TopicKind::Snapshots);
  const std::string ingest = "courtyard-" + name_ + "-ingest";
  auto granted = grant_groups(services().kafka(), {{ingest + "-registry", ingest + "-requests", ingest + "-commands"},
                                                   {name_ + "-hub", name_ + "-vision"}, {}});
  REQUIRE_MESSAGE(granted, (granted ? "" : granted.error()));
}

std::string Stack::token(const std::string& role, const std::string& community, const std::string& unit) {
  hub::TokenStore tokens(std::filesystem::path(dir_.str("var")) / "hub/tokens.json");
  auto secret = tokens.add(*hub::parse_role(role), community, unit, "test " + role);
  REQUIRE_MESSAGE(secret.has_value(), secret.error());
  return *secret;
}

Stack::~Stack() {
  extra_hubs_.clear();
  hub_.reset();
  ingest_.reset();
}

std::map<std::string, std::string> Stack::env() const {
  auto s = services();
  std::string communities;
  for (const auto& c : communities_) communities += (communities.empty() ? "" : ",") + c;
  std::map<std::string, std::string> env{{"COURTYARD_VAR", dir_.str("var")},
          {"COURTYARD_MQTT_PORT", std::to_string(s.mqtt_port)},
          {"COURTYARD_KAFKA_PORT", std::to_string(s.kafka_port)},
          {"COURTYARD_MQTT_PASSWORD_FILE", s.service_password_file()},
          {"COURTYARD_KAFKA_CREDENTIALS_DIR", s.var + "/secrets"},
          // One deployment: every stack's ingest keys its chains with the same key, so a replay of
          // the shared log checks every community's.
          {"COURTYARD_INGEST_CHAIN_KEY_FILE", s.var + "/secrets/chain-key"},
          {"COURTYARD_HTTP_PORT", std::to_string(http_port_)},
          {"COURTYARD_INGEST_CLIENT_ID", "courtyard-" + name_ + "-ingest"},
          {"COURTYARD_INGEST_COMMUNITIES", communities},
          {"COURTYARD_HUB_GROUP_ID", name_ + "-hub"},
          {"COURTYARD_HUB_INSTANCE_ID", hub_instance_id(0)},
          // Every test's hub (and replay) folds on three lanes, so exact counts, crashes and
          // replay equality are proved with the partitions split across threads (a 2-core
          // machine's default is one lane).
          {"COURTYARD_HUB_FOLD_LANES", "3"},
          {"COURTYARD_VISION_GROUP_ID", name_ + "-vision"},
          {"COURTYARD_KAFKA_SNAPSHOTS_TOPIC", name_ + ".snapshots"},
          {"COURTYARD_CONFIG", std::string(COURTYARD_SOURCE_DIR) + "/config/courtyard.toml"},
          {"COURTYARD_HUB_RULES_FILE", std::string(COURTYARD_SOURCE_DIR) + "/config/rules.toml"},
          {"COURTYARD_HTTP_WEB_ROOT", std::string(COURTYARD_SOURCE_DIR) + "/web"}};
  for (const auto& [k, v] : extra_env_) env[k] = v;
  return env;
}

void Stack::start_ingest() {
  ingest_ = std::make_unique<Process>(std::vector<std::string>{COURTYARD_BIN, "ingest"}, env(),
                                      dir_.str("ingest-" + std::to_string(++ingest_starts_) + ".log"));
  REQUIRE_MESSAGE(ingest_->wait_for_log("listening on", std::chrono::seconds(60)),
                  read_file(ingest_->log_path()));
}

void Stack::start_hub() {
  hub_ = std::make_unique<Process>(std::vector<std::string>{COURTYARD_BIN, "hub"}, env(),
                                   dir_.str("hub-" + std::to_string(++hub_starts_) + ".log"));
  REQUIRE_MESSAGE(eventually([&] { return get("/healthz").has_value() || !hub_->running(); }, std::chrono::seconds(60)),
                  read_file(hub_->log_path()));
  REQUIRE_MESSAGE(hub_->running(), read_file(hub_->log_path()));
}

std::string Stack::hub_instance_id(std::size_t n) const { return name_ + "-hub-" + std::to_string(n); }

std::size_t Stack::add_hub(std::map<std::string, std::string> env) {
  const std::size_t n = extra_hubs_.size() + 1;
  ExtraHub hub{dir_.str("var-hub-" + std::to_string(n)), free_port(), nullptr, 0, std::move(env)};
  // The deployment's secrets (chain, audit and plate keys) and API tokens, a store of its own.
  std::filesystem::create_directories(hub.var + "/hub");
  std::filesystem::create_directory_symlink(dir_.str("var") + "/secrets", hub.var + "/secrets");
  std::filesystem::create_symlink(dir_.str("var") + "/hub/tokens.json", hub.var + "/hub/tokens.json");
  extra_hubs_.push_back(std::move(hub));
  return n;
}

void Stack::start_hub(std::size_t n) {
  if (n == 0) return start_hub();
  auto& hub = extra_hubs_.at(n - 1);
  auto env = this->env();
  env["COURTYARD_VAR"] = hub.var;
  env["COURTYARD_HTTP_PORT"] = std::to_string(hub.http_port);
  env["COURTYARD_HUB_INSTANCE_ID"] = hub_instance_id(n);
  for (const auto& [k, v] : hub.env) env[k] = v;
  hub.process = std::make_unique<Process>(std::vector<std::string>{COURTYARD_BIN, "hub"}, env,
                                          dir_.str("hub" + std::to_string(n) + "-" + std::to_string(++hub.starts) + ".log"));
  REQUIRE_MESSAGE(eventually([&] { return get(n, "/healthz").has_value() || !hub.process->running(); }, std::chrono::seconds(60)),
                  read_file(hub.process->log_path()));
  REQUIRE_MESSAGE(hub.process->running(), read_file(hub.process->log_path()));
}

std::optional<nlohmann::json> Stack::get(std::size_t n, const std::string& target) {
  const int port = n == 0 ? http_port_ : extra_hubs_.at(n - 1).http_port;
  auto r = http_get("127.0.0.1", port, target, admin_token_);
  if (!r || r->status != 200) return std::nullopt;
  return nlohmann::json::parse(r->body);
}

std::optional<nlohmann::json> Stack::get(const std::string& target) {
  auto r = http_get("127.0.0.1", http_port_, target, admin_token_);
  if (!r || r->status != 200) return std::nullopt;
  return nlohmann::json::parse(r->body);
}

std::pair<int, nlohmann::json> Stack::post(const std::string& target, const nlohmann::json& body) {
  auto r = http_post("127.0.0.1", http_port_, target, body.dump(), admin_token_);
  if (!r) return {0, nullptr};
  return {r->status, nlohmann::json::parse(r->body, nullptr, false)};
}

std::map<std::string, nlohmann::json> Stack::devices() { return devices(0); }

std::map<std::string, nlohmann::json> Stack::devices(std::size_t n) {
  std::map<std::string, nlohmann::json> out;
  for (const auto& c : communities_) {
    std::string after;
    for (;;) {
      auto page = get(n, "/api/v1/devices?limit=1000&community=" + c + (after.empty() ? "" : "&after=" + after));
      if (!page) return out;
      for (auto& item : (*page)["items"]) out[item["id"].get<std::string>()] = item;
      if ((*page)["next"].is_null()) break;
      after = (*page)["next"].get<std::string>();
    }
  }
  return out;
}

nlohmann::json always_on_duty(const std::string& staff) {
  nlohmann::json week = nlohmann::json::array();
  for (const char* day : {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}) {
    week.push_back({{"day", day}, {"from", "00:00"}, {"to", "24:00"}, {"staff", staff}});
  }
  return {{"week", week}};
}

ApiDevice provision_via_api(Stack& stack, const std::string& community, const std::string& id, const std::string& kind,
                            const std::string& unit, bool connect) {
  auto [status, body] = stack.post("/api/v1/devices", {{"id", id}, {"kind", kind}, {"community", community},
                                                       {"unit", unit}, {"location", "Building 1, east gate"}});
  REQUIRE_MESSAGE(status == 201, body.dump());
  CHECK(body["telemetry_topic"] == "courtyard/v1/" + community + "/" + id + "/telemetry");
  ApiDevice d{id, body["mqtt_password"].get<std::string>(), nullptr};
  REQUIRE(eventually([&] { return stack.get("/api/v1/devices/" + id).has_value(); }, std::chrono::seconds(30)));
  if (!connect) return d;
  MqttClient::Options o;
  o.client_id = o.username = id;
  o.password = d.password;
  auto client = MqttClient::connect("127.0.0.1", services().mqtt_port, o, std::chrono::seconds(10));
  REQUIRE_MESSAGE(client, (client ? "" : client.error()));
  d.client = std::move(*client);
  REQUIRE(d.client->subscribe(schemas::topic_for(CommunityId(community), DeviceId(id), "cmd"), 1, std::chrono::seconds(10)));
  return d;
}

std::pair<int, std::string> run_courtyard(const Stack& stack, std::vector<std::string> args, const std::string& name,
                                          std::map<std::string, std::string> extra_env) {
  args.insert(args.begin(), COURTYARD_BIN);
  auto env = stack.env();
  for (auto& [k, v] : extra_env) env[k] = v;
  Process p(args, env, stack.dir().str(name + ".log"));
  const int status = p.wait();
  return {status, read_file(stack.dir().str(name + ".log"))};
}

long rss_kb(int pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with("VmRSS:")) return std::stol(line.substr(6));
  }
  return -1;
}

double metric(Stack& stack, const std::string& name) { return metric(stack, 0, name); }

double metric(Stack& stack, std::size_t hub, const std::string& name) {
  auto text = http_get_text(stack.http_port(hub), "/metrics", stack.admin_token());
  auto at = text.find("\n" + name + " ");
  return at == std::string::npos ? -1 : std::stod(text.substr(at + name.size() + 2));
}

nlohmann::json last_json_line(const std::string& output) {
  nlohmann::json last;
  for (std::size_t at = 0; at < output.size();) {
    auto end = output.find('\n', at);
    auto line = output.substr(at, end == std::string::npos ? std::string::npos : end - at);
    if (line.starts_with("{")) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded()) last = std::move(j);
    }
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return last;
}

std::vector<DeadLetterRecord> read_dead_letters(const KafkaConfig& kafka, const std::string& device_prefix) {
  std::vector<DeadLetterRecord> out;
  auto ok = read_to_end(kafka, kafka.deadletter_topic, [&](const rd_kafka_message_t& m) {
    DeadLetterRecord r;
    rd_kafka_headers_t* headers = nullptr;
    if (!rd_kafka_message_headers(&m, &headers)) {
      auto get = [&](const char* name) {
        const void* v = nullptr;
        std::size_t size = 0;
        if (rd_kafka_header_get_last(headers, name, &v, &size)) return std::string();
        return std::string(static_cast<const char*>(v), size);
      };
      r.device = get("device");
      r.reason = get("reason");
      r.detail = get("detail");
      r.source_topic = get("source_topic");
    }
    if (!r.device.starts_with(device_prefix)) return;
    if (m.payload) r.payload.assign(static_cast<const char*>(m.payload), m.len);
    out.push_back(std::move(r));
  });
  REQUIRE_MESSAGE(ok, (ok ? "" : ok.error()));
  return out;
}

devices::SimulatorConfig Services::simulator(std::vector<std::string> communities) const {
  devices::SimulatorConfig sim;
  sim.kafka = kafka();
  sim.mqtt = mqtt();
  sim.mqtt_password = service_password();
  sim.communities = std::move(communities);
  return sim;
}

void create_topic(const KafkaConfig& kafka, const std::string& name, int partitions, TopicKind kind) {
  auto ok = create_topic_with_access(kafka, {name, kind, partitions, {}});
  REQUIRE_MESSAGE(ok, (ok ? "" : ok.error()));
}

std::uint64_t total(const std::map<std::string, std::uint64_t>& counts) {
  std::uint64_t n = 0;
  for (const auto& [_, v] : counts) n += v;
  return n;
}

bool projections_match(Stack& stack, const devices::SimReport& report) {
  auto served = stack.devices();
  for (const auto& [device, types] : report.valid) {
    auto it = served.find(device);
    if (it == served.end() || it->second["events"].get<std::uint64_t>() != total(types)) return false;
  }
  return true;
}

CommunityLog read_community_log(const Services& services, const std::string& community) {
  std::map<std::tuple<std::string, std::uint32_t, std::uint64_t>, int> messages;
  std::map<std::uint64_t, int> positions;
  CommunityLog out;
  auto kafka = services.kafka();
  auto read = read_to_end(kafka, kafka.events_topic, [&](const rd_kafka_message_t& m) {
    auto e = schemas::decode(std::string_view(static_cast<const char*>(m.payload), m.len));
    if (!e || e->community.str() != community) return;
    if (++positions[e->chain_seq] == 2) ++out.repeated_positions;
    if (schemas::is_system_event(e->body)) return;
    if (++messages[{e->device.str(), e->boot, e->seq}] == 2) ++out.doubled;
  });
  REQUIRE_MESSAGE(read, (read ? "" : read.error()));
  out.messages = messages.size();
  out.positions = positions.size();
  if (!positions.empty()) {
    out.first_position = positions.begin()->first;
    out.last_position = positions.rbegin()->first;
  }
  return out;
}

namespace {

// SIGKILL to the service whose pid file is `pid_path`, then, after `down`, scripts/services up.
void kill_and_restart(const Services& services, const std::string& pid_path, std::chrono::milliseconds down) {
  std::ifstream pid_file(pid_path);
  int pid = 0;
  pid_file >> pid;
  REQUIRE(pid > 0);
  REQUIRE(::kill(pid, SIGKILL) == 0);
  REQUIRE(eventually([&] { return ::kill(pid, 0) != 0; }, std::chrono::seconds(30)));
  std::this_thread::sleep_for(down);  // the outage itself: what is measured is what happens meanwhile
  Process up({std::string(COURTYARD_SOURCE_DIR) + "/scripts/services", "up"},
             {{"COURTYARD_VAR", services.var},
              {"COURTYARD_MQTT_PORT", std::to_string(services.mqtt_port)},
              {"COURTYARD_KAFKA_PORT", std::to_string(services.kafka_port)},
              {"COURTYARD_KAFKA_CONTROLLER_PORT", std::to_string(services.kafka_port + 1)}},
             services.var + "/restart.log");
  REQUIRE_MESSAGE(up.wait() == 0, read_file(services.var + "/restart.log"));
}

}  // namespace

SmallDisk::SmallDisk(const std::string& dir, const std::string& size) : dir_(dir) {
  std::filesystem::create_directories(dir_);
  const std::string options = "size=" + size + ",mode=0700";
  REQUIRE_MESSAGE(::mount("courtyard-test", dir_.c_str(), "tmpfs", 0, options.c_str()) == 0,
                  "mounting a " << size << " tmpfs at " << dir_ << ": " << std::strerror(errno)
                                << " (the test needs root, as CI has)");
}

SmallDisk::~SmallDisk() { ::umount2(dir_.c_str(), MNT_DETACH); }

void SmallDisk::fill(std::uint64_t leave) {
  const std::string path = dir_ + "/ballast-" + std::to_string(++ballasts_);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  REQUIRE(fd >= 0);
  const std::string chunk(64 * 1024, '\0');
  for (std::size_t n = chunk.size(); n > 0 && std::filesystem::space(dir_).available > leave;) {
    const ssize_t w = ::write(fd, chunk.data(), n);
    if (w < 0 && errno == ENOSPC) n /= 2;  // the last bytes in smaller pieces
    else REQUIRE(w >= 0);
  }
  ::close(fd);
}

void SmallDisk::free_space() {
  for (; ballasts_ > 0; --ballasts_) std::filesystem::remove(dir_ + "/ballast-" + std::to_string(ballasts_));
}

void kill_and_restart_kafka(const Services& services, std::chrono::milliseconds down) {
  kill_and_restart(services, services.var + "/kafka/kafka.pid", down);
}

bool mosquitto_saved_after(const Services& services, std::filesystem::file_time_type after) {
  const std::string db = services.var + "/mosquitto/data/mosquitto.db";
  return eventually([&] {
    std::error_code ec;
    return std::filesystem::last_write_time(db, ec) > after && !ec;
  }, std::chrono::seconds(30));
}

void kill_and_restart_mosquitto(const Services& services, std::chrono::milliseconds down) {
  kill_and_restart(services, services.var + "/mosquitto/mosquitto.pid", down);
}

}  // namespace courtyard::test
