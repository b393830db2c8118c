// bench/replay: how fast an auditor's rebuild folds the log, against the raw consume rate of the
// same topics on the same machine (a consumer that only counts what it reads).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "common/handles.h"
#include "common/kafka.h"
#include "common/mqtt.h"
#include "hub/config.h"
#include "log_file.h"
#include "options.h"
#include "processors/runner.h"
#include "replay/replay.h"

using namespace courtyard;
using Clock = std::chrono::steady_clock;

namespace {

struct Raw {
  std::uint64_t messages = 0, bytes = 0;
  double seconds = 0;
};

// Every message of the events and dead-letter topics, start to end, counted and nothing else.
Raw raw_consume(const KafkaConfig& kafka) {
  Raw raw;
  auto start = Clock::now();
  for (const auto& topic : {kafka.events_topic, kafka.deadletter_topic}) {
    auto ok = read_to_end(kafka, topic, [&](const rd_kafka_message_t& m) {
      ++raw.messages;
      raw.bytes += m.len;
    }, std::chrono::minutes(10));
    if (!ok) throw std::runtime_error(ok.error());
  }
  raw.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return raw;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = "build/bench-services/replay", rules = "config/rules.toml";
  int kafka_port = 9092;
  std::string password_file, save_log, chain_key_file;
  CLI::App app{"bench_replay: rebuild speed against the raw consume rate (run through bench/replay)"};
  app.add_option("--kafka-port", kafka_port, "Kafka");
  app.add_option("--password-file", password_file, "the MQTT service password's file (Kafka's are beside it)")->required();
  app.add_option("--dir", dir, "where to rebuild (removed after)");
  app.add_option("--rules", rules, "the alert rules the hub uses");
  app.add_option("--save-log", save_log, "also keep the log in this file, for bench/fold");
  app.add_option("--chain-key-file", chain_key_file, "ingest's chain key: also time a rebuild that checks every chain link");
  CLI11_PARSE(app, argc, argv);
  try {
    const KafkaConfig kafka = bench::kafka_as("auditor", kafka_port, password_file);
    // Twice each, alternating, so neither has the page cache to itself.
    std::vector<Raw> raws;
    std::vector<replay::RebuildSummary> rebuilds, checked;
    std::optional<std::string> chain_key;
    if (!chain_key_file.empty()) {
      auto key = read_secret(chain_key_file);
      if (!key) throw std::runtime_error("the chain key: " + key.error());
      chain_key = *key;
    }
    auto rebuild = [&](std::optional<std::string> key) {
      std::filesystem::remove_all(dir);
      replay::RebuildConfig c;
      c.kafka = kafka;
      c.projector.rules = hub::load_rules(rules);
      c.dir = dir;
      c.chain_key = std::move(key);
      auto summary = replay::rebuild(c);
      if (!summary) throw std::runtime_error(summary.error());
      if (!summary->breaks.empty()) throw std::runtime_error("the log's chains are broken: " + summary->breaks.front().what);
      return *summary;
    };
    for (int round = 0; round < 2; ++round) {
      raws.push_back(raw_consume(kafka));
      rebuilds.push_back(rebuild(std::nullopt));
      if (chain_key) checked.push_back(rebuild(chain_key));
    }
    std::filesystem::remove_all(dir);
    std::printf("\n%-6s %-44s %12s %12s %10s\n", "round", "measure (same machine, same log)", "messages", "msg/s", "seconds");
    nlohmann::json out = nlohmann::json::array();
    for (std::size_t r = 0; r < raws.size(); ++r) {
      const double raw_rate = static_cast<double>(raws[r].messages) / raws[r].seconds;
      const double replay_rate = static_cast<double>(rebuilds[r].messages) / rebuilds[r].seconds;
      std::printf("%-6zu %-44s %12llu %12.0f %10.2f\n", r + 1, "raw consume (count only)",
                  static_cast<unsigned long long>(raws[r].messages), raw_rate, raws[r].seconds);
      std::printf("%-6zu %-44s %12llu %12.0f %10.2f\n", r + 1, "courtyard replay rebuild (every projection)",
                  static_cast<unsigned long long>(rebuilds[r].messages), replay_rate, rebuilds[r].seconds);
      std::printf("%-6zu replay runs at %.1f%% of the raw consume rate\n", r + 1, 100 * replay_rate / raw_rate);
      out.push_back({{"raw_messages", raws[r].messages}, {"raw_bytes", raws[r].bytes}, {"raw_per_s", raw_rate},
                     {"replay_messages", rebuilds[r].messages}, {"replay_per_s", replay_rate},
                     {"ratio", replay_rate / raw_rate}});
      if (r < checked.size()) {
        const double checked_rate = static_cast<double>(checked[r].messages) / checked[r].seconds;
        std::printf("%-6zu %-44s %12llu %12.0f %10.2f\n", r + 1, "  and every chain link checked",
                    static_cast<unsigned long long>(checked[r].messages), checked_rate, checked[r].seconds);
        std::printf("%-6zu with chain checks: %.1f%% of the raw consume rate\n", r + 1, 100 * checked_rate / raw_rate);
        out.back()["checked_per_s"] = checked_rate;
        out.back()["checked_ratio"] = checked_rate / raw_rate;
      }
    }
    std::cout << out.dump() << "\n";
    if (!save_log.empty()) {
      std::vector<processors::LogMessage> messages;
      for (const auto& topic : {kafka.events_topic, kafka.deadletter_topic}) {
        auto ok = read_to_end(kafka, topic, [&](const rd_kafka_message_t& m) {
          messages.push_back(processors::log_message_of(m));
        }, std::chrono::minutes(10));
        if (!ok) throw std::runtime_error(ok.error());
      }
      bench::write_log_file(save_log, messages);
      std::printf("log saved: %zu messages in %s\n", messages.size(), save_log.c_str());
    }
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
  return 0;
}
