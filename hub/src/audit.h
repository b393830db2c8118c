#pragma once
// The hub's audit trail: every hub.audit_interval_s it publishes, to the compacted audit topic,
// the offsets its store reflects, a digest per projection and every community's chain head (one
// record per digest, key "{hub instance}/{time}"), and takes a checkpoint of its store under
// var/hub/checkpoints/{time} for as-of queries, keeping the newest hub.checkpoints_keep.
// An auditor replaying the log later checks it against these records (`courtyard replay audit`).
//
// Records are signed (Ed25519, hub.audit_key_file, made on first start; the public key is written
// next to it as .pub for auditors) and chained: each carries its number (seq, from 1) and the
// SHA-256 of the previous record's payload, so a forged, altered, missing or reordered record is
// named by the audit, whoever can write to Kafka. Published value:
//   {"payload": "<the record, JSON text>", "signature": "<base64>", "key_id": "<16 hex>"}
// Runs on its own thread; run() returns when the stop token fires.
#include <chrono>
#include <cstdint>
#include <expected>
#include <filesystem>
#include <stop_token>
#include <string>

#include "common/signing.h"
#include "hub/config.h"
#include "log_writer.h"
#include <nlohmann/json.hpp>

#include "processors/store.h"
#include "replay/replay.h"

namespace courtyard::hub {

// A replay configured like this hub's processors (topics, rules, local time, batch size).
replay::RebuildConfig replay_config(const Config& config, const std::string& dir);

// A published audit record, checked: what it says and where it sits in the hub's chain of records.
struct AuditRecord {
  std::int64_t offset = -1;     // in the audit topic
  std::uint64_t seq = 0;        // 1, 2, ...
  std::string prev;             // SHA-256 of the previous record's payload ("" for the first)
  std::string payload_sha256;   // of this one's
  nlohmann::json body;          // the payload, parsed
};

// A hub's records in the audit topic, each signature checked with `public_key_pem`, and what is
// wrong with the trail: forged or unsigned records, deleted ones, gaps and breaks of the chain.
struct AuditTrail {
  std::vector<AuditRecord> records;   // valid ones, by seq
  std::vector<std::string> problems;  // each names the record (offset, key, seq)
};
std::expected<AuditTrail, std::string> read_audit_trail(const KafkaConfig& kafka, const std::string& hub_id,
                                                        const std::string& public_key_pem);

class Auditor {
 public:
  // Throws when the signing key cannot be read or made, or the audit topic cannot be read.
  Auditor(const Config& config, const processors::Store& store, LogWriter& writer);
  void run(std::stop_token stop);
  // One signed digest record and checkpoint now; the value as published.
  std::expected<std::string, std::string> audit_once();

 private:
  const Config& config_;
  const processors::Store& store_;
  LogWriter& writer_;
  std::filesystem::path checkpoints_;
  Signer signer_;
  std::uint64_t seq_ = 0;  // of the last record published
  std::string prev_;       // its payload's SHA-256
};

}  // namespace courtyard::hub
