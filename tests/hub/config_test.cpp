#include <doctest/doctest.h>

#include <map>
#include <fstream>

#include "hub/config.h"
#include "temp_dir.h"

using namespace courtyard;

namespace {

// An environment of exactly these variables.
hub::Environment environment(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
}

std::string write(const test::TempDir& dir, const std::string& text) {
  auto path = dir.str("c.toml");
  std::ofstream(path) << text;
  return path;
}

}  // namespace

TEST_SUITE("configuration") {
  TEST_CASE("the shipped config/courtyard.toml states exactly the built-in defaults") {
    auto shipped = hub::load_config(std::string(COURTYARD_SOURCE_DIR) + "/config/courtyard.toml", environment({}));
    hub::Config defaults;
    CHECK(shipped.var == defaults.var);
    CHECK(shipped.kafka.port == defaults.kafka.port);
    CHECK(shipped.kafka.events_topic == defaults.kafka.events_topic);
    CHECK(shipped.mqtt.port == defaults.mqtt.port);
    CHECK(shipped.mqtt.password_file == defaults.mqtt.password_file);
    CHECK(shipped.http.port == defaults.http.port);
    CHECK(shipped.ingest.max_payload_bytes == defaults.ingest.max_payload_bytes);
    CHECK(shipped.hub.group_id == defaults.hub.group_id);
    CHECK(shipped.simulate.communities == defaults.simulate.communities);
    CHECK(shipped.simulate.rate == defaults.simulate.rate);
  }

  TEST_CASE("every setting is in the shipped file") {
    std::ifstream in(std::string(COURTYARD_SOURCE_DIR) + "/config/courtyard.toml");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (const auto& [key, env] : hub::config_keys()) {
      CAPTURE(key);
      auto leaf = key.substr(key.rfind('.') + 1);
      CHECK(text.find("\n" + leaf + " =") != std::string::npos);
    }
  }

  TEST_CASE("an environment variable overrides the file") {
    test::TempDir dir;
    auto path = write(dir, "[http]\nport = 9000\n");
    auto config = hub::load_config(path, environment({{"COURTYARD_HTTP_PORT", "9100"}, {"COURTYARD_INGEST_COMMUNITIES", "a,b"}}));
    CHECK(config.http.port == 9100);
    CHECK(config.ingest.communities == std::vector<std::string>{"a", "b"});
  }

  TEST_CASE("an unknown key fails start-up, naming the key") {
    test::TempDir dir;
    auto path = write(dir, "[http]\nprot = 9000\n");
    CHECK_THROWS_WITH_AS(hub::load_config(path, environment({})), doctest::Contains("http.prot"), std::runtime_error);
  }

  TEST_CASE("a value of the wrong type fails start-up, naming the key") {
    test::TempDir dir;
    CHECK_THROWS_WITH_AS(hub::load_config(write(dir, "[mqtt]\nport = \"x\"\n"), environment({})),
                         doctest::Contains("mqtt.port"), std::runtime_error);
    CHECK_THROWS_WITH_AS(hub::load_config(write(dir, ""), environment({{"COURTYARD_KAFKA_PORT", "ninety"}})),
                         doctest::Contains("kafka.port"), std::runtime_error);
  }

  TEST_CASE("a hub's role in a cluster is all, processors or api, and only a hub that serves no API may go without standbys") {
    test::TempDir dir;
    const auto path = write(dir, "");
    auto load = [&](std::map<std::string, std::string> env) { return hub::load_config(path, environment(std::move(env))); };
    CHECK(load({}).hub.role == "all");
    CHECK(load({{"COURTYARD_HUB_CLUSTER", "true"}, {"COURTYARD_HUB_ROLE", "api"}}).hub.role == "api");
    auto folder = load({{"COURTYARD_HUB_CLUSTER", "true"}, {"COURTYARD_HUB_ROLE", "processors"}, {"COURTYARD_HUB_STANDBY", "false"}});
    CHECK(folder.hub.role == "processors");
    CHECK_FALSE(folder.hub.standby);
    CHECK_THROWS_WITH_AS(load({{"COURTYARD_HUB_CLUSTER", "true"}, {"COURTYARD_HUB_ROLE", "reader"}}), doctest::Contains("hub.role"),
                         std::runtime_error);
    // A role is a part of a cluster: alone, a hub does everything.
    CHECK_THROWS_WITH_AS(load({{"COURTYARD_HUB_ROLE", "api"}}), doctest::Contains("hub.cluster"), std::runtime_error);
    // A hub serving the API answers for every partition: it holds them all.
    CHECK_THROWS_WITH_AS(load({{"COURTYARD_HUB_CLUSTER", "true"}, {"COURTYARD_HUB_STANDBY", "false"}}),
                         doctest::Contains("hub.standby"), std::runtime_error);
    CHECK_THROWS_WITH_AS(load({{"COURTYARD_HUB_CLUSTER", "true"}, {"COURTYARD_HUB_ROLE", "api"}, {"COURTYARD_HUB_STANDBY", "false"}}),
                         doctest::Contains("hub.standby"), std::runtime_error);
  }

  TEST_CASE("the webhook's timeout and backoff are bounded both ways") {
    test::TempDir dir;
    for (const char* setting : {"webhook_timeout_ms = 99", "webhook_timeout_ms = 60001", "webhook_backoff_ms = -1",
                                "webhook_backoff_ms = 3600001"}) {
      CAPTURE(setting);
      CHECK_THROWS_WITH_AS(hub::load_config(write(dir, std::string("[notify]\n") + setting + "\n"), environment({})),
                           doctest::Contains("notify.webhook_"), std::runtime_error);
    }
    CHECK_NOTHROW(hub::load_config(write(dir, "[notify]\nwebhook_timeout_ms = 60000\nwebhook_backoff_ms = 0\n"), environment({})));
  }

  TEST_CASE("environment names follow the keys") {
    bool found = false;
    for (const auto& [key, env] : hub::config_keys()) {
      if (key == "http.port") {
        CHECK(env == "COURTYARD_HTTP_PORT");
        found = true;
      }
    }
    CHECK(found);
  }
}

