#include "audit.h"

#include <fstream>
#include <map>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/digest.h"
#include "common/kafka.h"
#include "common/text.h"
#include "processors/projector.h"
#include "replay/replay.h"

namespace courtyard::hub {

replay::RebuildConfig replay_config(const Config& config, const std::string& dir) {
  replay::RebuildConfig c;
  c.kafka = config.kafka;
  c.projector.topics = {config.kafka.events_topic, config.kafka.deadletter_topic};
  c.projector.rules = load_rules(config.hub.rules_file);
  c.projector.context.utc_offset_min = config.hub.utc_offset_minutes;
  c.projector.notify_webhook = !config.notify.webhook_url.empty();  // a rebuilt store still knows what to send
  c.max_batch = static_cast<std::size_t>(config.hub.max_batch);
  c.fold_lanes = static_cast<std::size_t>(std::max<std::int64_t>(0, config.hub.fold_lanes));
  c.dir = dir;
  return c;
}

namespace {

Signer open_signer(const Config& config) {
  auto signer = Signer::open_or_create(config.var_path(config.hub.audit_key_file).string());
  if (!signer) throw std::runtime_error("audit signing key: " + signer.error());
  // The public half, for auditors (they should also keep its key id from the day the hub was set up).
  const auto pub = config.var_path("hub/audit-key.pub");
  std::error_code ec;
  std::filesystem::create_directories(pub.parent_path(), ec);
  std::ofstream(pub, std::ios::trunc) << signer->public_key_pem();
  return std::move(*signer);
}

std::string text_of(const nlohmann::json& j, const char* field) {
  auto it = j.find(field);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

std::expected<AuditTrail, std::string> read_audit_trail(const KafkaConfig& kafka, const std::string& hub_id,
                                                        const std::string& public_key_pem) {
  AuditTrail trail;
  std::map<std::uint64_t, AuditRecord> by_seq;
  const std::string key_prefix = hub_id + "/";
  auto read = read_to_end(kafka, kafka.audit_topic, [&](const rd_kafka_message_t& m) {
    const std::string key = m.key ? std::string(static_cast<const char*>(m.key), m.key_len) : std::string();
    const std::string where = fmt::format("audit record at offset {} (key {})", m.offset, printable(key, 80));
    if (!m.payload) {  // a tombstone: someone deleted a record of this hub
      if (key.starts_with(key_prefix)) trail.problems.push_back(where + ": deleted (tombstone)");
      return;
    }
    auto envelope = nlohmann::json::parse(std::string_view(static_cast<const char*>(m.payload), m.len), nullptr, false);
    const std::string payload = envelope.is_object() ? text_of(envelope, "payload") : std::string();
    auto body = nlohmann::json::parse(payload, nullptr, false);
    // Only records that claim to be this hub's are checked (others are other hubs').
    const bool claims_hub = body.is_object() ? text_of(body, "hub") == hub_id : key.starts_with(key_prefix);
    if (!claims_hub) return;
    if (!body.is_object()) {
      trail.problems.push_back(where + ": not a signed audit record");
      return;
    }
    if (auto ok = verify_signature(public_key_pem, payload, text_of(envelope, "signature")); !ok) {
      trail.problems.push_back(where + ": FORGED: " + ok.error());
      return;
    }
    auto seq = body.find("seq");
    if (seq == body.end() || !seq->is_number_unsigned() || seq->get<std::uint64_t>() == 0) {
      trail.problems.push_back(where + ": signed but without a record number");
      return;
    }
    AuditRecord r{m.offset, seq->get<std::uint64_t>(), text_of(body, "prev"), sha256_hex(payload), body};
    if (by_seq.contains(r.seq)) {
      trail.problems.push_back(fmt::format("{}: record {} appears twice", where, r.seq));
      return;
    }
    by_seq.emplace(r.seq, std::move(r));
  });
  if (!read) return std::unexpected(read.error());
  std::uint64_t expected = 1;
  std::string prev;
  for (auto& [seq, r] : by_seq) {
    if (seq != expected) trail.problems.push_back(fmt::format("audit records {}..{} of {} are MISSING", expected, seq - 1, hub_id));
    else if (r.prev != prev) trail.problems.push_back(fmt::format("audit record {} (offset {}) does not follow record {}", seq, r.offset, seq - 1));
    expected = seq + 1;
    prev = r.payload_sha256;
    trail.records.push_back(std::move(r));
  }
  return trail;
}

Auditor::Auditor(const Config& config, const processors::Store& store, LogWriter& writer)
    : config_(config),
      store_(store),
      writer_(writer),
      checkpoints_(config.var_path("hub/checkpoints")),
      signer_(open_signer(config)) {
  // Continue this hub's chain of records where the topic has it.
  auto trail = read_audit_trail(config.kafka, config.hub.instance_id, signer_.public_key_pem());
  if (!trail) throw std::runtime_error("audit topic: " + trail.error());
  for (const auto& problem : trail->problems) spdlog::warn("audit trail: {}", problem);
  if (!trail->records.empty()) {
    seq_ = trail->records.back().seq;
    prev_ = trail->records.back().payload_sha256;
  }
}

std::expected<std::string, std::string> Auditor::audit_once() {
  const auto at = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch()).count();
  nlohmann::json record{{"at", at}, {"hub", config_.hub.instance_id}, {"seq", seq_ + 1}, {"prev", prev_},
                        {"key_id", signer_.key_id()}};
  {
    auto view = store_.view();  // one snapshot: offsets, digests and chain heads agree
    nlohmann::json offsets = nlohmann::json::object();
    for (const auto& [tp, next] : view.offsets()) offsets[tp.first][std::to_string(tp.second)] = next;
    nlohmann::json projections = nlohmann::json::object();
    for (const auto& [name, d] : replay::digest(view)) projections[name] = {{"records", d.records}, {"sha256", d.sha256}};
    nlohmann::json chains = nlohmann::json::object();
    const std::string prefix = processors::Projector::kChainHeadPrefix;
    for (const auto& [key, raw] : view.scan(prefix, "", std::numeric_limits<std::size_t>::max())) {
      chains[key.substr(prefix.size())] = nlohmann::json::parse(raw);
    }
    record["offsets"] = std::move(offsets);
    record["projections"] = std::move(projections);
    record["chains"] = std::move(chains);
  }
  const std::string payload = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  const std::string value =
      nlohmann::json{{"payload", payload}, {"signature", signer_.sign(payload)}, {"key_id", signer_.key_id()}}.dump();
  auto published = writer_.publish(config_.kafka.audit_topic, fmt::format("{}/{:020}", config_.hub.instance_id, at), value,
                                   std::chrono::seconds(10));
  if (!published) return std::unexpected("audit record not published: " + published.error());
  ++seq_;
  prev_ = sha256_hex(payload);

  // The checkpoint for as-of queries is of the live store, which folded on since `at`: it is named
  // by when it was complete. Every record folded into it was in Kafka before then, so an as-of
  // query for that time or later may start from it; named earlier, a query between the two times
  // would show events from after its time. Taken under a name as-of ignores, then renamed.
  std::error_code ec;
  std::filesystem::create_directories(checkpoints_, ec);
  const auto taking = checkpoints_ / fmt::format("{:020}.taking", at);
  std::filesystem::remove_all(taking, ec);
  if (auto ok = store_.checkpoint(taking.string()); !ok) {
    spdlog::warn("audit: {}", ok.error());
  } else {
    const auto taken = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch()).count();
    std::filesystem::rename(taking, checkpoints_ / fmt::format("{:020}", taken), ec);
    if (ec) spdlog::warn("audit: naming checkpoint {}: {}", taking.string(), ec.message());
  }
  std::vector<std::filesystem::path> kept;
  for (const auto& entry : std::filesystem::directory_iterator(checkpoints_, ec)) {
    const auto name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") == std::string::npos) kept.push_back(entry.path());
    else if (entry.path() != taking) std::filesystem::remove_all(entry.path(), ec);  // a crash's leftover
  }
  std::sort(kept.begin(), kept.end());
  for (std::size_t i = 0; i + static_cast<std::size_t>(config_.hub.checkpoints_keep) < kept.size(); ++i) {
    std::filesystem::remove_all(kept[i], ec);
  }
  return value;
}

void Auditor::run(std::stop_token stop) {
  const auto interval = std::chrono::seconds(config_.hub.audit_interval_s);
  auto next = std::chrono::steady_clock::now() + interval;
  while (!stop.stop_requested()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (std::chrono::steady_clock::now() < next) continue;
    next += interval;
    if (auto ok = audit_once(); !ok) spdlog::warn("audit: {}", ok.error());
  }
}

}  // namespace courtyard::hub
