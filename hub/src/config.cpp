#include "hub/config.h"

#include <cmath>
#include <cstdlib>
#include <functional>
#include <set>
#include <sstream>
#include <stdexcept>

#include <toml++/toml.h>

namespace courtyard::hub {
namespace {

// One binding per setting: its dotted key, and how to set it from TOML and from a string.
struct Binding {
  std::string key;
  std::function<void(const toml::node&)> from_toml;
  std::function<void(const std::string&)> from_env;
};

[[noreturn]] void bad(const std::string& key, const std::string& why) {
  throw std::runtime_error("config " + key + ": " + why);
}

template <class T>
Binding setting(const std::string& key, T& field) {
  Binding b{key, {}, {}};
  if constexpr (std::is_same_v<T, std::string>) {
    b.from_toml = [&field, key](const toml::node& n) {
      if (!n.is_string()) bad(key, "must be a string");
      field = *n.value<std::string>();
    };
    b.from_env = [&field](const std::string& v) { field = v; };
  } else if constexpr (std::is_same_v<T, bool>) {
    b.from_toml = [&field, key](const toml::node& n) {
      if (!n.is_boolean()) bad(key, "must be true or false");
      field = *n.value<bool>();
    };
    b.from_env = [&field, key](const std::string& v) {
      if (v == "true" || v == "1") field = true;
      else if (v == "false" || v == "0") field = false;
      else bad(key, "must be true or false, not \"" + v + "\"");
    };
  } else if constexpr (std::is_integral_v<T>) {
    b.from_toml = [&field, key](const toml::node& n) {
      if (!n.is_integer()) bad(key, "must be an integer");
      field = static_cast<T>(*n.value<std::int64_t>());
    };
    b.from_env = [&field, key](const std::string& v) {
      try {
        std::size_t used = 0;
        auto x = std::stoll(v, &used);
        if (used != v.size()) throw std::invalid_argument(v);
        field = static_cast<T>(x);
      } catch (const std::exception&) {
        bad(key, "must be an integer, not \"" + v + "\"");
      }
    };
  } else if constexpr (std::is_floating_point_v<T>) {
    b.from_toml = [&field, key](const toml::node& n) {
      if (!n.is_number()) bad(key, "must be a number");
      field = *n.value<double>();
    };
    b.from_env = [&field, key](const std::string& v) {
      try {
        field = std::stod(v);
      } catch (const std::exception&) {
        bad(key, "must be a number, not \"" + v + "\"");
      }
    };
  } else {  // std::vector<std::string>
    b.from_toml = [&field, key](const toml::node& n) {
      if (!n.is_array()) bad(key, "must be an array of strings");
      field.clear();
      for (const auto& e : *n.as_array()) {
        if (!e.is_string()) bad(key, "must be an array of strings");
        field.push_back(*e.value<std::string>());
      }
    };
    b.from_env = [&field](const std::string& v) {  // comma-separated
      field.clear();
      std::stringstream in(v);
      for (std::string item; std::getline(in, item, ',');) {
        if (!item.empty()) field.push_back(item);
      }
    };
  }
  return b;
}

std::vector<Binding> bindings(Config& c) {
  return {
      setting("var", c.var),
      setting("log.level", c.log_level),
      setting("kafka.host", c.kafka.host),
      setting("kafka.port", c.kafka.port),
      setting("kafka.bootstrap_servers", c.kafka.bootstrap_servers),
      setting("kafka.events_topic", c.kafka.events_topic),
      setting("kafka.deadletter_topic", c.kafka.deadletter_topic),
      setting("kafka.registry_topic", c.kafka.registry_topic),
      setting("kafka.alerts_topic", c.kafka.alerts_topic),
      setting("kafka.commands_topic", c.kafka.commands_topic),
      setting("kafka.requests_topic", c.kafka.requests_topic),
      setting("kafka.audit_topic", c.kafka.audit_topic),
      setting("kafka.snapshots_topic", c.kafka.snapshots_topic),
      setting("kafka.progress_topic", c.kafka.progress_topic),
      setting("kafka.state_topic", c.kafka.state_topic),
      setting("kafka.state_deadletter_topic", c.kafka.state_deadletter_topic),
      setting("kafka.sasl_mechanism", c.kafka.sasl_mechanism),
      setting("kafka.credentials_dir", c.kafka_credentials_dir),
      setting("mqtt.host", c.mqtt.host),
      setting("mqtt.port", c.mqtt.port),
      setting("mqtt.username", c.mqtt.username),
      setting("mqtt.password_file", c.mqtt.password_file),
      setting("mqtt.keepalive_s", c.mqtt.keepalive_s),
      setting("http.host", c.http.host),
      setting("http.port", c.http.port),
      setting("http.tokens_file", c.http.tokens_file),
      setting("http.web_root", c.http.web_root),
      setting("http.ws_max_pending", c.http.ws_max_pending),
      setting("http.ws_frame_interval_ms", c.http.ws_frame_interval_ms),
      setting("http.max_connections", c.http.max_connections),
      setting("http.max_connections_per_address", c.http.max_connections_per_address),
      setting("http.max_websockets_per_token", c.http.max_websockets_per_token),
      setting("http.workers", c.http.workers),
      setting("http.max_queued_requests", c.http.max_queued_requests),
      setting("http.max_requests_per_token", c.http.max_requests_per_token),
      setting("http.write_timeout_ms", c.http.write_timeout_ms),
      setting("http.as_of_stores_keep", c.http.as_of_stores_keep),
      setting("ingest.client_id", c.ingest.client_id),
      setting("ingest.communities", c.ingest.communities),
      setting("ingest.instance", c.ingest.instance),
      setting("ingest.spool_sync", c.ingest.spool_sync),
      setting("ingest.max_payload_bytes", c.ingest.max_payload_bytes),
      setting("ingest.max_snapshot_bytes", c.ingest.max_snapshot_bytes),
      setting("ingest.tick_interval_ms", c.ingest.tick_interval_ms),
      setting("ingest.commit_interval_ms", c.ingest.commit_interval_ms),
      setting("ingest.linger_ms", c.ingest.linger_ms),
      setting("ingest.chain_key_file", c.ingest.chain_key_file),
      setting("vision.enabled", c.vision.enabled),
      setting("vision.group_id", c.vision.group_id),
      setting("vision.workers", c.vision.workers),
      setting("vision.raw_retention_minutes", c.vision.raw_retention_minutes),
      setting("vision.snapshot_retention_minutes", c.vision.snapshot_retention_minutes),
      setting("vision.plate_key_file", c.vision.plate_key_file),
      setting("vision.min_face_px", c.vision.min_face_px),
      setting("hub.group_id", c.hub.group_id),
      setting("hub.instance_id", c.hub.instance_id),
      setting("hub.rules_file", c.hub.rules_file),
      setting("hub.utc_offset_minutes", c.hub.utc_offset_minutes),
      setting("hub.audit_interval_s", c.hub.audit_interval_s),
      setting("hub.checkpoints_keep", c.hub.checkpoints_keep),
      setting("hub.audit_key_file", c.hub.audit_key_file),
      setting("hub.block_cache_mb", c.hub.block_cache_mb),
      setting("hub.max_batch", c.hub.max_batch),
      setting("hub.fold_lanes", c.hub.fold_lanes),
      setting("hub.cluster", c.hub.cluster),
      setting("hub.role", c.hub.role),
      setting("hub.standby", c.hub.standby),
      setting("hub.restore_timeout_ms", c.hub.restore_timeout_ms),
      setting("hub.session_timeout_ms", c.hub.session_timeout_ms),
      setting("privacy.keys_dir", c.privacy.keys_dir),
      setting("privacy.master_key_file", c.privacy.master_key_file),
      setting("privacy.visitor_retention_days", c.privacy.visitor_retention_days),
      setting("privacy.sweep_interval_s", c.privacy.sweep_interval_s),
      setting("notify.webhook_url", c.notify.webhook_url),
      setting("notify.webhook_secret_file", c.notify.webhook_secret_file),
      setting("notify.webhook_attempts", c.notify.webhook_attempts),
      setting("notify.webhook_timeout_ms", c.notify.webhook_timeout_ms),
      setting("notify.webhook_backoff_ms", c.notify.webhook_backoff_ms),
      setting("simulate.communities", c.simulate.communities),
      setting("simulate.devices", c.simulate.devices),
      setting("simulate.rate", c.simulate.rate),
      setting("simulate.bad_fraction", c.simulate.bad_fraction),
      setting("simulate.flatbuffer_fraction", c.simulate.flatbuffer_fraction),
      setting("simulate.seed", c.simulate.seed),
      setting("simulate.scenes_per_minute", c.simulate.scenes_per_minute),
      setting("simulate.photos_dir", c.simulate.photos_dir),
  };
}

std::string env_name(const std::string& key) {
  std::string name = "COURTYARD_";
  for (char ch : key) name += ch == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return name;
}

void collect_keys(const toml::table& table, const std::string& prefix, std::vector<std::string>& out) {
  for (const auto& [k, v] : table) {
    std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (v.is_table()) {
      collect_keys(*v.as_table(), key, out);
    } else {
      out.push_back(key);
    }
  }
}

}  // namespace

Environment process_environment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    return v ? std::optional<std::string>(v) : std::nullopt;
  };
}

