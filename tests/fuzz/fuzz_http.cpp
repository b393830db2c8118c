// Fuzzes the hub's HTTP API (hub::Api, everything behind the HTTP parser): request targets and
// query strings, bodies, methods and credentials of every role, over a store with records of every
// projection and a web root with a file outside it that must never be served.
// Input: byte 0 picks the method and the credential, then the target up to '\n', then the body.
// Properties: no exception escapes and no 500 (a 500 is a bug the input found); every JSON answer
// is JSON; a 200 outside /api/ is one of the dashboard's own files; nothing without a valid token
// gets past /api/ except 401s; an appended event is one of the hub's own and encodes and decodes;
// a person's name leaves the hub only in an answer whose read-trail event was appended first.
// Seeds: tests/fuzz/seeds/http.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "check.h"
#include "common/text.h"
#include "events.h"
#include "hub/api.h"
#include "hub/vault.h"
#include "processors/projector.h"
#include "processors/store.h"

using namespace courtyard;
using fuzz::check;

namespace {

struct World {
  std::filesystem::path dir;
  std::unique_ptr<processors::Store> store;
  std::unique_ptr<hub::TokenStore> tokens;
  Metrics metrics;
  std::unique_ptr<hub::Api> api;
  std::vector<std::string> credentials;  // "", garbage, admin, staff, auditor, resident
  std::vector<std::string> web_files;
  std::optional<hub::Vault> vault;
  std::size_t reads_appended = 0;  // person.read events the API appended

  World() {
    char tmpl[] = "/tmp/courtyard-fuzz-http-XXXXXX";
    dir = ::mkdtemp(tmpl);
    std::filesystem::create_directories(dir / "web/css");
    std::ofstream(dir / "web/index.html") << "<!doctype html><title>dashboard</title>";
    std::ofstream(dir / "web/app.js") << "console.log('dashboard')";
    std::ofstream(dir / "web/css/site.css") << "body{}";
    std::ofstream(dir / "secret.txt") << "SECRET-OUTSIDE-THE-WEB-ROOT";
    std::filesystem::create_symlink(dir / "secret.txt", dir / "web/link.txt");
    for (const char* f : {"<!doctype html><title>dashboard</title>", "console.log('dashboard')", "body{}"}) web_files.push_back(f);
    processors::StoreConfig sc;
    sc.dir = (dir / "state").string();
    sc.in_memory = true;
    store = std::move(*processors::Store::open(sc));
    // Records of every projection: two households' devices, an alert, meters, a notice.
    processors::Projector projector(*store, {});
    std::vector<processors::LogMessage> log;
    std::int64_t offset = 0;
    using K = schemas::DeviceKind;
    for (auto [id, kind, unit] : {std::tuple{"gate-1", K::Gate, ""}, {"smoke-101", K::HomeSensor, "b1-101"},
                                  {"smoke-102", K::HomeSensor, "b1-102"}, {"meter-101", K::Meter, "b1-101"},
                                  {"wear-101", K::Wearable, "b1-101"}}) {
      schemas::Event reg;
      reg.device = DeviceId(id);
      reg.community = CommunityId("c1");
      reg.device_time_ms = reg.ingest_time_ms = 1795950000000;
      reg.body = schemas::DeviceRegistered{kind, unit, "Building 1"};
      log.push_back(test::log_message(reg, offset++));
    }
    auto smoke = test::status_event("smoke-101", 1);
    smoke.body = schemas::HomeSensor{schemas::SensorKind::Smoke, "alarm", {}};
    log.push_back(test::log_message(smoke, offset++));
    auto meter = test::status_event("meter-101", 1);
    meter.body = schemas::MeterReading{schemas::MeterKind::Water, 12.5, "m3"};
    log.push_back(test::log_message(meter, offset++));
    log.push_back({"courtyard.deadletter.v1", 0, 0, "gate-1", "{", {{"reason", "malformed"}, {"device", "gate-1"}}});
    // A family in the vault: the wearer and her daughter, the wearable's contacts, and the fall.
    vault.emplace(*hub::Vault::open(dir / "keys", dir / "master"));
    std::vector<std::string> family;
    for (const char* name : {"FUZZ-NAME-MOTHER", "FUZZ-NAME-DAUGHTER"}) {
      const auto subject = *vault->create_subject();
      schemas::Event person = test::status_event("people", 0);
      person.body = schemas::PersonRecorded{subject, schemas::PersonKind::Family, "b1-101",
                                            *vault->seal("c1", subject, {name, "+86 138", "daughter", "", ""}), {"face-1"}};
      log.push_back(test::log_message(person, offset++));
      family.push_back(subject);
    }
    schemas::Event contacts = test::status_event("people", 0);
    contacts.body = schemas::EmergencyContacts{"b1-101", "wear-101", family[0], {family[1]}};
    log.push_back(test::log_message(contacts, offset++));
    auto fall = test::status_event("wear-101", 1);
    fall.body = schemas::WearableAlarm{schemas::AlarmKind::Fall, false};
    log.push_back(test::log_message(fall, offset++));
    check(projector.apply(log).has_value(), "the store is seeded");

    tokens = std::make_unique<hub::TokenStore>(dir / "tokens.json");
    credentials = {"", "Bearer cy_not_a_token", "Bearer " + *tokens->add(hub::Role::Admin, "", "", "fuzz"),
                   "Bearer " + *tokens->add(hub::Role::Staff, "c1", "", "fuzz"),
                   "Bearer " + *tokens->add(hub::Role::Auditor, "", "", "fuzz"),
                   "Bearer " + *tokens->add(hub::Role::Resident, "c1", "b1-101", "fuzz")};
    hub::ApiSources sources;
    sources.store = store.get();
    sources.freshness = [] { return processors::Freshness{{{"courtyard.events.v1", 0}, {8, 10}}}; };
    sources.runner_stats = [] { return processors::RunnerStats{}; };
    sources.healthy = [] { return true; };
    sources.tokens = tokens.get();
    sources.web_root = (dir / "web").string();
    sources.vault = &*vault;
    sources.append = [this](const schemas::Event& e) -> std::expected<std::int64_t, std::string> {
      check(!e.community.empty(), "the hub appends events of a community only");
      if (std::holds_alternative<schemas::PersonalDataRead>(e.body)) ++reads_appended;
      auto decoded = schemas::decode(schemas::encode(e));
      check(decoded.has_value(), "an event the API appends decodes from its encoding", decoded ? "" : decoded.error());
      return 7;
    };
    sources.provision = [](const schemas::Registration& r, bool) -> std::expected<std::string, hub::HttpResponse> {
      check(schemas::valid_id(r.device.str()) && schemas::valid_id(r.community.str()), "only valid ids are provisioned");
      return std::string("password");
    };
    sources.snapshot_image = [](std::uint64_t id) -> std::optional<hub::ApiSources::SnapshotImage> {
      if (id != 42) return std::nullopt;
      return hub::ApiSources::SnapshotImage{"c1", "cam-1", "\xff\xd8 jpeg \xff\xd9"};
    };
    api = std::make_unique<hub::Api>(sources, metrics);
  }
  ~World() { std::filesystem::remove_all(dir); }
};

const char* const kMethods[] = {"GET", "POST", "HEAD", "DELETE", "PUT", "get", "POST\r\n", ""};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static World world;
  if (size == 0) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  const auto newline = input.find('\n');
  hub::HttpRequest request;
  request.method = kMethods[data[0] % 8];
  request.authorization = world.credentials[(data[0] >> 3) % world.credentials.size()];
  request.target = std::string(input.substr(0, newline));
  request.body = newline == std::string_view::npos ? std::string() : std::string(input.substr(newline + 1));

