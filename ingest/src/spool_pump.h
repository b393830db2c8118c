#pragma once
// Hands spooled records to the producer in spool order with bounded memory, however long Kafka
// is away. The newest records are kept in memory as they are appended (up to `cache_bytes`), so
// while Kafka keeps up nothing is read back from disk; what fell out of that cache (a long Kafka
// outage, a restart) is read from the spool in chunks when its turn comes. At most
// `max_in_flight` records and `max_in_flight_bytes` bytes are with the producer at once: handed
// over and not yet committed (ingest produces in transactions: a commit settles every record
// handed over before it; an abort hands them over again from the first).
// Thread-safe.
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <vector>

#include "spool.h"

namespace courtyard::ingest {

struct SpoolPumpLimits {
  std::size_t max_in_flight = 50000;             // records handed to the producer, not yet confirmed
  std::size_t max_in_flight_bytes = 64u << 20;   // their keys and values
  std::size_t cache_bytes = 16u << 20;           // appended records kept in memory for their turn
  std::size_t chunk = 256;                       // records read from the spool at once
};

// The bytes a record counts for while in flight (its key and value, as the producer reports them).
std::size_t in_flight_bytes(const SpoolRecord& record);

class SpoolPump {
 public:
  // Takes the record (true), or cannot now (false: the producer's queue is full; tried again next pump).
  using Produce = std::function<bool(std::uint64_t seq, const SpoolRecord& record)>;

  // Starts at the spool's oldest record: whatever a previous run spooled goes first.
  SpoolPump(const Spool& spool, SpoolPumpLimits limits);

  // Records the spool has just taken at first_seq.. (call in spool order, under the append lock).
  void appended(std::uint64_t first_seq, std::vector<SpoolRecord> records);
  // Hands records to `produce` in order while the in-flight limits allow.
  void pump(const Produce& produce);
  // Every record handed over so far is in Kafka for good.
  void committed();
  // The records handed over from `seq` on were not kept (an aborted transaction): they are handed
  // over again, in order, by the next pumps.
  void rewind(std::uint64_t seq);
  // Skips to `seq` (records before it are in Kafka already: a restart after a commit whose records
  // the spool had not yet forgotten). Only before the first pump.
  void start_at(std::uint64_t seq);

  std::size_t in_flight() const;
  std::size_t cached_bytes() const;
  std::uint64_t next_seq() const;  // the next record to hand over

 private:
  bool room(std::size_t bytes) const;  // under mu_

  const Spool& spool_;
  const SpoolPumpLimits limits_;
  mutable std::mutex mu_;
  std::uint64_t next_;
  std::deque<std::pair<std::uint64_t, SpoolRecord>> cache_;  // consecutive sequences
  std::size_t cache_bytes_ = 0;
  std::size_t in_flight_ = 0, in_flight_bytes_ = 0;
};

}  // namespace courtyard::ingest