Config load_config(const std::optional<std::string>& path, const Environment& env) {
  Config config;
  auto binds = bindings(config);
  std::string file;
  if (path) {
    file = *path;
  } else if (auto from_env = env("COURTYARD_CONFIG")) {
    file = *from_env;
  } else if (std::filesystem::exists("config/courtyard.toml")) {
    file = "config/courtyard.toml";
  }
  if (!file.empty()) {
    toml::table table;
    try {
      table = toml::parse_file(file);
    } catch (const toml::parse_error& e) {
      throw std::runtime_error("config file " + file + ": " + std::string(e.description()));
    }
    std::vector<std::string> keys;
    collect_keys(table, "", keys);
    for (const auto& key : keys) {
      auto b = std::find_if(binds.begin(), binds.end(), [&](const Binding& x) { return x.key == key; });
      if (b == binds.end()) bad(key, "is not a setting (in " + file + ")");
      b->from_toml(*table.at_path(key).node());
    }
  }
  for (auto& b : binds) {
    if (auto v = env(env_name(b.key))) b.from_env(*v);
  }
  // Ingest's MQTT sessions use these ids: devices may never have them (provisioning refuses ids
  // that start with "courtyard-"), so no device can take over ingest's session.
  if (!config.ingest.client_id.starts_with("courtyard-")) {
    bad("ingest.client_id", "must start with \"courtyard-\" (ids reserved from devices), not \"" + config.ingest.client_id + "\"");
  }
  const auto& hub = config.hub;
  if (hub.role != "all" && hub.role != "processors" && hub.role != "api") {
    bad("hub.role", "must be all, processors or api, not \"" + hub.role + "\"");
  }
  if (hub.role != "all" && !hub.cluster) bad("hub.role", hub.role + " is a part of a cluster: it needs hub.cluster = true");
  if (!hub.standby && hub.role != "processors") {
    bad("hub.standby", "false is for hub.role = processors: a hub serving the API holds every partition");
  }
  if (config.privacy.visitor_retention_days < 0 || config.privacy.visitor_retention_days > 3650) {
    bad("privacy.visitor_retention_days", "must be 0..3650 (0: kept until forgotten)");
  }
  if (config.privacy.sweep_interval_s < 1) bad("privacy.sweep_interval_s", "must be at least 1");
  if (!config.notify.webhook_url.empty() && !config.notify.webhook_url.starts_with("http://")) {
    bad("notify.webhook_url", "must be an http:// URL (a gateway on the hub's network; TLS belongs to it)");
  }
  if (config.notify.webhook_attempts < 1 || config.notify.webhook_attempts > 20) bad("notify.webhook_attempts", "must be 1..20");
  // A gateway slower than a minute is down; a pause longer than an hour outlives the notification (max age).
  if (config.notify.webhook_timeout_ms < 100 || config.notify.webhook_timeout_ms > 60'000) {
    bad("notify.webhook_timeout_ms", "must be 100..60000");
  }
  if (config.notify.webhook_backoff_ms < 0 || config.notify.webhook_backoff_ms > 3'600'000) {
    bad("notify.webhook_backoff_ms", "must be 0..3600000");
  }
  return config;
}