  (void)hub::Api::parse_target(request.target);
  const auto reads_before = world.reads_appended;
  auto response = world.api->handle(request);
  if (response.body.find("FUZZ-NAME-") != std::string::npos &&
      (request.target + request.body).find("FUZZ-NAME-") == std::string::npos) {
    check(world.reads_appended > reads_before, "a person's name is shown only after its read is in the log", request.target);
    check(request.authorization != world.credentials[4], "an auditor is never shown a person's fields", request.target);
  }
  check(response.status != 500, "no request makes the API fail", request.target + "\n" + response.body);
  check(response.status >= 200 && response.status < 600, "a status is an HTTP status");
  if (response.content_type == "application/json") {
    check(!nlohmann::json::parse(response.body, nullptr, false).is_discarded(), "a JSON answer is JSON", response.body);
  }
  const auto path = hub::Api::parse_target(request.target).path;
  const bool api = path.starts_with("/api/") || path == "/metrics";
  if (!api && path != "/healthz" && response.status == 200) {
    bool ours = false;
    for (const auto& f : world.web_files) ours |= response.body == f;
    check(ours, "only the dashboard's own files are served", request.target);
  }
  if (api && (request.authorization.size() < 10 || request.authorization == "Bearer cy_not_a_token")) {
    check(response.status == 401, "nothing under /api/ answers without a valid token", request.target);
  }
  // (The request may quote it, and an error may quote the request back.)
  check(response.body.find("SECRET-OUTSIDE") == std::string::npos ||
            (request.target + request.body).find("SECRET-OUTSIDE") != std::string::npos,
        "no file outside the web root is ever read");
  return 0;
}
