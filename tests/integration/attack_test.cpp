// The attack suite: each attack of the hostile review (docs/security.md) performed against a stack
// started on the real Mosquitto and Kafka, with the refusal checked and the system checked to still
// work afterwards (a later event is folded, the API answers).
#include <doctest/doctest.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "common/digest.h"
#include "common/kafka_access.h"
#include "common/text.h"
#include "hub/access.h"
#include "http_client.h"
#include "schemas/event.h"
#include "services.h"
#include "ws_client.h"

using namespace courtyard;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// A stack with event and dead-letter topics of its own: what an attack appends stays out of the
// shared log the other tests replay.
test::Stack own_log_stack(const std::string& community, std::map<std::string, std::string> env = {}) {
  auto kafka = test::services().kafka();
  test::create_topic(kafka, community + ".events", 3, TopicKind::Events);
  test::create_topic(kafka, community + ".deadletter", 1, TopicKind::DeadLetter);
  env["COURTYARD_KAFKA_EVENTS_TOPIC"] = community + ".events";
  env["COURTYARD_KAFKA_DEADLETTER_TOPIC"] = community + ".deadletter";
  return test::Stack({community}, env);
}



// CPU seconds a process has used (user + system).
double cpu_seconds(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  std::istringstream fields(text.substr(text.rfind(')') + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; fields >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) {
      stime = std::stol(field);
      break;
    }
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

int open_fds(int pid) {
  int n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) ++n;
  return n;
}

int tcp_connect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// A WebSocket client that sends as fast as the socket takes it and never reads a byte.
class Flooder {
 public:
  Flooder(int port, const std::string& token) : fd_(tcp_connect(port)) {
    REQUIRE(fd_ >= 0);
    const std::string upgrade =
        "GET /api/v1/subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: courtyard.v1, bearer." + token + "\r\n\r\n";
    REQUIRE(::write(fd_, upgrade.data(), upgrade.size()) == static_cast<ssize_t>(upgrade.size()));
    std::string head;
    char c;
    while (!head.ends_with("\r\n\r\n") && ::read(fd_, &c, 1) == 1) head += c;
    REQUIRE_MESSAGE(head.starts_with("HTTP/1.1 101"), head);
    ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
  }
  ~Flooder() { ::close(fd_); }
  // Sends frames of `text` until the socket has taken none for `stall` or `max` went out; how many did.
  int flood(const std::string& text, int max, std::chrono::milliseconds stall) {
    std::string frame = {'\x81'};  // a final text frame, masked (clients must) with a zero key
    if (text.size() < 126) {
      frame += static_cast<char>(0x80 | text.size());
    } else {
      frame += {static_cast<char>(0x80 | 126), static_cast<char>(text.size() >> 8), static_cast<char>(text.size() & 0xff)};
    }
    frame += std::string(4, '\0') + text;
    std::string out;
    int queued = 0;
    auto last_progress = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - last_progress < stall) {
      while (queued < max && out.size() < 65536) {
        out += frame;
        ++queued;
      }
      if (out.empty()) break;
      const ssize_t n = ::send(fd_, out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) {
        out.erase(0, static_cast<std::size_t>(n));
        last_progress = std::chrono::steady_clock::now();
      } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        break;  // the server closed it
      } else {
        std::this_thread::sleep_for(10ms);
      }
    }
    return queued - static_cast<int>(out.size() / frame.size());
  }

 private:
  int fd_;
};

