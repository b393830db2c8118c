#include "spool_pump.h"

namespace courtyard::ingest {
namespace {

std::size_t cached_size(const SpoolRecord& r) {
  std::size_t n = r.topic.size() + r.key.size() + r.value.size();
  for (const auto& [k, v] : r.headers) n += k.size() + v.size();
  return n;
}

}  // namespace

std::size_t in_flight_bytes(const SpoolRecord& record) { return record.key.size() + record.value.size(); }

SpoolPump::SpoolPump(const Spool& spool, SpoolPumpLimits limits)
    : spool_(spool), limits_(limits), next_(spool.first_seq()) {}

void SpoolPump::appended(std::uint64_t first_seq, std::vector<SpoolRecord> records) {
  std::lock_guard lock(mu_);
  for (std::size_t i = 0; i < records.size(); ++i) {
    const std::uint64_t seq = first_seq + i;
    // Only a run without holes: one that fell out stays on disk, and so do those after it until
    // the pump has caught up with the spool.
    const bool follows = cache_.empty() ? seq == next_ : cache_.back().first + 1 == seq;
    const std::size_t size = cached_size(records[i]);
    if (!follows || cache_bytes_ + size > limits_.cache_bytes) continue;
    cache_bytes_ += size;
    cache_.emplace_back(seq, std::move(records[i]));
  }
}

bool SpoolPump::room(std::size_t bytes) const {
  return in_flight_ < limits_.max_in_flight && (in_flight_ == 0 || in_flight_bytes_ + bytes <= limits_.max_in_flight_bytes);
}

void SpoolPump::pump(const Produce& produce) {
  std::lock_guard lock(mu_);
  for (;;) {
    // What the disk read handed over already is no longer the cache's to hand over.
    while (!cache_.empty() && cache_.front().first < next_) {
      cache_bytes_ -= cached_size(cache_.front().second);
      cache_.pop_front();
    }
    if (!cache_.empty() && cache_.front().first == next_) {
      auto& [seq, record] = cache_.front();
      const std::size_t bytes = in_flight_bytes(record);
      if (!room(bytes) || !produce(seq, record)) return;
      ++in_flight_;
      in_flight_bytes_ += bytes;
      ++next_;
      cache_bytes_ -= cached_size(record);
      cache_.pop_front();
      continue;
    }
    // The next record is only on disk: read a chunk of them.
    auto chunk = spool_.read(next_, limits_.chunk);
    if (chunk.empty()) return;
    for (auto& [seq, record] : chunk) {
      const std::size_t bytes = in_flight_bytes(record);
      if (!room(bytes) || !produce(seq, record)) return;
      ++in_flight_;
      in_flight_bytes_ += bytes;
      next_ = seq + 1;
    }
  }
}

void SpoolPump::committed() {
  std::lock_guard lock(mu_);
  in_flight_ = in_flight_bytes_ = 0;
}

void SpoolPump::rewind(std::uint64_t seq) {
  std::lock_guard lock(mu_);
  in_flight_ = in_flight_bytes_ = 0;
  // The cache holds later records; those from `seq` are read from the spool again.
  next_ = std::min(next_, seq);
}

void SpoolPump::start_at(std::uint64_t seq) {
  std::lock_guard lock(mu_);
  next_ = std::max(next_, seq);
}

std::size_t SpoolPump::in_flight() const {
  std::lock_guard lock(mu_);
  return in_flight_;
}

std::size_t SpoolPump::cached_bytes() const {
  std::lock_guard lock(mu_);
  return cache_bytes_;
}

std::uint64_t SpoolPump::next_seq() const {
  std::lock_guard lock(mu_);
  return next_;
}

}  // namespace courtyard::ingest