namespace {

const std::set<std::string, std::less<>> kResponderRoles = {"grid_worker", "duty_manager", "security", "maintenance"};

// [defaults.dispatch]: chain = ["duty_manager", "security"], [.responder] rule = role,
// [.ack_target_s] severity = seconds.
void apply_dispatch(const toml::table& table, const std::string& where, processors::DispatchRules& d) {
  auto role = [&](const std::string& key, const toml::node& n) {
    auto name = n.value<std::string>();
    if (!name || !kResponderRoles.contains(*name)) bad(key, "is grid_worker, duty_manager, security or maintenance");
    return *name;
  };
  for (const auto& [k, v] : table) {
    const std::string key(k.str());
    if (key == "chain" && v.is_array()) {
      d.chain.clear();
      for (const auto& n : *v.as_array()) d.chain.push_back(role(where + ".chain", n));
    } else if (key == "responder" && v.is_table()) {
      for (const auto& [rule, n] : *v.as_table()) d.responder[std::string(rule.str())] = role(where + ".responder." + std::string(rule.str()), n);
    } else if (key == "ack_target_s" && v.is_table()) {
      for (const auto& [severity, n] : *v.as_table()) {
        const std::string name(severity.str()), at = where + ".ack_target_s." + name;
        if (name != "critical" && name != "major" && name != "minor" && name != "warning") bad(at, "is not a severity");
        const double seconds = n.is_number() ? *n.value<double>() : -1;
        if (!std::isfinite(seconds) || seconds < 0 || seconds > 86'400) {
          bad(at, "must be seconds, 0..86400 (0: no escalation)");  // nan and inf are TOML numbers too
        }
        d.ack_target_ms[name] = static_cast<std::int64_t>(seconds * 1000);
      }
    } else {
      bad(where + "." + key, "is not a dispatch setting (chain, responder, ack_target_s)");
    }
  }
}

void apply_rules(const toml::table& table, const std::string& where, processors::AlertRules& r) {
  auto number = [&](const std::string& key, const toml::node& n) {
    if (!n.is_number()) bad(where + "." + key, "must be a number");
    return *n.value<double>();
  };
  auto ms = [&](const std::string& key, const toml::node& n) { return static_cast<std::int64_t>(number(key, n) * 1000); };
  for (const auto& [k, v] : table) {
    std::string key(k.str());
    if (key == "fever_c") r.fever_c = number(key, v);
    else if (key == "spo2_critical_pct") r.spo2_critical_pct = number(key, v);
    else if (key == "low_battery_pct") r.low_battery_pct = number(key, v);
    else if (key == "low_battery_repeat_s") r.low_battery_repeat_ms = ms(key, v);
    else if (key == "fall_escalate_s") r.fall_escalate_ms = ms(key, v);
    else if (key == "critical_ack_timeout_s") r.critical_ack_timeout_ms = ms(key, v);
    else if (key == "flap_window_s") r.flap_window_ms = ms(key, v);
    else if (key == "door_open_limit_s") r.door_open_limit_ms = ms(key, v);
    else if (key == "offline_missed_heartbeats") r.offline_missed_heartbeats = static_cast<int>(number(key, v));
    else if (key == "inactivity_s") r.inactivity_ms = ms(key, v);
    else if (key == "spo2_major_pct") r.spo2_major_pct = number(key, v);
    else if (key == "spo2_sustain_s") r.spo2_sustain_ms = ms(key, v);
    else if (key == "heart_rate_limit_bpm") r.heart_rate_limit_bpm = number(key, v);
    else if (key == "heart_rate_sustain_s") r.heart_rate_sustain_ms = ms(key, v);
    else if (key == "watch_removed_s") r.watch_removed_ms = ms(key, v);
    else if (key == "spike_multiple") r.spike_multiple = number(key, v);
    else if (key == "hush_s") r.hush_ms = ms(key, v);
    else if (key == "repeated_denials") r.repeated_denials = static_cast<int>(number(key, v));
    else if (key == "repeated_denials_window_s") r.repeated_denials_window_ms = ms(key, v);
    else if (key == "spike_min_samples") r.spike_min_samples = static_cast<int>(number(key, v));
    else if (key == "tailgate_window_s") r.tailgate_window_ms = ms(key, v);
    else if (key == "snapshot_grace_s") r.snapshot_grace_ms = ms(key, v);
    else if (key == "plate_window_s") r.plate_window_ms = ms(key, v);
    else if (key == "plate_min_confidence") r.plate_min_confidence = number(key, v);
    else if (key == "dispatch" && v.is_table()) {
      apply_dispatch(*v.as_table(), where + ".dispatch", r.dispatch);
    } else if (key == "heartbeat_s" && v.is_table()) {
      for (const auto& [kind, interval] : *v.as_table()) {
        r.heartbeat_ms[std::string(kind.str())] = ms("heartbeat_s." + std::string(kind.str()), interval);
      }
    } else {
      bad(where + "." + key, "is not a rule setting");
    }
  }
}

}  // namespace

