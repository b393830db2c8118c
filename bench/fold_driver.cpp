// bench/fold: the projector alone over a log kept in a file (bench/replay --save-log): every
// projection and rule folded into a fresh store in batches, as a rebuild does, without Kafka.
// Prints the rate over each quarter of the log (a fold whose state grows with history slows
// down as it goes) next to decoding the same messages only, measured in the same run. The
// target to profile (perf record) when the fold is what is slow.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "hub/config.h"
#include "log_file.h"
#include "processors/projector.h"
#include "processors/store.h"
#include "schemas/event.h"

using namespace courtyard;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  std::string log, dir = "build/bench-fold", rules = "config/rules.toml";
  std::size_t batch = 5000;
  int rounds = 2;
  CLI::App app{"bench_fold: the projector over a saved log, against decoding it only"};
  app.add_option("--log", log, "a log saved by bench/replay --save-log")->required();
  app.add_option("--dir", dir, "where to fold (removed before and after)");
  app.add_option("--rules", rules, "the alert rules the hub uses");
  app.add_option("--batch", batch, "messages per store write (a rebuild's default)");
  app.add_option("--rounds", rounds, "times to fold the whole log, each into a fresh store");
  CLI11_PARSE(app, argc, argv);
  try {
    const auto messages = bench::read_log_file(log);
    std::uint64_t bytes = 0;
    for (const auto& m : messages) bytes += m.value.size();
    std::printf("log: %zu messages, %.1f MiB of values\n", messages.size(), static_cast<double>(bytes) / (1 << 20));

    // The floor: decoding every event once (what any fold must do), nothing else.
    auto started = Clock::now();
    std::uint64_t decoded = 0;
    for (const auto& m : messages) {
      if (m.topic == processors::ProjectorTopics{}.deadletter) continue;
      decoded += schemas::decode(m.value).has_value();
    }
    const double decode_s = std::chrono::duration<double>(Clock::now() - started).count();
    const double decode_rate = static_cast<double>(messages.size()) / decode_s;

    nlohmann::json out = nlohmann::json::array();
    std::printf("\n%-6s %-34s %12s %12s\n", "round", "measure (same machine, same log)", "messages/s", "seconds");
    std::printf("%-6s %-34s %12.0f %12.2f  (%llu events)\n", "-", "decode only", decode_rate, decode_s,
                static_cast<unsigned long long>(decoded));
    for (int round = 1; round <= rounds; ++round) {
      std::filesystem::remove_all(dir);
      processors::StoreConfig store_config;
      store_config.dir = dir;
      auto store = processors::Store::open(store_config);
      if (!store) throw std::runtime_error(store.error());
      processors::ProjectorConfig config;
      config.rules = hub::load_rules(rules);
      processors::Projector projector(**store, config);
      std::vector<double> quarter_s;
      std::uint64_t applied = 0, written = 0;
      started = Clock::now();
      auto quarter_start = started;
      std::size_t next_quarter = messages.size() / 4;
      for (std::size_t i = 0; i < messages.size(); i += batch) {
        const std::size_t n = std::min(batch, messages.size() - i);
        auto result = projector.apply(std::span(messages).subspan(i, n));
        if (!result) throw std::runtime_error(result.error());
        applied += result->applied;
        written += result->bytes_written;
        if (i + n >= next_quarter || i + n == messages.size()) {
          const auto now = Clock::now();
          quarter_s.push_back(std::chrono::duration<double>(now - quarter_start).count());
          quarter_start = now;
          next_quarter += messages.size() / 4;
        }
      }
      const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
      const double rate = static_cast<double>(messages.size()) / seconds;
      std::printf("%-6d %-34s %12.0f %12.2f  (%.1f%% of decode only; %.0f bytes written per message)\n", round,
                  "fold every projection", rate, seconds, 100 * rate / decode_rate,
                  static_cast<double>(written) / static_cast<double>(messages.size()));
      std::string quarters;
      for (double q : quarter_s) quarters += fmt::format(" {:.0f}", static_cast<double>(messages.size()) / 4 / q);
      std::printf("%-6d %-34s%s\n", round, "  by quarter of the log, msg/s", quarters.c_str());
      out.push_back({{"messages", messages.size()}, {"applied", applied}, {"fold_per_s", rate},
                     {"decode_per_s", decode_rate}, {"bytes_written", written}, {"quarters_s", quarter_s}});
    }
    std::filesystem::remove_all(dir);
    std::cout << out.dump() << "\n";
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
  return 0;
}