// Produces one record to `topic` as `kafka`'s user; the broker's verdict.
rd_kafka_resp_err_t produce_as(const KafkaConfig& kafka, const std::string& topic, const std::string& key,
                               const std::string& value, std::int32_t partition = 0, int timeout_ms = 10000) {
  rd_kafka_resp_err_t verdict = RD_KAFKA_RESP_ERR__TIMED_OUT;
  auto on_delivery = [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    *static_cast<rd_kafka_resp_err_t*>(opaque) = m->err;
  };
  auto producer = make_producer(kafka, {{"message.timeout.ms", std::to_string(timeout_ms)}, {"enable.idempotence", "false"}},
                                on_delivery, &verdict);
  REQUIRE(producer);
  REQUIRE(rd_kafka_producev(producer->get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
                            RD_KAFKA_V_KEY(key.data(), key.size()),
                            RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_flush(producer->get(), 15000);
  return verdict;
}

// Every message of a topic as (partition, offset, key, value, headers).
struct Record {
  std::int32_t partition;
  std::int64_t offset;
  std::string key, value;
  std::vector<std::pair<std::string, std::string>> headers;
};
std::vector<Record> read_all(const KafkaConfig& kafka, const std::string& topic) {
  std::vector<Record> out;
  auto ok = read_to_end(kafka, topic, [&](const rd_kafka_message_t& m) {
    out.push_back({m.partition, m.offset, m.key ? std::string(static_cast<const char*>(m.key), m.key_len) : "",
                   m.payload ? std::string(static_cast<const char*>(m.payload), m.len) : "", message_headers(m)});
  });
  REQUIRE_MESSAGE(ok, (ok ? "" : ok.error()));
  return out;
}

std::string status_json(std::uint64_t seq) {
  return json{{"seq", seq}, {"ts", 1795950000000 + static_cast<std::int64_t>(seq)}, {"type", "device.status"},
              {"body", {{"battery_pct", 80}}}}
      .dump();
}

}  // namespace

TEST_SUITE("integration: attacks") {
  TEST_CASE("attack: no path reads a file outside the dashboard, and every response carries the security headers") {
    const std::string community = test::unique_name("atk-files");
    test::Stack stack({community});
    stack.start_hub();
    const auto secrets = std::filesystem::path(stack.dir().str("var")) / "secrets";
    auto plate_key = test::read_file(secrets / "plate-key");
    REQUIRE_FALSE(plate_key.empty());
    const std::string secret_path = std::filesystem::absolute(secrets / "plate-key").string();
    // The review's probes read /etc/hostname, var/secrets, the token file and /proc/self/environ.
    for (const std::string& target :
         {std::string("//etc/hostname"), std::string("/%2Fetc%2Fhostname"), "/" + secret_path, "/%2F" + secret_path.substr(1),
          std::string("/..%2F..%2F..%2Fvar%2Fsecrets%2Fplate-key"), std::string("/../../var/secrets/plate-key"),
          std::string("//proc/self/environ"), std::string("/%2Fproc%2Fself%2Fenviron"), std::string("/%2e%2e/README.md")}) {
      CAPTURE(target);
      auto r = test::http_get("127.0.0.1", stack.http_port(), target);
      REQUIRE(r);
      CHECK(r->status == 404);
      CHECK(r->body.find(plate_key.substr(0, 12)) == std::string::npos);
      CHECK(r->body.find("COURTYARD_") == std::string::npos);
    }
    auto page = test::http_get("127.0.0.1", stack.http_port(), "/");
    REQUIRE(page);
    CHECK(page->status == 200);
    for (const auto& r : {*page, *test::http_get("127.0.0.1", stack.http_port(), "/api/v1/devices")}) {
      CHECK(r.headers.at("content-security-policy").find("default-src 'self'") != std::string::npos);
      CHECK(r.headers.at("content-security-policy").find("frame-ancestors 'none'") != std::string::npos);
      CHECK(r.headers.at("x-content-type-options") == "nosniff");
      CHECK(r.headers.at("x-frame-options") == "DENY");
    }
  }

  TEST_CASE("attack: WebSocket messages of the wrong type are refused and the API goes on; the token never rides in a URL, and a revoked or expired token's socket is closed") {
    const std::string community = test::unique_name("atk-ws");
    test::Stack stack({community}, {{"COURTYARD_HTTP_MAX_WEBSOCKETS_PER_TOKEN", "3"}});
    stack.start_hub();
    // One token holds a bounded number of sockets (max_websockets_per_token: 3 here).
    {
      auto many = stack.token("auditor");
      std::vector<std::unique_ptr<test::WsClient>> open;
      for (int i = 0; i < 3; ++i) {
        open.push_back(test::WsClient::connect(stack.http_port(), "/api/v1/subscribe", many));
        REQUIRE(open.back());
      }
      CHECK_FALSE(test::WsClient::connect(stack.http_port(), "/api/v1/subscribe", many));
    }
    // A token in the query string is refused: proxies log URLs.
    CHECK_FALSE(test::WsClient::connect(stack.http_port(), "/api/v1/subscribe?token=" + stack.admin_token()));
    auto ws = test::WsClient::connect(stack.http_port(), "/api/v1/subscribe", stack.admin_token());
    REQUIRE(ws);
    CHECK(ws->subprotocol() == "courtyard.v1");
    REQUIRE(ws->receive());  // hello
    // The review's probe: a subscribe whose id is a number stopped the API's event loop.
    ws->send(R"({"op":"subscribe","id":7,"stream":"alerts"})");
    auto refused = ws->receive();
    REQUIRE(refused);
    CHECK(json::parse(*refused)["error"] == "bad_request");
    ws->send(R"({"op":"subscribe","id":"a","stream":"alerts"})");
    auto snapshot = ws->receive();
    REQUIRE(snapshot);
    CHECK(json::parse(*snapshot)["type"] == "snapshot");
    CHECK(stack.get("/healthz").has_value());

    // Revoked: the open socket closes within a few seconds, with the reason.
    auto doomed = stack.token("staff", community);
    auto revoked = test::WsClient::connect(stack.http_port(), "/api/v1/subscribe", doomed);
    REQUIRE(revoked);
    REQUIRE(revoked->receive());
    std::string doomed_id;
    {
      hub::TokenStore tokens(std::filesystem::path(stack.dir().str("var")) / "hub/tokens.json");
      for (const auto& t : tokens.list()) {
        if (t.role == hub::Role::Staff) doomed_id = t.id;
      }
    }
    auto [status, out] = test::run_courtyard(stack, {"token", "revoke", doomed_id}, "revoke");
    REQUIRE_MESSAGE(status == 0, out);
    CHECK_FALSE(revoked->receive(10s));
    CHECK(revoked->close_reason().find("revoked") != std::string::npos);
    // Expired: a token made with --ttl stops working, and so does its socket.
    auto [made, printed] = test::run_courtyard(stack, {"token", "add", "--role", "auditor", "--ttl", "2s"}, "ttl");
    REQUIRE(made == 0);
    const std::string brief = printed.substr(printed.rfind("cy_"), printed.find('\n', printed.rfind("cy_")) - printed.rfind("cy_"));
    auto expiring = test::WsClient::connect(stack.http_port(), "/api/v1/subscribe", brief);
    REQUIRE(expiring);
    REQUIRE(expiring->receive());
    CHECK_FALSE(expiring->receive(10s));
    CHECK(expiring->close_reason().find("expired") != std::string::npos);
    CHECK(test::http_get("127.0.0.1", stack.http_port(), "/api/v1/whoami", brief)->status == 401);
    // The first client is still served.
    ws->send(R"({"op":"unsubscribe","id":"a"})");
    std::optional<json> gone;
    REQUIRE(test::eventually([&] {
      auto frame = ws->receive(1s);
      if (frame && json::parse(*frame)["type"] == "unsubscribed") gone = json::parse(*frame);
      return gone.has_value();
    }, 30s));
  }

  TEST_CASE("attack: a WebSocket client that sends and never reads stops being read, is dropped, and the hub's memory stays bounded") {
    const std::string community = test::unique_name("atk-flood");
    auto stack = own_log_stack(community, {{"COURTYARD_HTTP_WRITE_TIMEOUT_MS", "3000"}});
    stack.start_ingest();
    stack.start_hub();
    // 120 notices of 2 KB: every subscription to notices/ is a snapshot of about 250 KB.
    const std::string text(1900, 'x');
    for (int i = 0; i < 120; ++i) {
      REQUIRE(stack.post("/api/v1/notices", {{"community", community}, {"title", "n" + std::to_string(i)}, {"text", text}}).first == 202);
    }
    REQUIRE(test::eventually([&] { return stack.get("/api/v1/notices?limit=1000")->at("count") == 120; }, 60s));
    const long before = test::rss_kb(stack.hub().pid());
    Flooder flooder(stack.http_port(), stack.admin_token());
    // Subscribe and unsubscribe, again and again: each subscribe asks for a 250 KB snapshot.
    int sent = 0;
    for (int i = 0; i < 4000 && sent == i; ++i) {
      sent += flooder.flood(json{{"op", i % 2 ? "unsubscribe" : "subscribe"}, {"id", "s0"}, {"prefix", "notices/"}}.dump(), 1, 2s);
    }
    MESSAGE("messages the hub's socket took before it stopped reading: ", sent);
    const long during = test::rss_kb(stack.hub().pid());
    MESSAGE("hub RSS before and during the flood (kB): ", before, " ", during);
    CHECK(during - before < 100 * 1024);  // the review saw +777 MB in 17 s
    REQUIRE(test::eventually([&] { return test::metric(stack, "courtyard_ws_dropped_stalled_total") >= 1; }, 30s));
    REQUIRE(test::eventually([&] { return test::metric(stack, "courtyard_ws_connections") == 0; }, 30s));
    CHECK(stack.get("/api/v1/notices?limit=1").has_value());
  }

  TEST_CASE("attack: connections that never finish a request give way to real clients; a server full of live ones answers 503; exhausted descriptors back off, never spin") {
    const std::string community = test::unique_name("atk-fds");
    auto stack = own_log_stack(community, {{"COURTYARD_HTTP_MAX_CONNECTIONS", "40"}});
    stack.start_hub();
    // The review's probe (slowloris): connections that send half a request and wait, reopened as
    // soon as they close, held every slot and every real client got 503. They give way now.
    std::vector<int> held;
    for (int i = 0; i < 40; ++i) {
      held.push_back(tcp_connect(stack.http_port()));
      REQUIRE(::write(held.back(), "GET / HTTP/1.1\r\nHost: x\r\n", 25) == 25);
    }
    for (int i = 0; i < 5; ++i) {
      auto real = test::http_get("127.0.0.1", stack.http_port(), "/healthz");
      REQUIRE(real);
      CHECK(real->status == 200);
    }
    CHECK(test::metric(stack, "courtyard_http_evicted_waiting_total") >= 1);
    for (int fd : held) ::close(fd);
    held.clear();
    // A server full of live connections (WebSockets): the next one is answered 503 at once.
    std::vector<std::unique_ptr<test::WsClient>> live;
    for (int i = 0; i < 40; ++i) {
      live.push_back(test::WsClient::connect(stack.http_port(), "/api/v1/subscribe", i % 2 ? stack.admin_token() : stack.token("auditor")));
      REQUIRE(live.back());
    }
    int over = tcp_connect(stack.http_port());
    REQUIRE(over >= 0);
    char answer[64] = {0};
    CHECK(::read(over, answer, sizeof answer - 1) > 0);
    CHECK(std::string(answer).starts_with("HTTP/1.1 503"));
    ::close(over);
    live.clear();
    REQUIRE(test::eventually([&] { auto n = test::metric(stack, "courtyard_http_connections"); return n >= 0 && n <= 1; }, 10s));
    // Out of descriptors: the accept loop backs off instead of spinning at 100% CPU.
    const int pid = stack.hub().pid();
    const int limit = open_fds(pid) + 12;
    REQUIRE(std::system(("prlimit --pid " + std::to_string(pid) + " --nofile=" + std::to_string(limit) + ":" +
                         std::to_string(limit + 100)).c_str()) == 0);
    for (int i = 0; i < 30; ++i) held.push_back(tcp_connect(stack.http_port()));
    std::this_thread::sleep_for(500ms);  // let the descriptors run out
    const double cpu_before = cpu_seconds(pid);
    std::this_thread::sleep_for(2s);  // a measurement window, not a wait for correctness
    const double cpu_used = cpu_seconds(pid) - cpu_before;
    MESSAGE("hub CPU over 2 s without descriptors: ", cpu_used, " s");
    CHECK(cpu_used < 0.5);  // a spinning accept loop burns all 2 s
    for (int fd : held) ::close(fd);
    REQUIRE(test::eventually([&] { return test::http_get("127.0.0.1", stack.http_port(), "/healthz").has_value(); }, 20s));
    CHECK(test::metric(stack, "courtyard_http_accept_errors_total") >= 1);
    CHECK(test::metric(stack, "courtyard_http_server_refused_total{reason=\"connections_full\"}") != 0);
  }

  TEST_CASE("attack: a device message whose envelope is not UTF-8 is refused readably, the hub folds on, and a rebuild stopping right after it succeeds") {
    const std::string community = test::unique_name("atk-utf8");
    auto stack = own_log_stack(community);
    stack.start_ingest();
    stack.start_hub();
    auto device = test::provision_via_api(stack, community, community + "-meter", "meter", "b1-101");
    const auto topic = schemas::topic_for(CommunityId(community), DeviceId(device.id), "telemetry");
    REQUIRE(device.client->subscribe(schemas::topic_for(CommunityId(community), DeviceId(device.id), "errors"), 1, 10s));
    // The review's probe: a FlatBuffers event whose device_id and community are raw bytes.
    schemas::Event bad;
    bad.seq = 1;
    bad.device_time_ms = 1795950000000;
    bad.device = DeviceId("meter\xff\xfe");
    bad.community = CommunityId("c\xc0\xaf");
    bad.body = schemas::MeterReading{schemas::MeterKind::Water, 1.0, "m3"};
    REQUIRE(device.client->publish_and_wait(topic, schemas::encode(bad), 1, 10s) == 0);
    auto reply = device.client->next_message(30s);
    REQUIRE(reply);
    auto error = json::parse(reply->payload, nullptr, false);
    REQUIRE_FALSE(error.is_discarded());
    CHECK(error["reason"] == "malformed");
    CHECK(error["detail"].get<std::string>().find("not valid UTF-8") != std::string::npos);
    // Then a valid event: folded.
    REQUIRE(device.client->publish_and_wait(topic, json{{"seq", 2}, {"ts", 1795950000000}, {"type", "meter.reading"},
                                                        {"body", {{"kind", "water"}, {"total", 2.0}, {"unit", "m3"}}}}.dump(), 1, 10s) == 0);
    REQUIRE(test::eventually([&] {
      auto d = stack.get("/api/v1/devices/" + device.id);
      return d && (*d)["events"] == 1 && !(*d)["rejections"].is_null() && (*d)["rejections"]["total"] == 1;
    }, 30s));
    auto letters = read_all(test::services().kafka(), community + ".deadletter");
    REQUIRE(letters.size() == 1);  // one refusal, no second "internal error" letter
    for (const auto& [name, value] : letters[0].headers) CHECK(valid_utf8(value));
    // A rebuild that stops right after the dead letter (the review's: exit with type_error.316).
    const std::string until = community + ".deadletter:" + std::to_string(letters[0].partition) + "=" +
                              std::to_string(letters[0].offset + 1);
    auto [status, out] = test::run_courtyard(stack, {"replay", "rebuild", "--to", stack.dir().str("rebuilt"), "--until-offsets", until}, "rebuild");
    CHECK_MESSAGE(status == 0, out);
    auto summary = test::last_json_line(out);
    CHECK(summary["dead_letters"] == 1);
    CHECK(summary["quarantined"] == 0);
  }

  TEST_CASE("attack: events forged straight into Kafka and a rewritten audit record are named by verify and audit") {
    const std::string community = test::unique_name("atk-forge");
    auto stack = own_log_stack(community, {{"COURTYARD_HUB_AUDIT_INTERVAL_S", "1"}});
    stack.start_ingest();
    stack.start_hub();
    auto device = test::provision_via_api(stack, community, community + "-gate", "gate");
    const auto topic = schemas::topic_for(CommunityId(community), DeviceId(device.id), "telemetry");
    for (std::uint64_t seq = 1; seq <= 5; ++seq) {
      REQUIRE(device.client->publish_and_wait(topic, json{{"seq", seq}, {"ts", 1795950000000}, {"type", "gate.pass"},
                                                          {"body", {{"credential", "face"}, {"subject", "s-1"}, {"direction", "in"},
                                                                    {"decision", "granted"}}}}.dump(), 1, 10s) == 0);
    }
    REQUIRE(test::eventually([&] { auto d = stack.get("/api/v1/devices/" + device.id); return d && (*d)["events"] == 5; }, 30s));
    // A vehicle the registry let in, then withdrew.
    REQUIRE(stack.post("/api/v1/registry/" + community, {{"kind", "vehicle"}, {"id", "plate-x"}, {"unit", "b1-101"}}).first == 202);
    REQUIRE(stack.post("/api/v1/registry/" + community, {{"kind", "vehicle"}, {"id", "plate-x"}, {"removed", true}}).first == 202);
    const std::string plate_record = "/api/v1/registry/" + community + "/vehicle/plate-x";
    REQUIRE(test::eventually([&] { auto r = stack.get(plate_record); return r && (*r)["removed"] == true; }, 30s));
    const std::string audit_topic = "courtyard.audit.v1";
    const std::string hub_id = stack.env().at("COURTYARD_HUB_INSTANCE_ID");
    auto records_of_hub = [&] {
      std::vector<Record> mine;
      for (auto& r : read_all(test::services().kafka(), audit_topic)) {
        if (r.key.starts_with(hub_id + "/")) mine.push_back(std::move(r));
      }
      return mine;
    };
    REQUIRE(test::eventually([&] { return records_of_hub().size() >= 2; }, 30s));
    auto [clean, clean_out] = test::run_courtyard(stack, {"replay", "audit"}, "audit-clean");
    REQUIRE_MESSAGE(clean == 0, clean_out);

    // Someone with the broker's admin password appends forged events of the community.
    const auto admin = test::services().kafka();
    const std::string events_topic = community + ".events", deadletter_topic = community + ".deadletter";
    auto log = read_all(admin, events_topic);
    std::optional<schemas::Event> head, genuine, grant;
    std::int32_t partition = 0;
    std::string grant_bytes;
    for (const auto& r : log) {
      auto e = schemas::decode(r.value);
      if (!e || e->community.str() != community) continue;
      partition = r.partition;
      if (!head || e->chain_seq > head->chain_seq) head = *e;
      if (std::holds_alternative<schemas::GatePass>(e->body)) genuine = *e;
      if (const auto* entry = std::get_if<schemas::RegistryEntry>(&e->body); entry && !entry->removed) {
        grant = *e;
        grant_bytes = r.value;
      }
    }
    REQUIRE(head);
    REQUIRE(genuine);
    REQUIRE(grant);
    std::int64_t last_genuine = -1;
    for (const auto& r : log) {
      if (r.partition == partition) last_genuine = std::max(last_genuine, r.offset);
    }
    auto unchained = *genuine;  // a new event, no chain position: "not chained"
    unchained.seq = 100;
    unchained.chain_seq = 0;
    unchained.chain_link.clear();
    auto fork = *genuine;  // a "repeat" of a real position with other content
    fork.seq = 101;
    std::get<schemas::GatePass>(fork.body).subject = "intruder";
    auto extension = *genuine;  // the chain's next position, linked as an unkeyed SHA-256 chain would be
    extension.seq = 102;
    extension.chain_seq = head->chain_seq + 1;
    extension.chain_link.clear();
    extension.chain_link = sha256_hex(head->chain_link + schemas::encode(extension));
    schemas::Event tick;  // the log's clock pushed a day ahead
    tick.device = DeviceId("courtyard-ingest-0");
    tick.ingest_time_ms = tick.device_time_ms = 4000000000000;
    tick.body = schemas::Tick{partition};
    for (const auto& forged : {schemas::encode(unchained), schemas::encode(fork), std::string("not an event at all"),
                               schemas::encode(extension), schemas::encode(tick)}) {
      REQUIRE(produce_as(admin, events_topic, community, forged, partition) == RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    // An old grant, byte for byte, after its withdrawal: a "repeat", which must change nothing.
    REQUIRE(produce_as(admin, events_topic, community, grant_bytes, partition) == RD_KAFKA_RESP_ERR_NO_ERROR);
    // And a dead letter ingest never wrote.
    REQUIRE(produce_as(admin, deadletter_topic, device.id, "{}", 0) == RD_KAFKA_RESP_ERR_NO_ERROR);
    std::vector<std::int64_t> forged_offsets;
    for (const auto& r : read_all(admin, events_topic)) {
      if (r.partition != partition || r.offset <= last_genuine) continue;
      auto e = schemas::decode(r.value);
      const bool ours = !e || e->ingest_time_ms == 4000000000000 || !std::holds_alternative<schemas::Tick>(e->body);
      if (ours && r.value != grant_bytes) forged_offsets.push_back(r.offset);
    }
    REQUIRE(forged_offsets.size() == 5);
    REQUIRE(test::eventually([&] { auto h = stack.get("/healthz"); return h && (*h)["lag_total"] == 0; }, 30s));
    CHECK(stack.get(plate_record).value()["removed"] == true);  // the replayed grant was not applied

    auto [verified, verify_out] = test::run_courtyard(stack, {"replay", "verify"}, "verify");
    CHECK(verified == 1);
    std::map<std::int64_t, std::string> events_breaks;
    std::vector<std::string> letter_breaks;
    const auto verify_summary = test::last_json_line(verify_out);
    for (const auto& b : verify_summary["chain_breaks"]) {
      if (b["topic"] == events_topic) events_breaks[b["offset"].get<std::int64_t>()] = b["what"];
      if (b["topic"] == deadletter_topic) letter_breaks.push_back(b["what"]);
    }
    REQUIRE(events_breaks.size() == 5);
    std::vector<std::string> what;
    for (auto offset : forged_offsets) {
      CAPTURE(offset);
      REQUIRE(events_breaks.contains(offset));
      what.push_back(events_breaks[offset]);
    }
    CHECK(what[0].find("not chained") != std::string::npos);
    CHECK(what[1].find("different content") != std::string::npos);
    CHECK(what[2].starts_with("not a Courtyard event"));
    CHECK(what[3].starts_with("altered"));
    CHECK(what[4].find("tick whose MAC does not hold") != std::string::npos);
    REQUIRE(letter_breaks.size() == 1);
    CHECK(letter_breaks[0] == "a dead letter without ingest's MAC");

    // ... and rewrites one audit record and deletes another.
    auto mine = records_of_hub();
    auto envelope = json::parse(mine[0].value);
    auto payload = json::parse(envelope["payload"].get<std::string>());
    payload["projections"]["devices"]["sha256"] = std::string(64, '0');
    envelope["payload"] = payload.dump();
    REQUIRE(produce_as(admin, audit_topic, mine[0].key, envelope.dump()) == RD_KAFKA_RESP_ERR_NO_ERROR);
    {
      auto producer = make_producer(admin, {});
      REQUIRE(producer);
      REQUIRE(rd_kafka_producev(producer->get(), RD_KAFKA_V_TOPIC(audit_topic.c_str()),
                                RD_KAFKA_V_KEY(mine[1].key.data(), mine[1].key.size()), RD_KAFKA_V_VALUE(nullptr, 0),
                                RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR_NO_ERROR);
      REQUIRE(rd_kafka_flush(producer->get(), 15000) == RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    auto [audited, audit_out] = test::run_courtyard(stack, {"replay", "audit"}, "audit");
    CHECK(audited == 1);
    auto problems = test::last_json_line(audit_out)["problems"];
    std::string all;
    for (const auto& p : problems) all += p.get<std::string>() + "\n";
    MESSAGE(all);
    CHECK(all.find("FORGED") != std::string::npos);
    CHECK(all.find(mine[0].key) != std::string::npos);
    CHECK(all.find("deleted") != std::string::npos);
    CHECK(all.find(mine[1].key) != std::string::npos);
    // Through it all, the hub went on folding (the forged events, too: the audit is what names them).
    const auto folded = stack.get("/api/v1/devices/" + device.id).value()["events"].get<int>();
    REQUIRE(device.client->publish_and_wait(topic, json{{"seq", 200}, {"ts", 1795950000000}, {"type", "gate.pass"},
                                                        {"body", {{"credential", "face"}, {"subject", "s-1"}, {"direction", "out"},
                                                                  {"decision", "granted"}}}}.dump(), 1, 10s) == 0);
    CHECK(test::eventually([&] { auto d = stack.get("/api/v1/devices/" + device.id); return d && (*d)["events"] == folded + 1; }, 30s));
  }

  TEST_CASE("attack: Kafka refuses whoever may not write a topic, and anyone without a password") {
    auto services = test::services();
    const KafkaConfig kafka = services.kafka();
    // Only ingest appends to the log; the hub and the auditor are refused by the broker itself.
    for (const char* role : {"hub", "auditor"}) {
      CAPTURE(role);
      CHECK(produce_as(services.kafka_as(role), kafka.events_topic, "c", "forged") == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
      CHECK(produce_as(services.kafka_as(role), kafka.deadletter_topic, "c", "forged") == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    }
    // Only the hub writes requests, commands, alerts and audit records.
    for (const auto& topic : {kafka.requests_topic, kafka.commands_topic, kafka.alerts_topic, kafka.audit_topic}) {
      CAPTURE(topic);
      CHECK(produce_as(services.kafka_as("ingest"), topic, "c", "forged") == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
      CHECK(produce_as(services.kafka_as("auditor"), topic, "c", "forged") == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    }
    // A role cannot join another's consumer group (it would take the hub's partitions away).
    {
      auto consumer = make_consumer(services.kafka_as("auditor"), {{"group.id", "courtyard-hub"}});
      REQUIRE(consumer);
      KafkaPartitionsPtr topics(rd_kafka_topic_partition_list_new(1));
      rd_kafka_topic_partition_list_add(topics.get(), kafka.events_topic.c_str(), RD_KAFKA_PARTITION_UA);
      REQUIRE(rd_kafka_subscribe(consumer->get(), topics.get()) == RD_KAFKA_RESP_ERR_NO_ERROR);
      std::vector<std::string> errors;
      CHECK(test::eventually([&] {
        KafkaMessagePtr m(rd_kafka_consumer_poll(consumer->get(), 200));
        if (m && m->err) errors.push_back(rd_kafka_err2name(m->err));
        return !errors.empty() && errors.back() == "GROUP_AUTHORIZATION_FAILED";
      }, 20s));
      rd_kafka_consumer_close(consumer->get());
    }
    // A wrong password, or none: no metadata, no produce.
    auto wrong = services.kafka_as("hub");
    wrong.sasl_password = "guess";
    CHECK(produce_as(wrong, kafka.requests_topic, "c", "x", 0, 3000) != RD_KAFKA_RESP_ERR_NO_ERROR);
    auto anonymous = kafka;
    anonymous.sasl_mechanism.clear();
    CHECK(produce_as(anonymous, kafka.requests_topic, "c", "x", 0, 3000) != RD_KAFKA_RESP_ERR_NO_ERROR);
  }

  TEST_CASE("attack: provisioning through the API takes over no device, no service account and no other community's device") {
    const std::string community = test::unique_name("atk-prov"), other = test::unique_name("atk-prov2");
    test::Stack stack({community, other});
    stack.start_ingest();
    stack.start_hub();
    auto device = test::provision_via_api(stack, community, community + "-gate", "gate");
    auto staff_here = stack.token("staff", community), staff_there = stack.token("staff", other);
    auto post = [&](const std::string& token, const std::string& target, const json& body) {
      auto r = test::http_post("127.0.0.1", stack.http_port(), target, body.dump(), token);
      REQUIRE(r);
      return *r;
    };
    // The review's probes: re-provisioning an existing id reset its password.
    CHECK(post(staff_there, "/api/v1/devices", {{"id", device.id}, {"kind", "gate"}, {"community", other}}).status == 409);
    CHECK(post(stack.admin_token(), "/api/v1/devices", {{"id", device.id}, {"kind", "gate"}, {"community", community}}).status == 409);
    for (const char* account : {"admin", "courtyard-service", "courtyard-ingest-0"}) {
      CAPTURE(account);
      CHECK(post(stack.admin_token(), "/api/v1/devices", {{"id", account}, {"kind", "gate"}, {"community", community}}).status == 403);
    }
    // Another community's staff cannot rotate it, nor learn it exists.
    CHECK(post(staff_there, "/api/v1/devices/" + device.id + "/credentials", json::object()).status == 404);
    CHECK(post(staff_here, "/api/v1/devices/admin/credentials", json::object()).status == 404);
    MqttClient::Options o;
    o.client_id = o.username = device.id;
    o.password = device.password;
    CHECK(MqttClient::connect("127.0.0.1", test::services().mqtt_port, o, 10s).has_value());  // untouched
    // Its own community's staff may: the old password stops working, the new one works.
    auto rotated = post(staff_here, "/api/v1/devices/" + device.id + "/credentials", json::object());
    REQUIRE_MESSAGE(rotated.status == 200, rotated.body);
    device.client.reset();
    CHECK_FALSE(MqttClient::connect("127.0.0.1", test::services().mqtt_port, o, 10s).has_value());
    o.password = json::parse(rotated.body)["mqtt_password"].get<std::string>();
    auto client = MqttClient::connect("127.0.0.1", test::services().mqtt_port, o, 10s);
    REQUIRE(client);
    // Ingest (the service account) still works: the device's next event is folded.
    REQUIRE((*client)->publish_and_wait(schemas::topic_for(CommunityId(community), DeviceId(device.id), "telemetry"),
                                        status_json(1), 1, 10s) == 0);
    CHECK(test::eventually([&] { auto d = stack.get("/api/v1/devices/" + device.id); return d && (*d)["events"] == 1; }, 30s));
  }

  TEST_CASE("attack: a device connecting as ingest cannot take its session; ingest receives every message") {
    const std::string community = test::unique_name("atk-session");
    test::Stack stack({community});
    stack.start_ingest();
    stack.start_hub();
    auto device = test::provision_via_api(stack, community, community + "-meter", "meter", "", /*connect=*/false);
    // The review's probe: connecting with ingest's client id took over its persistent session.
    MqttClient::Options thief;
    thief.client_id = stack.env().at("COURTYARD_INGEST_CLIENT_ID");
    thief.username = device.id;
    thief.password = device.password;
    thief.clean_start = false;
    thief.session_expiry_s = 3600;
    CHECK_FALSE(MqttClient::connect("127.0.0.1", test::services().mqtt_port, thief, 10s).has_value());
    thief.client_id += "-snapshots";
    CHECK_FALSE(MqttClient::connect("127.0.0.1", test::services().mqtt_port, thief, 10s).has_value());
    MqttClient::Options self;
    self.client_id = self.username = device.id;
    self.password = device.password;
    auto client = MqttClient::connect("127.0.0.1", test::services().mqtt_port, self, 10s);
    REQUIRE(client);
    for (std::uint64_t seq = 1; seq <= 10; ++seq) {
      REQUIRE((*client)->publish_and_wait(schemas::topic_for(CommunityId(community), DeviceId(device.id), "telemetry"),
                                          status_json(seq), 1, 10s) == 0);
    }
    CHECK(test::eventually([&] { auto d = stack.get("/api/v1/devices/" + device.id); return d && (*d)["events"] == 10; }, 30s));
  }

  TEST_CASE("attack: a household's notice reaches that household's panels only") {
    const std::string community = test::unique_name("atk-notice");
    test::Stack stack({community});
    stack.start_ingest();
    stack.start_hub();
    auto mine = test::provision_via_api(stack, community, community + "-panel-a", "home_sensor", "b1-101");
    auto theirs = test::provision_via_api(stack, community, community + "-panel-b", "home_sensor", "b1-102");
    const std::string notices = "courtyard/v1/" + community + "/notices";
    REQUIRE(mine.client->subscribe(notices + "/b1-101", 1, 10s));
    REQUIRE(theirs.client->subscribe(notices + "/b1-102", 1, 10s));
    REQUIRE(theirs.client->subscribe(notices, 1, 10s));
    CHECK_FALSE(theirs.client->subscribe(notices + "/b1-101", 1, 10s).has_value());  // not its household
    CHECK_FALSE(theirs.client->subscribe(notices + "/#", 1, 10s).has_value());
    // The review's probe: a household-targeted notice went out on the community topic.
    REQUIRE(stack.post("/api/v1/notices", {{"community", community}, {"unit", "b1-101"}, {"title", "Your parcel"}}).first == 202);
    auto got = mine.client->next_message(30s);
    REQUIRE(got);
    CHECK(got->topic == notices + "/b1-101");
    REQUIRE(stack.post("/api/v1/notices", {{"community", community}, {"title", "Water off Tuesday"}}).first == 202);
    auto first_for_them = theirs.client->next_message(30s);
    REQUIRE(first_for_them);
    // The household notice went out first: had b1-102 been sent it, it would have come first.
    CHECK(json::parse(first_for_them->payload)["body"]["title"] == "Water off Tuesday");
  }

  TEST_CASE("attack: secrets live in 0600 files and never on a command line") {
    auto services = test::services();
    const std::filesystem::path var = services.var;
    using std::filesystem::perms;
    auto private_file = [](const std::filesystem::path& p) {
      auto st = std::filesystem::status(p).permissions();
      return (st & (perms::group_all | perms::others_all)) == perms::none;
    };
    CHECK(private_file(var / "mosquitto/dynamic-security.json"));  // the review: world-readable
    CHECK(private_file(var / "kafka/server.properties"));
    std::vector<std::string> secrets;
    for (const auto& e : std::filesystem::directory_iterator(var / "secrets")) {
      CAPTURE(e.path().string());
      CHECK(private_file(e.path()));
      secrets.push_back(test::read_file(e.path()).substr(0, 24));
    }
    REQUIRE(secrets.size() >= 6);
    const std::string community = test::unique_name("atk-argv");
    test::Stack stack({community});
    stack.start_ingest();
    stack.start_hub();
    std::vector<int> pids = {stack.ingest().pid(), stack.hub().pid(), std::stoi(test::read_file(var / "mosquitto/mosquitto.pid")),
                             std::stoi(test::read_file(var / "kafka/kafka.pid"))};
    for (int pid : pids) {
      auto cmdline = test::read_file("/proc/" + std::to_string(pid) + "/cmdline");
      REQUIRE_FALSE(cmdline.empty());
      for (const auto& s : secrets) {
        CAPTURE(pid);
        CHECK(cmdline.find(s) == std::string::npos);
      }
    }
  }

  TEST_CASE("attack: as-of queries keep a bounded number of stores on disk and run one at a time") {
    const std::string community = test::unique_name("atk-asof");
    auto stack = own_log_stack(community, {{"COURTYARD_HTTP_AS_OF_STORES_KEEP", "2"}});
    stack.start_ingest();
    stack.start_hub();
    auto auditor = stack.token("auditor");
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    for (int i = 0; i < 5; ++i) {
      auto r = test::http_get("127.0.0.1", stack.http_port(), "/api/v1/devices?as%5Fof%5Ftime=" + std::to_string(now - i * 1000), auditor);
      REQUIRE(r);
      CHECK_MESSAGE(r->status == 200, r->body);
    }
    const auto as_of = std::filesystem::path(stack.dir().str("var")) / "hub/as-of";
    REQUIRE(test::eventually([&] {
      int stores = 0;
      for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(as_of)) ++stores;
      return stores <= 2;
    }, 10s));
  }
}
