// The API as an attacker meets it: paths that try to leave the web root, tokens that should not
// work, query strings that try to reach slow paths, ids that are not UTF-8. Each case performs an
// attack of the hostile review (docs/security.md) and checks the refusal and that the API still
// answers afterwards.
#include <doctest/doctest.h>

#include <fstream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "api_sources.h"
#include "events.h"
#include "hub/api.h"
#include "processors/projector.h"
#include "temp_dir.h"

using namespace courtyard;
using json = nlohmann::json;

namespace {

struct Hub {
  test::TempDir dir;
  std::unique_ptr<processors::Store> store;
  Metrics metrics;
  hub::TokenStore tokens{dir.path() / "tokens.json"};
  std::string admin = *tokens.add(hub::Role::Admin, "", "", "test");
  std::unique_ptr<hub::Api> api;
  int as_of_calls = 0;

  Hub() {
    processors::StoreConfig config;
    config.dir = dir.str("state");
    store = std::move(*processors::Store::open(config));
    std::filesystem::create_directories(dir.path() / "web/css");
    std::ofstream(dir.path() / "web/index.html") << "<!doctype html><title>dashboard</title>";
    std::ofstream(dir.path() / "web/app.js") << "console.log(1)";
    std::ofstream(dir.path() / "web/css/site.css") << "body{}";
    std::ofstream(dir.path() / "web/.env") << "SECRET=1";
    std::ofstream(dir.path() / "secret.txt") << "outside the web root";
    std::filesystem::create_symlink(dir.path() / "secret.txt", dir.path() / "web/linked.txt");
    std::filesystem::create_symlink("/etc", dir.path() / "web/etc");
    auto sources = test::api_sources(store.get(), &tokens);
    sources.web_root = dir.str("web");
    sources.as_of = [this](std::int64_t) -> std::expected<std::shared_ptr<const processors::Store>, std::string> {
      ++as_of_calls;
      return std::unexpected(std::string("busy: another as-of query is being built"));
    };
    api = std::make_unique<hub::Api>(sources, metrics);
  }
  hub::HttpResponse get(const std::string& target, const std::string& token = "") {
    return api->handle({"GET", target, "", token.empty() ? "" : "Bearer " + token});
  }
};

}  // namespace

