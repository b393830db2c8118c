#include "people_cli.h"

#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <set>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "common/text.h"
#include "log_writer.h"
#include "people.h"
#include "processors/store.h"

namespace courtyard::hub {
namespace {

using json = nlohmann::json;

Vault open_vault(const Config& config) {
  auto vault = Vault::open(config.var_path(config.privacy.keys_dir), config.var_path(config.privacy.master_key_file),
                           /*make_master=*/false);
  if (!vault) throw std::runtime_error(vault.error());
  return std::move(*vault);
}

// Who runs the command, for the log: the operating system's user.
std::string cli_actor() {
  const char* user = std::getenv("USER");
  return std::string("cli:") + (user && *user ? user : std::to_string(::getuid()));
}

std::unique_ptr<processors::Store> live_store(const Config& config) {
  processors::StoreConfig sc;
  sc.dir = config.var_path("hub/state").string();
  sc.read_only = true;  // beside the running hub
  auto store = processors::Store::open(sc);
  if (!store) throw std::runtime_error(store.error());
  return std::move(*store);
}

void append(const Config& config, const std::string& community, schemas::Body body) {
  schemas::Event event;
  event.device = DeviceId("people");
  event.community = CommunityId(community);
  event.body = std::move(body);
  LogWriter writer(config.kafka);
  auto offset = writer.append(event, std::chrono::seconds(30));
  if (!offset) throw std::runtime_error("could not append to the log: " + offset.error());
}

}  // namespace

int run_people_add(const Config& config, const json& request) {
  auto person = person_request_from_json(request);
  if (!person) throw std::runtime_error(person.error());
  auto vault = open_vault(config);
  auto subject = vault.create_subject();
  if (!subject) throw std::runtime_error("the vault cannot make a key: " + subject.error().detail);
  auto sealed = vault.seal(person->community, *subject, person->fields);
  if (!sealed) throw std::runtime_error("the vault cannot seal: " + sealed.error().detail);
  append(config, person->community,
         schemas::PersonRecorded{*subject, person->kind, person->unit, std::move(*sealed), person->tokens});
  std::cout << "recorded " << schemas::to_string(person->kind) << " of " << person->community
            << (person->unit.empty() ? "" : "/" + person->unit) << "; subject id:\n"
            << *subject << "\n";
  return 0;
}

int run_people_forget(const Config& config, const std::string& community, const std::string& subject,
                      const std::string& reason) {
  if (!schemas::valid_id(community)) throw std::runtime_error("community must be 1..64 of [A-Za-z0-9_.-]");
  if (!valid_subject(subject)) throw std::runtime_error("a subject id is p- and 24 hex digits");
  if (reason.empty() || reason.size() > 200 || !valid_utf8(reason) ||
      std::any_of(reason.begin(), reason.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; })) {
    throw std::runtime_error("--reason is required: 1..200 bytes of text on one line (the person's request, ...; never a name)");
  }
  // The record, in this community: a subject id under another community's name forgets nobody
  // (and its key would be gone while the real record still looked unforgotten).
  if (!live_store(config)->view().get("people/" + community + "/" + subject)) {
    throw std::runtime_error("no person " + community + "/" + subject + " in the hub's store (recorded moments ago? try again)");
  }
  auto vault = open_vault(config);
  auto destroyed = vault.destroy(subject);
  if (!destroyed) throw std::runtime_error("the vault cannot destroy the key: " + destroyed.error().detail);
  append(config, community, schemas::PersonForgotten{subject, cli_actor(), reason});
  std::cout << "forgot " << community << "/" << subject << (*destroyed ? " (key destroyed now)" : " (key already gone)")
            << "\n";
  return 0;
}

int run_people_export(const Config& config, const std::string& community, const std::string& subject) {
  auto store = live_store(config);
  auto vault = open_vault(config);
  auto out = person_export(store->view(), vault, community, subject);
  if (!out) throw std::runtime_error("no person " + community + "/" + subject + " in the store");
  std::set<std::string> tokens;
  for (const auto& t : out->value("tokens", json::array())) tokens.insert(t.get<std::string>());
  json passes = json::array();
  if (!tokens.empty()) {
    auto read = read_to_end(config.kafka, config.kafka.events_topic, [&](const rd_kafka_message_t& m) {
      auto e = schemas::decode(std::string_view(static_cast<const char*>(m.payload), m.len));
      if (!e || e->community.str() != community) return;
      const auto* gate = std::get_if<schemas::GatePass>(&e->body);
      const auto* vehicle = std::get_if<schemas::VehiclePass>(&e->body);
      if ((gate && tokens.contains(gate->subject)) || (vehicle && tokens.contains(vehicle->plate))) {
        passes.push_back(schemas::to_json(*e));
      }
    });
    if (!read) throw std::runtime_error("reading the log: " + read.error());
  }
  (*out)["passes"] = std::move(passes);
  if (out->at("person").contains("fields")) {
    append(config, community,
           schemas::PersonalDataRead{cli_actor(), {subject},
                                     std::vector<std::string>(std::begin(kPersonalFieldNames), std::end(kPersonalFieldNames)),
                                     "export"});
  }
  std::cout << out->dump(-1, ' ', false, json::error_handler_t::replace) << "\n";  // one line: pipe it to jq
  return 0;
}

}  // namespace courtyard::hub