processors::RuleBook load_rules(const std::string& path) {
  processors::RuleBook book;
  toml::table table;
  try {
    table = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    throw std::runtime_error("rules file " + path + ": " + std::string(e.description()));
  }
  for (const auto& [k, v] : table) {
    if (k.str() != "defaults" && k.str() != "communities") bad(std::string(k.str()), "is not a section of " + path);
  }
  if (auto* defaults = table["defaults"].as_table()) apply_rules(*defaults, "defaults", book.defaults);
  if (auto* communities = table["communities"].as_table()) {
    for (const auto& [name, overrides] : *communities) {
      if (!overrides.is_table()) bad("communities." + std::string(name.str()), "must be a table");
      auto rules = book.defaults;  // a community starts from the defaults
      apply_rules(*overrides.as_table(), "communities." + std::string(name.str()), rules);
      book.communities[std::string(name.str())] = rules;
    }
  }
  return book;
}

ConsumerGroups consumer_groups(const Config& config) {
  const std::string& ingest = config.ingest.client_id;
  return {{ingest + "-registry", ingest + "-requests", ingest + "-commands"},
          {config.hub.group_id, config.vision.group_id, "courtyard-reader"},
          {"courtyard-replay", "courtyard-reader"}};
}

std::vector<std::pair<std::string, std::string>> config_keys() {
  Config c;
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& b : bindings(c)) out.emplace_back(b.key, env_name(b.key));
  return out;
}

}  // namespace courtyard::hub