TEST_SUITE("hub API: attacks") {
  TEST_CASE("attack: no spelling of a path serves a file outside the dashboard's own") {
    Hub h;
    CHECK(h.get("/").body.find("dashboard") != std::string::npos);
    CHECK(h.get("/app.js").status == 200);
    CHECK(h.get("/css/site.css").status == 200);
    CHECK(h.get("/app.js").content_type == "text/javascript; charset=utf-8");
    // The review's probes read /etc/hostname, var/secrets and /proc/self/environ this way.
    for (const char* path : {"//etc/hostname", "/%2Fetc%2Fhostname", "/%2fetc/hostname", "/../secret.txt",
                             "/..%2Fsecret.txt", "/%2E%2E/secret.txt", "/css/../../secret.txt", "/linked.txt",
                             "/etc/hostname", "/etc/passwd", "/.env", "/proc/self/environ", "/app.js%00.png",
                             "/app.js/", "/./app.js", "///app.js", "/web/app.js", "/\\..\\secret.txt"}) {
      CAPTURE(path);
      auto res = h.get(path);
      CHECK(res.status == 404);
      CHECK(res.body.find("outside") == std::string::npos);
      CHECK(res.body.find("SECRET") == std::string::npos);
    }
    CHECK(h.get("/app.js").status == 200);  // and the dashboard is still served
  }

  TEST_CASE("attack: a web root that is not a folder of files stops the hub at start, not at the first request") {
    test::TempDir dir;
    Metrics metrics;
    hub::ApiSources sources;
    sources.web_root = dir.str("does-not-exist");
    CHECK_THROWS(hub::Api(sources, metrics));
  }

  TEST_CASE("attack: a token record with an unknown role grants nothing (fail closed)") {
    Hub h;
    auto path = h.dir.path() / "tokens.json";
    auto records = json::parse(test::read_file(path));
    auto forged = records[0];
    forged["id"] = "tok_forged";
    forged["role"] = "superuser";
    forged["sha256"] = std::string(64, 'a');
    records.push_back(forged);
    auto broken = records[0];
    broken["id"] = "tok_broken";
    broken["role"] = 7;
    records.push_back(broken);
    std::ofstream(path, std::ios::trunc) << records.dump();
    CHECK(h.get("/api/v1/whoami", h.admin).status == 200);  // the good record still works
    auto list = h.tokens.list();
    CHECK(list.size() == 1);
    CHECK_FALSE(h.tokens.valid("tok_forged"));
  }

  TEST_CASE("attack: an expired or revoked token is refused, and valid() says so") {
    Hub h;
    auto brief = *h.tokens.add(hub::Role::Auditor, "", "", "brief", 1);
    auto later = *h.tokens.add(hub::Role::Auditor, "", "", "later", 3'600'000);
    std::string brief_id, later_id;
    for (const auto& t : h.tokens.list()) {
      if (t.label == "brief") brief_id = t.id;
      if (t.label == "later") later_id = t.id;
    }
    auto expired = [&] { return h.get("/api/v1/whoami", brief).status == 401; };
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!expired() && std::chrono::steady_clock::now() < deadline) {
    }
    CHECK(expired());
    CHECK_FALSE(h.tokens.valid(brief_id));
    CHECK(h.get("/api/v1/whoami", later).status == 200);
    CHECK(h.tokens.valid(later_id));
    REQUIRE(h.tokens.revoke(later_id));
    CHECK(h.get("/api/v1/whoami", later).status == 401);
    CHECK_FALSE(h.tokens.valid(later_id));
  }

  TEST_CASE("attack: token commands that run at once lose no change: a revocation is never undone by an addition") {
    test::TempDir dir;
    const auto file = dir.path() / "tokens.json";
    hub::TokenStore first(file), second(file);
    auto doomed = first.add(hub::Role::Staff, "c1", "", "doomed");
    REQUIRE(doomed);
    std::string doomed_id = first.list().front().id;
    std::thread adder([&] {
      for (int i = 0; i < 40; ++i) REQUIRE(second.add(hub::Role::Auditor, "", "", "a" + std::to_string(i)));
    });
    std::thread revoker([&] { REQUIRE(first.revoke(doomed_id)); });
    for (int i = 0; i < 40; ++i) REQUIRE(first.add(hub::Role::Auditor, "", "", "b" + std::to_string(i)));
    adder.join();
    revoker.join();
    hub::TokenStore reader(file);
    CHECK(reader.list().size() == 81);
    CHECK_FALSE(reader.authenticate(*doomed).has_value());
    CHECK_FALSE(reader.valid(doomed_id));
  }

  TEST_CASE("attack: a query parameter spelled with percent-escapes is the same parameter, checked the same way") {
    Hub h;
    auto auditor = *h.tokens.add(hub::Role::Auditor, "", "", "auditor");
    auto staff = *h.tokens.add(hub::Role::Staff, "c1", "", "staff");
    // The review ran a full replay on the I/O thread with as%5Fof%5Ftime: the name decodes to
    // as_of_time and meets the same role check, the same validation and the same (busy) builder.
    CHECK(h.get("/api/v1/devices?as%5Fof%5Ftime=1000", staff).status == 403);
    auto busy = h.get("/api/v1/devices?as%5Fof%5Ftime=1000", auditor);
    CHECK(busy.status == 429);
    CHECK(h.as_of_calls == 1);
    for (const char* bad : {"12abc", "", "-5", "1e9", "99999999999999999999999"}) {
      CAPTURE(bad);
      CHECK(h.get(std::string("/api/v1/devices?as_of_time=") + bad, auditor).status == 400);
    }
    CHECK(h.as_of_calls == 1);
    CHECK(h.get("/api/v1/devices?limit=-1", auditor).status == 400);
    CHECK(h.get("/api/v1/devices?limit=5x", auditor).status == 400);
    CHECK(h.get("/api/v1/devices?limit=1000", auditor).status == 200);
  }

  TEST_CASE("attack: ids that are not UTF-8 get an answer, never an exception") {
    Hub h;
    for (const char* target : {"/api/v1/devices/%FF%FE", "/api/v1/alerts/%C0%AF", "/api/v1/devices?community=%FF",
                               "/api/v1/homes/%FF/%FE", "/api/v1/snapshots/%FF.jpg"}) {
      CAPTURE(target);
      auto res = h.get(target, h.admin);
      CHECK(res.status != 500);
      CHECK_FALSE(json::parse(res.body, nullptr, false).is_discarded());
    }
    auto post = h.api->handle({"POST", "/api/v1/alerts/%FF%FE/ack", "{}", "Bearer " + h.admin});
    CHECK(post.status == 404);
  }

  TEST_CASE("attack: body fields of the wrong type are a 400, never a 500 (found by fuzz_http)") {
    Hub h;
    auto post = [&](const std::string& target, const std::string& body) {
      return h.api->handle({"POST", target, body, "Bearer " + h.admin}).status;
    };
    CHECK(post("/api/v1/notices", R"({"community":3600})") == 400);
    CHECK(post("/api/v1/notices", R"({"community":"c1","title":["a"]})") == 400);
    CHECK(post("/api/v1/devices", R"({"id":1,"kind":"gate","community":"c1"})") == 400);
    CHECK(post("/api/v1/devices", R"({"id":"g","kind":{"k":1},"community":"c1"})") == 400);
    CHECK(post("/api/v1/registry/c1", R"({"kind":7,"id":"x"})") == 400);
    CHECK(post("/api/v1/registry/c1", R"({"kind":"person","id":"x","role":false})") == 400);
    CHECK(post("/api/v1/alerts/nope/ack", R"({"note":12})") == 400);
    CHECK(post("/api/v1/devices/nope/commands", R"({"action":null})") == 400);
  }

  TEST_CASE("a list examines a bounded number of records per page and says where to go on") {
    Hub h;
    processors::KeyValues records;
    for (int i = 0; i < 25000; ++i) {
      records.emplace_back(fmt::format("devices/d{:06}", i), R"({"community":"c1","kind":"meter","unit":""})");
    }
    records.emplace_back("devices/z-gate", R"({"community":"c1","kind":"gate","unit":""})");
    REQUIRE(h.store->write(records, {}));
    auto page = json::parse(h.get("/api/v1/devices?kind=gate", h.admin).body);
    CHECK(page["count"] == 0);  // 20,000 meters examined, no gate among them yet
    REQUIRE(page["next"].is_string());
    // The review's probe: the cursor named the last record examined, which the caller may not see.
    const std::string next = page["next"];
    CHECK(next.starts_with("~"));
    CHECK(next.find("d0") == std::string::npos);
    page = json::parse(h.get("/api/v1/devices?kind=gate&after=" + next, h.admin).body);
    CHECK(page["count"] == 1);
    CHECK(page["items"][0]["id"] == "z-gate");
    CHECK(page["next"].is_null());
    // A cursor this hub did not seal (or altered) is refused.
    auto forged = next;
    forged[forged.size() / 2] = forged[forged.size() / 2] == 'A' ? 'B' : 'A';
    CHECK(h.get("/api/v1/devices?after=" + forged, h.admin).status == 400);
    CHECK(h.get("/api/v1/devices?after=~bm90LWEtY3Vyc29y", h.admin).status == 400);
  }
}