TEST_SUITE("alert rules configuration") {
  TEST_CASE("the shipped config/rules.toml states exactly the built-in defaults") {
    auto book = hub::load_rules(std::string(COURTYARD_SOURCE_DIR) + "/config/rules.toml");
    processors::AlertRules defaults;
    CHECK(book.defaults.fever_c == defaults.fever_c);
    CHECK(book.defaults.fall_escalate_ms == defaults.fall_escalate_ms);
    CHECK(book.defaults.critical_ack_timeout_ms == defaults.critical_ack_timeout_ms);
    CHECK(book.defaults.inactivity_ms == defaults.inactivity_ms);
    CHECK(book.defaults.heart_rate_sustain_ms == defaults.heart_rate_sustain_ms);
    CHECK(book.defaults.heartbeat_ms == defaults.heartbeat_ms);
    CHECK(book.defaults.tailgate_window_ms == defaults.tailgate_window_ms);
    CHECK(book.defaults.snapshot_grace_ms == defaults.snapshot_grace_ms);
    CHECK(book.defaults.plate_window_ms == defaults.plate_window_ms);
    CHECK(book.defaults.plate_min_confidence == defaults.plate_min_confidence);
    CHECK(book.defaults.dispatch == defaults.dispatch);
    CHECK(book.communities.empty());
  }

  TEST_CASE("a community overrides some rules and inherits the rest") {
    test::TempDir dir;
    auto path = write(dir, "[defaults]\nfever_c = 37.5\n[communities.old-town]\nfall_escalate_s = 30\n"
                           "[communities.old-town.heartbeat_s]\nmeter = 60\n");
    auto book = hub::load_rules(path);
    const auto& town = book.rules_for("old-town");
    CHECK(town.fall_escalate_ms == 30'000);
    CHECK(town.fever_c == 37.5);  // from the file's defaults
    CHECK(town.heartbeat_ms.at("meter") == 60'000);
    CHECK(town.heartbeat_ms.at("gate") == 60'000);
    CHECK(book.rules_for("elsewhere").fall_escalate_ms == 60'000);
  }

  TEST_CASE("a community sets its own dispatch chain and targets; roles and severities are checked") {
    test::TempDir dir;
    auto book = hub::load_rules(write(dir, "[communities.old-town.dispatch]\nchain = [\"security\"]\n"
                                           "[communities.old-town.dispatch.ack_target_s]\nmajor = 60\n"
                                           "[communities.old-town.dispatch.responder]\nsmoke = \"security\"\n"));
    const auto& town = book.rules_for("old-town").dispatch;
    CHECK(town.chain == std::vector<std::string>{"security"});
    CHECK(town.ack_target_ms.at("major") == 60'000);
    CHECK(town.ack_target_ms.at("critical") == 120'000);  // inherited
    CHECK(town.responder.at("smoke") == "security");
    CHECK(town.responder.at("fever") == "security");
    CHECK_THROWS_WITH_AS(hub::load_rules(write(dir, "[defaults.dispatch]\nchain = [\"janitor\"]\n")),
                         doctest::Contains("defaults.dispatch.chain"), std::runtime_error);
    CHECK_THROWS_WITH_AS(hub::load_rules(write(dir, "[defaults.dispatch.ack_target_s]\nurgent = 5\n")),
                         doctest::Contains("ack_target_s.urgent"), std::runtime_error);
    CHECK_THROWS_WITH_AS(hub::load_rules(write(dir, "[defaults.dispatch]\nrota = 1\n")),
                         doctest::Contains("defaults.dispatch.rota"), std::runtime_error);
    for (const char* target : {"nan", "inf", "-1", "86401", "\"soon\""}) {
      CAPTURE(target);
      CHECK_THROWS_WITH_AS(hub::load_rules(write(dir, std::string("[defaults.dispatch.ack_target_s]\nmajor = ") + target + "\n")),
                           doctest::Contains("ack_target_s.major"), std::runtime_error);
    }
  }

  TEST_CASE("an unknown rule fails start-up, naming it") {
    test::TempDir dir;
    CHECK_THROWS_WITH_AS(hub::load_rules(write(dir, "[defaults]\nfever = 38\n")), doctest::Contains("defaults.fever"),
                         std::runtime_error);
    CHECK_THROWS_WITH_AS(hub::load_rules(write(dir, "[communities.x]\nfall_escalate_s = \"soon\"\n")),
                         doctest::Contains("communities.x.fall_escalate_s"), std::runtime_error);
  }
}
