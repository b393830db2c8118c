#include "devices/provisioner.h"

#include <chrono>

#include <nlohmann/json.hpp>

#include "common/handles.h"
#include "common/random.h"

namespace courtyard::devices {
namespace {

using json = nlohmann::json;
constexpr const char* kControlTopic = "$CONTROL/dynamic-security/v1";
constexpr const char* kResponseTopic = "$CONTROL/dynamic-security/v1/response";

std::string role_of(const schemas::Registration& r) { return "device-" + r.device.str(); }

json device_role(const schemas::Registration& r) {
  auto acl = [](const char* type, const std::string& topic) {
    return json{{"acltype", type}, {"topic", topic}, {"allow", true}};
  };
  auto acls = json::array({acl("publishClientSend", schemas::topic_for(r.community, r.device, "telemetry")),
                           acl("subscribeLiteral", schemas::topic_for(r.community, r.device, "cmd")),
                           acl("subscribeLiteral", schemas::topic_for(r.community, r.device, "errors")),
                           acl("subscribeLiteral", "courtyard/v1/" + r.community.str() + "/notices")});
  if (r.kind == schemas::DeviceKind::Camera) {
    acls.push_back(acl("publishClientSend", snapshot_topic(r)));
  }
  return json{{"command", "createRole"},
              {"rolename", role_of(r)},
              {"textname", "Courtyard device " + r.device.str()},
              {"acls", acls}};
}

// Sends one dynamic-security request and returns the broker's per-command responses.
std::expected<json, std::string> control(MqttClient& admin, const json& commands) {
  auto sent = admin.publish_and_wait(kControlTopic, json{{"commands", commands}}.dump(), 1, std::chrono::seconds(10));
  if (!sent) return std::unexpected(sent.error());
  if (*sent >= 128) return std::unexpected("broker refused the dynamic-security request (reason " + std::to_string(*sent) + ")");
  auto reply = admin.next_message(std::chrono::seconds(10));
  if (!reply) return std::unexpected(std::string("no answer from the dynamic-security plugin"));
  auto j = json::parse(reply->payload, nullptr, false);
  if (j.is_discarded() || !j.contains("responses")) return std::unexpected("unexpected dynamic-security answer: " + reply->payload);
  return j["responses"];
}

std::string error_of(const json& response) {
  return response.contains("error") ? response["error"].get<std::string>() : std::string();
}

}  // namespace

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

std::expected<std::vector<std::string>, std::string> Provisioner::add(std::span<const NewDevice> devices) {
  for (const auto& d : devices) {
    if (!schemas::valid_id(d.registration.device.str())) {
      return std::unexpected("device id \"" + d.registration.device.str() + "\" must be 1..64 of [A-Za-z0-9_.-]");
    }
    if (!schemas::valid_id(d.registration.community.str())) {
      return std::unexpected("community id \"" + d.registration.community.str() + "\" must be 1..64 of [A-Za-z0-9_.-]");
    }
  }
  // 1. Registrations, durable before any credential exists.
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
  if (!producer) return std::unexpected(producer.error());
  for (const auto& d : devices) {
    std::string key = d.registration.device.str();
    std::string value = schemas::to_json_string(d.registration);
    auto err = rd_kafka_producev(producer->get(), RD_KAFKA_V_TOPIC(config_.kafka.registry_topic.c_str()),
                                 RD_KAFKA_V_KEY(key.data(), key.size()),
                                 RD_KAFKA_V_VALUE(value.data(), value.size()),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (err) return std::unexpected(std::string("registry produce: ") + rd_kafka_err2str(err));
  }
  rd_kafka_flush(producer->get(), 30000);
  if (delivery.done < devices.size()) return std::unexpected(std::string("registry: Kafka did not confirm in 30 s"));
  if (delivery.failed) return std::unexpected("registry: " + delivery.error);

  // 2. Broker credentials and the device's role.
  std::vector<std::string> passwords;
  for (const auto& d : devices) {
    const auto& r = d.registration;
    std::string password = d.password.empty() ? random_token() : d.password;
    auto responses = control(*admin_, json::array({device_role(r),
                                                   {{"command", "createClient"},
                                                    {"username", r.device.str()},
                                                    {"password", password},
                                                    {"textname", std::string(schemas::to_string(r.kind)) + " in " +
                                                                     r.community.str()},
                                                    {"roles", json::array({{{"rolename", role_of(r)}}})}}}));
    if (!responses) return std::unexpected(responses.error());
    std::string client_error = responses->size() > 1 ? error_of((*responses)[1]) : "no response";
    if (!client_error.empty()) {
      if (client_error.find("already exists") == std::string::npos) {
        return std::unexpected("creating MQTT client " + r.device.str() + ": " + client_error);
      }
      auto again = control(*admin_, json::array({{{"command", "setClientPassword"},
                                                  {"username", r.device.str()},
                                                  {"password", password}},
                                                 {{"command", "addClientRole"},
                                                  {"username", r.device.str()},
                                                  {"rolename", role_of(r)}}}));
      if (!again) return std::unexpected(again.error());
      if (auto e = error_of((*again)[0]); !e.empty()) {
        return std::unexpected("resetting MQTT client " + r.device.str() + ": " + e);
      }
    }
    passwords.push_back(std::move(password));
  }
  return passwords;
}

}  // namespace courtyard::devices
