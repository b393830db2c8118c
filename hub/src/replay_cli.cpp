#include "replay_cli.h"

#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <tuple>
#include <iostream>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/digest.h"
#include "common/kafka.h"
#include "common/mqtt.h"
#include "common/random.h"
#include "common/signing.h"
#include "common/text.h"
#include "audit.h"
#include "processors/record.h"
#include "replay/replay.h"
#include "schemas/event.h"

namespace courtyard::hub {
namespace {

using json = nlohmann::json;

void show_progress(const replay::Progress& p) {
  const double rate = p.seconds > 0 ? static_cast<double>(p.messages) / p.seconds : 0;
  const double eta = rate > 0 ? static_cast<double>(p.total - std::min(p.total, p.messages)) / rate : 0;
  std::fprintf(stderr, "\r%llu of %llu messages, %.0f/s, about %.0f s to go   ", static_cast<unsigned long long>(p.messages),
               static_cast<unsigned long long>(p.total), rate, eta);
}

// The auditor's replays check every chain, tick and dead letter with the deployment's chain key.
replay::RebuildConfig rebuild_config(const Config& config, const std::string& dir) {
  auto c = replay_config(config, dir);
  if (::isatty(STDERR_FILENO)) c.on_progress = show_progress;
  auto key = read_secret(config.var_path(config.ingest.chain_key_file).string());
  if (!key) throw std::runtime_error("the chain key (ingest.chain_key_file): " + key.error() + "; chains cannot be checked without it");
  c.chain_key = *key;
  return c;
}

// Another process's (or a finished rebuild's) store, to read. Throws when it cannot be opened.
std::unique_ptr<processors::Store> read_only_store(const std::string& dir) {
  processors::StoreConfig sc;
  sc.dir = dir;
  sc.read_only = true;
  auto store = processors::Store::open(sc);
  if (!store) throw std::runtime_error(store.error());
  return std::move(*store);
}

json offsets_json(const processors::Offsets& offsets) {
  json out = json::object();
  for (const auto& [tp, next] : offsets) out[tp.first][std::to_string(tp.second)] = next;
  return out;
}

json digests_json(const replay::Digests& digests) {
  json out = json::object();
  for (const auto& [name, d] : digests) out[name] = {{"records", d.records}, {"sha256", d.sha256}};
  return out;
}

json summary_json(const replay::RebuildSummary& s) {
  json chains = json::object();
  for (const auto& [community, h] : s.chains) {
    chains[community] = {{"seq", h.seq}, {"link", h.link}, {"events", h.events}, {"repeats", h.repeats}, {"unchained", h.unchained}};
  }
  json breaks = json::array();
  for (const auto& b : s.breaks) {
    breaks.push_back({{"community", b.community}, {"topic", b.topic}, {"partition", b.partition}, {"offset", b.offset},
                      {"seq", b.seq}, {"what", b.what}});
  }
  return {{"messages", s.messages}, {"applied", s.applied},   {"duplicates", s.duplicates},
          {"corrupt", s.corrupt}, {"quarantined", s.quarantined},   {"dead_letters", s.dead_letters}, {"seconds", s.seconds},
          {"messages_per_s", s.seconds > 0 ? static_cast<double>(s.messages) / s.seconds : 0},
          {"offsets", offsets_json(s.offsets)}, {"chains", chains}, {"chain_breaks", breaks}};
}

// Says each break on stderr; true when there were none.
bool report_breaks(const replay::RebuildSummary& s) {
  for (const auto& b : s.breaks) {
    std::cerr << fmt::format("chain break in {} at {}[{}]@{} (position {}): {}\n", b.community, b.topic, b.partition,
                             b.offset, b.seq, b.what);
  }
  std::uint64_t chained = 0;
  for (const auto& [_, h] : s.chains) chained += h.events;
  std::cerr << fmt::format("chains: {} communities, {} chained events, {} break(s)\n", s.chains.size(), chained,
                           s.breaks.size());
  return s.breaks.empty();
}

std::optional<processors::Offsets> parse_offsets(const std::string& spec) {
  processors::Offsets out;
  std::size_t at = 0;
  while (at < spec.size()) {
    auto comma = spec.find(',', at);
    auto item = spec.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    auto colon = item.rfind(':'), eq = item.find('=');
    if (colon == std::string::npos || eq == std::string::npos || eq < colon) return std::nullopt;
    try {
      out[{item.substr(0, colon), std::stoi(item.substr(colon + 1, eq - colon - 1))}] = std::stoll(item.substr(eq + 1));
    } catch (const std::exception&) {
      return std::nullopt;
    }
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return out;
}

}  // namespace

int run_replay_rebuild(const Config& config, const RebuildArgs& args) {
  auto c = rebuild_config(config, args.to);
  c.until_time_ms = args.until_time_ms;
  if (!args.until_offsets.empty()) {
    c.until_offsets = parse_offsets(args.until_offsets);
    if (!c.until_offsets) throw std::runtime_error("--until-offsets takes topic:partition=offset,...");
  }
  auto summary = replay::rebuild(c);
  if (::isatty(STDERR_FILENO)) std::fputc('\n', stderr);
  if (!summary) throw std::runtime_error(summary.error());
  auto store = read_only_store(args.to);
  auto out = summary_json(*summary);
  out["store"] = args.to;
  out["digests"] = digests_json(replay::digest(store->view()));
  std::cout << out.dump() << "\n";
  return report_breaks(*summary) ? 0 : 1;
}

int run_replay_verify(const Config& config, const std::string& work_dir, bool keep) {
  auto live = read_only_store(config.var_path("hub/state").string());
  auto live_view = live->view();
  processors::Offsets until;
  for (const auto& [tp, next] : live_view.offsets()) {
    if (tp.first == config.kafka.events_topic || tp.first == config.kafka.deadletter_topic) until[tp] = next;
  }
  const std::string dir = work_dir.empty() ? config.var_path("replay/verify-" + random_token(6)).string() : work_dir;
  auto c = rebuild_config(config, dir);
  c.until_offsets = until;
  c.only_named_partitions = true;
  auto summary = replay::rebuild(c);
  if (::isatty(STDERR_FILENO)) std::fputc('\n', stderr);
  if (!summary) throw std::runtime_error(summary.error());
  int status = report_breaks(*summary) ? 0 : 1;
  json out = summary_json(*summary);
  {
    processors::StoreConfig sc;
    sc.dir = dir;
    auto rebuilt = processors::Store::open(sc);
    if (!rebuilt) throw std::runtime_error(rebuilt.error());
    auto rebuilt_view = (*rebuilt)->view();
    auto live_digests = replay::digest(live_view), rebuilt_digests = replay::digest(rebuilt_view);
    json table = json::object();
    for (const auto& [name, d] : live_digests) {
      const auto& r = rebuilt_digests.at(name);
      table[name] = {{"records", d.records}, {"rebuilt_records", r.records}, {"sha256", d.sha256}, {"equal", d == r}};
      std::cerr << fmt::format("{:<12} {:>8} records  {}  {}\n", name, d.records, d.sha256.substr(0, 16),
                               d == r ? "equal" : fmt::format("DIFFERS (rebuilt: {} records, {})", r.records, r.sha256.substr(0, 16)));
    }
    out["digests"] = table;
    out["live_offsets"] = offsets_json(until);
    // What the devices' own sequence numbers say: data a device sent that never arrived (gaps)
    // and redeliveries recognised (duplicates). Not tampering, but an auditor wants to see them.
    json gaps = json::array();
    std::uint64_t duplicates = 0;
    std::string cursor;
    for (;;) {
      auto chunk = rebuilt_view.scan("devices/", cursor, 1024);
      if (chunk.empty()) break;
      for (const auto& [key, raw] : chunk) {
        cursor = key;
        auto d = processors::parse_record(raw);
        if (!d.is_object()) continue;
        duplicates += d.value("duplicates", std::uint64_t{0});
        if (auto g = d["seq"].value("gaps", std::uint64_t{0}); g > 0) gaps.push_back({{"device", key.substr(8)}, {"gaps", g}});
      }
    }
    out["device_seq_gaps"] = gaps;
    out["device_duplicates"] = duplicates;
    std::cerr << fmt::format("devices: {} with gaps in their sequence numbers, {} duplicate deliveries recognised\n",
                             gaps.size(), duplicates);
    if (auto diff = replay::first_difference(live_view, rebuilt_view)) {
      status = 1;
      std::cerr << "first difference: " << diff->key << "\n  live:    " << diff->left.value_or("(absent)")
                << "\n  rebuilt: " << diff->right.value_or("(absent)") << "\n  both as of the live store's offsets "
                << offsets_json(until).dump() << "\n";
      out["first_difference"] = {{"key", diff->key},
                                 {"live", diff->left ? json(*diff->left) : json(nullptr)},
                                 {"rebuilt", diff->right ? json(*diff->right) : json(nullptr)}};
    }
    out["equal"] = !out.contains("first_difference");
  }
  std::cout << out.dump() << "\n";
  if (!keep && work_dir.empty()) std::filesystem::remove_all(dir);
  return status;
}

int run_replay_audit(const Config& config, const std::string& hub_id, const std::string& public_key_file,
                     const std::string& work_dir) {
  std::ifstream key_in(public_key_file);
  const std::string public_key((std::istreambuf_iterator<char>(key_in)), std::istreambuf_iterator<char>());
  auto key_id = key_id_of(public_key);
  if (!key_id) throw std::runtime_error("public key " + public_key_file + ": " + key_id.error());
  std::cerr << "checking the audit records of " << hub_id << " with key " << *key_id << " (" << public_key_file << ")\n";
  auto trail = read_audit_trail(config.kafka, hub_id, public_key);
  if (!trail) throw std::runtime_error(trail.error());
  int status = trail->problems.empty() ? 0 : 1;
  for (const auto& problem : trail->problems) std::cerr << problem << "\n";
  const std::string dir = work_dir.empty() ? config.var_path("replay/audit-" + random_token(6)).string() : work_dir;
  json results = json::array();
  bool first = true;
  for (const auto& checked : trail->records) {
    const json& record = checked.body;  // signed by the hub: its fields are the hub's own
    auto c = rebuild_config(config, dir);
    c.resume = !first;
    first = false;
    processors::Offsets until;
    const json offsets = record.value("offsets", json::object()), projections = record.value("projections", json::object()),
               chains = record.value("chains", json::object());
    for (const auto& [topic, partitions] : offsets.items()) {
      for (const auto& [partition, next] : partitions.items()) until[{topic, std::stoi(partition)}] = next.get<std::int64_t>();
    }
    c.until_offsets = until;
    c.only_named_partitions = true;
    auto summary = replay::rebuild(c);
    if (!summary) throw std::runtime_error(summary.error());
    auto store = read_only_store(dir);
    std::vector<std::string> differing;
    for (const auto& [name, d] : replay::digest(store->view())) {
      const auto published = projections.value(name, json::object());
      if (published.value("sha256", "") != d.sha256) differing.push_back("projection " + name);
    }
    for (const auto& [community, head] : chains.items()) {
      auto it = summary->chains.find(community);
      if (it == summary->chains.end() || it->second.seq != head.value("seq", std::uint64_t{0}) ||
          it->second.link != head.value("link", "")) {
        differing.push_back("chain of " + community);
      }
    }
    const bool ok = differing.empty() && summary->breaks.empty();
    if (!ok) status = 1;
    report_breaks(*summary);
    std::string what;
    for (const auto& d : differing) what += (what.empty() ? "" : ", ") + d;
    std::cerr << fmt::format("audit record {} of {} at {}: {}\n", checked.seq, hub_id, record.value("at", std::int64_t{0}),
                             ok ? "the log replays to it exactly" : "DIFFERS: " + what);
    results.push_back({{"seq", checked.seq}, {"at", record.value("at", std::int64_t{0})}, {"equal", ok},
                       {"differing", differing}, {"chain_breaks", summary->breaks.size()}});
  }
  if (work_dir.empty()) std::filesystem::remove_all(dir);
  std::cout << json{{"hub", hub_id}, {"key_id", *key_id}, {"records", results.size()}, {"results", results},
                    {"problems", trail->problems}, {"equal", status == 0}}
                   .dump(-1, ' ', false, json::error_handler_t::replace)
            << "\n";
  if (trail->records.empty()) {
    std::cerr << "no audit records of " << hub_id << " in " << config.kafka.audit_topic << "\n";
    return 1;
  }
  return status;
}

int run_replay_as_of(const Config& config, std::int64_t time_ms, const std::string& prefix, const std::string& key,
                     const std::string& work_dir) {
  const std::string dir = work_dir.empty() ? config.var_path("replay/as-of-" + random_token(6)).string() : work_dir;
  auto result = replay::build_as_of(rebuild_config(config, dir), config.var_path("hub/checkpoints").string(), time_ms);
  if (::isatty(STDERR_FILENO)) std::fputc('\n', stderr);
  if (!result) throw std::runtime_error(result.error());
  std::size_t records = 0;
  {
    auto store = read_only_store(dir);
    auto view = store->view();
    auto print = [&](const std::string& k, const std::string& raw) {
      if (!processors::Projector::is_projection_key(k)) return;
      std::cout << json{{"key", k}, {"value", json::parse(processors::Projector::served_record(view, k, raw))}}.dump() << "\n";
      ++records;
    };
    if (!key.empty()) {
      if (auto raw = view.get(key)) print(key, *raw);
    } else {
      std::string cursor;
      for (;;) {
        auto chunk = view.scan(prefix, cursor, 1024);
        if (chunk.empty()) break;
        for (const auto& [k, raw] : chunk) print(k, raw);
        cursor = chunk.back().first;
      }
    }
  }
  report_breaks(result->summary);
  auto out = summary_json(result->summary);
  out["as_of_time"] = time_ms;
  out["checkpoint"] = result->checkpoint_ms ? json(*result->checkpoint_ms) : json(nullptr);
  out["records"] = records;
  std::cout << out.dump() << "\n";
  if (work_dir.empty()) std::filesystem::remove_all(dir);
  return 0;
}

namespace {

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

// Whether an event concerns the subject of the inquiry.
bool concerns(const schemas::Event& e, const ExportArgs& a) {
  if (!a.community.empty()) return e.community.str() == a.community;
  if (!a.device.empty()) {
    if (e.device.str() == a.device) return true;
    if (const auto* c = std::get_if<schemas::Command>(&e.body)) return c->target.str() == a.device;
    return false;
  }
  if (const auto* p = std::get_if<schemas::GatePass>(&e.body)) return p->subject == a.subject;
  if (const auto* v = std::get_if<schemas::VehiclePass>(&e.body)) return v->plate == a.subject;
  if (const auto* r = std::get_if<schemas::RegistryEntry>(&e.body)) return r->id == a.subject;
  return false;
}

}  // namespace

int run_replay_export(const Config& config, const ExportArgs& a) {
  const int chosen = !a.device.empty() + !a.subject.empty() + !a.community.empty();
  if (chosen != 1) throw std::runtime_error("export takes exactly one of --device, --subject, --community");
  if (a.format != "jsonl" && a.format != "csv") throw std::runtime_error("--format is jsonl or csv");
  auto in_range = [&](std::int64_t t) { return (!a.from_ms || t >= *a.from_ms) && (!a.to_ms || t <= *a.to_ms); };
  const bool csv = a.format == "csv";
  if (csv) std::cout << "kind,time,community,device,type,partition,offset,detail\n";
  auto emit = [&](const char* kind, std::int64_t time, const std::string& community, const std::string& device,
                  const std::string& type, std::int32_t partition, std::int64_t offset, const json& detail) {
    if (csv) {
      std::cout << kind << ',' << time << ',' << csv_field(community) << ',' << csv_field(device) << ',' << csv_field(type)
                << ',' << partition << ',' << offset << ',' << csv_field(detail.dump(-1, ' ', false, json::error_handler_t::replace)) << '\n';
    } else {
      std::cout << json{{"kind", kind}, {"time", time}, {"partition", partition}, {"offset", offset}, {"record", detail}}.dump(-1, ' ', false, json::error_handler_t::replace)
                << '\n';
    }
  };
  std::uint64_t events = 0, refused = 0, alerts = 0;
  auto read_events = read_to_end(config.kafka, config.kafka.events_topic, [&](const rd_kafka_message_t& m) {
    auto e = schemas::decode(std::string_view(static_cast<const char*>(m.payload), m.len));
    if (!e || e->community.empty() || !concerns(*e, a) || !in_range(e->ingest_time_ms)) return;
    ++events;
    emit("event", e->ingest_time_ms, e->community.str(), e->device.str(), std::string(schemas::type_name(e->body)),
         m.partition, m.offset, schemas::to_json(*e));
  });
  if (!read_events) throw std::runtime_error(read_events.error());
  if (!a.device.empty() || !a.community.empty()) {
    auto read_refused = read_to_end(config.kafka, config.kafka.deadletter_topic, [&](const rd_kafka_message_t& m) {
      // Headers are records from Kafka: read as text, never trusted to be.
      json headers = json::object();
      for (auto& [name, value] : message_headers(m)) headers[printable(name, 64)] = printable(value, 1024);
      const std::string device = headers.value("device", ""), community = headers.value("community", "");
      std::int64_t at = 0;
      const std::string received = headers.value("received_at", "0");
      std::from_chars(received.data(), received.data() + received.size(), at);
      if ((!a.device.empty() && device != a.device) || (!a.community.empty() && community != a.community) || !in_range(at)) return;
      ++refused;
      // The refused bytes as they came: not necessarily text.
      headers["payload_base64"] = base64(std::string_view(static_cast<const char*>(m.payload), m.len));
      emit("refused", at, community, device, headers.value("reason", ""), m.partition, m.offset, headers);
    });
    if (!read_refused) throw std::runtime_error(read_refused.error());
  }
  // The alerts topic carries every change of an alert; an inquiry wants each one's last word.
  std::map<std::string, std::tuple<json, std::int32_t, std::int64_t>> latest;
  auto read_alerts = read_to_end(config.kafka, config.kafka.alerts_topic, [&](const rd_kafka_message_t& m) {
    auto alert = json::parse(std::string_view(static_cast<const char*>(m.payload), m.len), nullptr, false);
    if (!alert.is_object()) return;
    for (const char* field : {"community", "device", "subject", "id", "rule"}) {
      if (alert.contains(field) && !alert[field].is_string()) return;  // not an alert record the hub wrote
    }
    if (!alert.contains("updated_at") || !alert["updated_at"].is_number_integer() ||
        !in_range(alert["updated_at"].get<std::int64_t>())) {
      return;
    }
    const bool match = !a.community.empty() ? alert.value("community", "") == a.community
                       : !a.device.empty()  ? alert.value("device", "") == a.device
                                            : alert.value("subject", "") == a.subject;
    if (match) latest[alert.value("id", "")] = {alert, m.partition, m.offset};
  });
  if (!read_alerts) throw std::runtime_error(read_alerts.error());
  for (const auto& [id, entry] : latest) {
    const auto& [alert, partition, offset] = entry;
    ++alerts;
    emit("alert", alert.value("updated_at", std::int64_t{0}), alert.value("community", ""), alert.value("device", ""),
         alert.value("rule", ""), partition, offset, alert);
  }
  std::cout.flush();  // the records first, then the summary (both may go to one file)
  std::cerr << json{{"events", events}, {"refused", refused}, {"alerts", alerts}, {"format", a.format}}.dump() << "\n";
  return 0;
}

int run_replay_digest(const std::string& store_dir) {
  auto store = read_only_store(store_dir);
  auto view = store->view();
  std::cout << json{{"store", store_dir}, {"offsets", offsets_json(view.offsets())}, {"digests", digests_json(replay::digest(view))}}.dump()
            << "\n";
  return 0;
}

}  // namespace courtyard::hub
