#include "devices/provisioner.h"

#include <chrono>

#include <nlohmann/json.hpp>

#include "common/handles.h"
#include "common/random.h"

namespace courtyard::devices {
namespace {

using json = nlohmann::json;
using Code = ProvisionError::Code;
constexpr const char* kControlTopic = "$CONTROL/dynamic-security/v1";
constexpr const char* kResponseTopic = "$CONTROL/dynamic-security/v1/response";
constexpr std::size_t kChunk = 50;  // devices per dynamic-security request

std::string role_of(const schemas::Registration& r) { return "device-" + r.device.str(); }

std::string notices_topic(const schemas::Registration& r) { return "courtyard/v1/" + r.community.str() + "/notices"; }

json device_role(const schemas::Registration& r) {
  auto acl = [](const char* type, const std::string& topic) {
    return json{{"acltype", type}, {"topic", topic}, {"allow", true}};
  };
  auto acls = json::array({acl("publishClientSend", telemetry_topic(r))});
  if (r.kind == schemas::DeviceKind::Camera) acls.push_back(acl("publishClientSend", snapshot_topic(r)));
  // Delivery is denied by default: a device receives exactly what it may subscribe to.
  std::vector<std::string> inbox = {schemas::topic_for(r.community, r.device, "cmd"),
                                    schemas::topic_for(r.community, r.device, "errors"), notices_topic(r)};
  if (!r.unit.empty()) inbox.push_back(notices_topic(r) + "/" + r.unit);
  for (const auto& topic : inbox) {
    acls.push_back(acl("subscribeLiteral", topic));
    acls.push_back(acl("publishClientReceive", topic));
  }
  return json{{"command", "createRole"},
              {"rolename", role_of(r)},
              {"textname", "Courtyard device " + r.device.str()},
              {"acls", acls}};
}

ProvisionError unavailable(std::string detail) { return {Code::Unavailable, std::move(detail)}; }

// Sends one dynamic-security request; the broker's responses, one per command, in order. The
// plugin answers every client on one topic: each command carries a correlation id of this
// request, and only the answer that carries them all is ours (another provisioner's is skipped).
std::expected<json, ProvisionError> control(MqttClient& admin, json commands) {
  const std::string request = random_token(12);
  for (std::size_t i = 0; i < commands.size(); ++i) commands[i]["correlationData"] = request + "-" + std::to_string(i);
  auto sent = admin.publish_and_wait(kControlTopic, json{{"commands", commands}}.dump(), 1, std::chrono::seconds(10));
  if (!sent) return std::unexpected(unavailable(sent.error()));
  if (*sent >= 128) {
    return std::unexpected(unavailable("broker refused the dynamic-security request (reason " + std::to_string(*sent) + ")"));
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    auto reply = left.count() > 0 ? admin.next_message(left) : std::nullopt;
    if (!reply) return std::unexpected(unavailable("no answer from the dynamic-security plugin"));
    auto j = json::parse(reply->payload, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("responses") || !j["responses"].is_array() ||
        j["responses"].size() != commands.size()) {
      continue;  // not an answer to this request
    }
    bool ours = true;
    for (std::size_t i = 0; i < commands.size() && ours; ++i) {
      const auto& r = j["responses"][i];
      ours = r.is_object() && r.contains("correlationData") && r["correlationData"].is_string() &&
             r["correlationData"].get<std::string>() == request + "-" + std::to_string(i);
    }
    if (ours) return j["responses"];
  }
}

std::string error_of(const json& response) {
  auto it = response.find("error");
  return it != response.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The community a device's role lets it publish for: courtyard/v1/{community}/{device}/telemetry.
std::optional<std::string> community_of_role(const json& role, const std::string& device) {
  if (!role.contains("acls") || !role["acls"].is_array()) return std::nullopt;
  for (const auto& a : role["acls"]) {
    if (a.value("acltype", "") != "publishClientSend") continue;
    auto topic = schemas::parse_topic(a.value("topic", ""));
    if (topic && topic->device.str() == device && topic->channel == "telemetry") return topic->community.str();
  }
  return std::nullopt;
}

}  // namespace

bool reserved_device_id(std::string_view id) {
  return id == "courtyard" || id.starts_with("courtyard-") || id.starts_with("_") || id == "admin" ||
         id == "operator" || id == "registry";
}

std::string telemetry_topic(const schemas::Registration& r) {
  return schemas::topic_for(r.community, r.device, "telemetry");
}

std::string snapshot_topic(const schemas::Registration& r) { return schemas::topic_for(r.community, r.device, "snapshot"); }

Provisioner::Provisioner(ProvisionerConfig config) : config_(std::move(config)) {}
Provisioner::~Provisioner() = default;

std::expected<std::unique_ptr<Provisioner>, std::string> Provisioner::connect(const ProvisionerConfig& config) {
  std::unique_ptr<Provisioner> p(new Provisioner(config));
  MqttClient::Options options;
  options.username = config.mqtt.username;
  options.password = config.mqtt_password;
  auto admin = MqttClient::connect(config.mqtt.host, config.mqtt.port, options, std::chrono::seconds(10));
  if (!admin) return std::unexpected(admin.error());
  p->admin_ = std::move(*admin);
  if (auto ok = p->admin_->subscribe(kResponseTopic, 1, std::chrono::seconds(10)); !ok) {
    return std::unexpected(ok.error());
  }
  return p;
}

std::expected<std::vector<std::string>, ProvisionError> Provisioner::add(std::span<const NewDevice> devices,
                                                                         IfExists if_exists) {
  for (const auto& d : devices) {
    const auto& id = d.registration.device.str();
    if (!schemas::valid_id(id)) return std::unexpected(ProvisionError{Code::Invalid, "device id must be 1..64 of [A-Za-z0-9_.-]"});
    if (!schemas::valid_id(d.registration.community.str())) {
      return std::unexpected(ProvisionError{Code::Invalid, "community id must be 1..64 of [A-Za-z0-9_.-]"});
    }
    if (!d.registration.unit.empty() && !schemas::valid_id(d.registration.unit)) {
      return std::unexpected(ProvisionError{Code::Invalid, "unit must be 1..64 of [A-Za-z0-9_.-]"});
    }
    if (reserved_device_id(id)) {
      return std::unexpected(ProvisionError{Code::Reserved, "\"" + id + "\" is reserved for Courtyard's own accounts"});
    }
  }
  // 1. Who exists already. Existing clients are conflicts, or (Rotate) must be devices of the
  //    same community: never a service account, never another community's device.
  std::vector<bool> exists(devices.size(), false);
  for (std::size_t first = 0; first < devices.size(); first += kChunk) {
    const std::size_t n = std::min(kChunk, devices.size() - first);
    json ask = json::array();
    for (std::size_t i = first; i < first + n; ++i) {
      ask.push_back({{"command", "getClient"}, {"username", devices[i].registration.device.str()}});
      ask.push_back({{"command", "getRole"}, {"rolename", role_of(devices[i].registration)}});
    }
    auto responses = control(*admin_, ask);
    if (!responses) return std::unexpected(responses.error());
    for (std::size_t k = 0; k < n; ++k) {
      const auto& r = devices[first + k].registration;
      const auto& client = (*responses)[2 * k];
      const auto& role = (*responses)[2 * k + 1];
      if (const auto e = error_of(client); e == "Client not found") continue;  // a new id
      else if (!e.empty()) return std::unexpected(unavailable("looking up MQTT client " + r.device.str() + ": " + e));
      exists[first + k] = true;
      if (if_exists == IfExists::Refuse) {
        return std::unexpected(ProvisionError{Code::Conflict, "device " + r.device.str() + " exists; its credentials are rotated on request only"});
      }
      const json c = client.value("data", json::object()).value("client", json::object());
      const json roles = c.value("roles", json::array()), groups = c.value("groups", json::array());
      const bool only_its_role = roles.is_array() && roles.size() == 1 && roles[0].is_object() &&
                                 roles[0].value("rolename", "") == role_of(r) && groups.empty();
      auto community = error_of(role).empty()
                           ? community_of_role(role.value("data", json::object()).value("role", json::object()), r.device.str())
                           : std::nullopt;
      if (!only_its_role || !community) {
        return std::unexpected(ProvisionError{Code::Conflict, r.device.str() + " is not a device; it is never changed here"});
      }
      if (*community != r.community.str()) {
        return std::unexpected(ProvisionError{Code::Conflict, "device " + r.device.str() + " belongs to another community"});
      }
    }
  }
  std::vector<std::string> passwords;
  for (const auto& d : devices) passwords.push_back(d.password.empty() ? random_token() : d.password);

  // 2. Claim the new ids: a client bound to its own client id, with no role, so no one else can
  //    have it and it can do nothing yet.
  std::vector<std::string> created;
  auto roll_back = [&] {
    json undo = json::array();
    for (const auto& u : created) undo.push_back({{"command", "deleteClient"}, {"username", u}});
    if (!undo.empty()) (void)control(*admin_, undo);
  };
  for (std::size_t first = 0; first < devices.size(); first += kChunk) {
    json ask = json::array();
    std::vector<std::size_t> asked;
    for (std::size_t i = first; i < std::min(first + kChunk, devices.size()); ++i) {
      if (exists[i]) continue;
      const auto& r = devices[i].registration;
      ask.push_back({{"command", "createClient"},
                     {"username", r.device.str()},
                     {"clientid", r.device.str()},
                     {"password", passwords[i]},
                     {"textname", std::string(schemas::to_string(r.kind)) + " in " + r.community.str()}});
      asked.push_back(i);
    }
    if (ask.empty()) continue;
    auto responses = control(*admin_, ask);
    if (!responses) {
      roll_back();
      return std::unexpected(responses.error());
    }
    std::optional<ProvisionError> failed;
    for (std::size_t k = 0; k < asked.size(); ++k) {
      const std::string& id = devices[asked[k]].registration.device.str();
      auto e = error_of((*responses)[k]);
      if (e.empty()) {
        created.push_back(id);
      } else if (!failed) {
        failed = e.find("already exists") != std::string::npos
                     ? ProvisionError{Code::Conflict, "device " + id + " exists"}
                     : unavailable("creating MQTT client " + id + ": " + e);
      }
    }
    if (failed) {
      roll_back();
      return std::unexpected(*failed);
    }
  }

  // 3. Registrations, durable before any device can send.
  struct Delivery {
    std::size_t done = 0, failed = 0;
    std::string error;
  } delivery;
  auto on_delivery = [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* d = static_cast<Delivery*>(opaque);
    ++d->done;
    if (m->err) {
      ++d->failed;
      d->error = rd_kafka_err2str(m->err);
    }
  };
  auto producer = make_producer(config_.kafka, {{"enable.idempotence", "true"}, {"acks", "all"}}, on_delivery, &delivery);
  if (!producer) {
    roll_back();
    return std::unexpected(unavailable(producer.error()));
  }
  for (const auto& d : devices) {
    std::string key = d.registration.device.str();
    std::string value = schemas::to_json_string(d.registration);
    auto err = rd_kafka_producev(producer->get(), RD_KAFKA_V_TOPIC(config_.kafka.registry_topic.c_str()),
                                 RD_KAFKA_V_KEY(key.data(), key.size()),
                                 RD_KAFKA_V_VALUE(value.data(), value.size()),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (err) {
      roll_back();
      return std::unexpected(unavailable(std::string("registry produce: ") + rd_kafka_err2str(err)));
    }
  }
  rd_kafka_flush(producer->get(), 30000);
  if (delivery.done < devices.size() || delivery.failed) {
    roll_back();
    return std::unexpected(unavailable(delivery.failed ? "registry: " + delivery.error : "registry: Kafka did not confirm in 30 s"));
  }

  // 4. Roles (afresh for a rotated device), and new passwords for rotated ones.
  for (std::size_t first = 0; first < devices.size(); first += kChunk) {
    json ask = json::array();
    std::vector<std::pair<std::string, bool>> expect;  // command's device, whether "Role not found" is fine
    for (std::size_t i = first; i < std::min(first + kChunk, devices.size()); ++i) {
      const auto& r = devices[i].registration;
      const std::string id = r.device.str();
      ask.push_back({{"command", "deleteRole"}, {"rolename", role_of(r)}});
      expect.emplace_back(id, true);
      ask.push_back(device_role(r));
      expect.emplace_back(id, false);
      ask.push_back({{"command", "addClientRole"}, {"username", id}, {"rolename", role_of(r)}});
      expect.emplace_back(id, false);
      if (exists[i]) {
        ask.push_back({{"command", "modifyClient"}, {"username", id}, {"clientid", id}, {"password", passwords[i]}});
        expect.emplace_back(id, false);
      }
    }
    auto responses = control(*admin_, ask);
    if (!responses) return std::unexpected(responses.error());
    for (std::size_t k = 0; k < expect.size(); ++k) {
      auto e = error_of((*responses)[k]);
      if (e.empty() || (expect[k].second && e == "Role not found")) continue;
      return std::unexpected(unavailable("setting up MQTT client " + expect[k].first + ": " + e));
    }
  }
  return passwords;
}

}  // namespace courtyard::devices
