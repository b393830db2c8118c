#include "audit.h"

#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "processors/projector.h"
#include "replay/replay.h"

namespace courtyard::hub {

replay::RebuildConfig replay_config(const Config& config, const std::string& dir) {
  replay::RebuildConfig c;
  c.kafka = config.kafka;
  c.projector.topics = {config.kafka.events_topic, config.kafka.deadletter_topic};
  c.projector.rules = load_rules(config.hub.rules_file);
  c.projector.context.utc_offset_min = config.hub.utc_offset_minutes;
  c.max_batch = static_cast<std::size_t>(config.hub.max_batch);
  c.dir = dir;
  return c;
}

Auditor::Auditor(const Config& config, const processors::Store& store, LogWriter& writer)
    : config_(config), store_(store), writer_(writer), checkpoints_(config.var_path("hub/checkpoints")) {}

std::expected<std::string, std::string> Auditor::audit_once() {
  const auto at = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch()).count();
  nlohmann::json record{{"at", at}, {"hub", config_.hub.instance_id}};
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
  const std::string value = record.dump();
  auto published = writer_.publish(config_.kafka.audit_topic, fmt::format("{}/{:020}", config_.hub.instance_id, at), value,
                                   std::chrono::seconds(10));
  if (!published) return std::unexpected("audit record not published: " + published.error());

  std::error_code ec;
  std::filesystem::create_directories(checkpoints_, ec);
  if (auto ok = store_.checkpoint((checkpoints_ / fmt::format("{:020}", at)).string()); !ok) {
    spdlog::warn("audit: {}", ok.error());
  }
  std::vector<std::filesystem::path> kept;
  for (const auto& entry : std::filesystem::directory_iterator(checkpoints_, ec)) kept.push_back(entry.path());
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
