#pragma once
// The hub's audit trail: every hub.audit_interval_s it publishes, to the compacted audit topic,
// the offsets its store reflects, a digest per projection and every community's chain head (one
// record per digest, key "{hub instance}/{time}"), and takes a checkpoint of its store under
// var/hub/checkpoints/{time} for as-of queries, keeping the newest hub.checkpoints_keep.
// An auditor replaying the log later checks it against these records (`courtyard replay audit`).
// Runs on its own thread; run() returns when the stop token fires.
#include <chrono>
#include <expected>
#include <filesystem>
#include <stop_token>
#include <string>

#include "hub/config.h"
#include "log_writer.h"
#include "processors/store.h"
#include "replay/replay.h"

namespace courtyard::hub {

// A replay configured like this hub's processors (topics, rules, local time, batch size).
replay::RebuildConfig replay_config(const Config& config, const std::string& dir);

class Auditor {
 public:
  Auditor(const Config& config, const processors::Store& store, LogWriter& writer);
  void run(std::stop_token stop);
  // One digest record and checkpoint now; the record as published.
  std::expected<std::string, std::string> audit_once();

 private:
  const Config& config_;
  const processors::Store& store_;
  LogWriter& writer_;
  std::filesystem::path checkpoints_;
};

}  // namespace courtyard::hub
