#pragma once
// `courtyard replay rebuild|verify|digest`: the auditor's commands (replay/ does the work).
#include <cstdint>
#include <optional>
#include <string>

#include "hub/config.h"

namespace courtyard::hub {

struct RebuildArgs {
  std::string to;                          // the new store's directory
  std::optional<std::int64_t> until_time_ms;
  std::string until_offsets;               // "topic:partition=offset,..." (empty: to the end)
};

// Each prints a machine-readable summary (one JSON line) on stdout and progress on stderr when
// stderr is a terminal; returns the process's exit status.
int run_replay_rebuild(const Config& config, const RebuildArgs& args);
// Rebuilds up to the live store's offsets (opened read-only, so the hub may keep running) and
// compares the projections' digests. 0 when equal; 1, naming the first differing record, when not.
int run_replay_verify(const Config& config, const std::string& work_dir, bool keep);
int run_replay_digest(const std::string& store_dir);

struct ExportArgs {
  std::string device, subject, community;  // exactly one
  std::optional<std::int64_t> from_ms, to_ms;  // ingest time, inclusive
  std::string format = "jsonl";            // jsonl or csv
};
// For an inquiry: the events of a device, a subject (person or plate token) or a community in a
// time range, the payloads refused from that device, and the alerts they caused (each alert's
// last record in the range), on stdout; a JSON summary on stderr.
int run_replay_export(const Config& config, const ExportArgs& args);
// The projection records under `prefix` (or the one `key`) as they were at `time_ms`, as JSON
// lines, then the summary (which checkpoint, how much log replayed).
int run_replay_as_of(const Config& config, std::int64_t time_ms, const std::string& prefix, const std::string& key,
                     const std::string& work_dir);
// Checks the signature and the chain of every record the hub `hub_id` published to the audit
// topic with its public key (`public_key_file`, PEM), then replays the log once, stopping at the
// offsets of each valid record, and compares projections and chain heads with it. 0 only when
// every record is genuine, none is missing, and all agree.
int run_replay_audit(const Config& config, const std::string& hub_id, const std::string& public_key_file,
                     const std::string& work_dir);

}  // namespace courtyard::hub
