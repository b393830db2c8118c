#include "idempotency.h"

namespace courtyard::hub {

bool IdempotencyCache::valid_key(const std::string& key) {
  if (key.empty() || key.size() > 128) return false;
  for (unsigned char c : key) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

void IdempotencyCache::evict(std::int64_t now_ms) {
  // Oldest first: whatever is past its day, then settled answers while over the bound. A claim
  // still being answered is passed over (dropping it would let its retry run a second time).
  for (auto age = by_age_.begin(); age != by_age_.end();) {
    auto it = entries_.find(*age);
    const bool expired = it == entries_.end() || now_ms - it->second.at_ms > limits_.ttl.count();
    if (!expired && entries_.size() <= limits_.max_entries) break;
    if (!expired && !it->second.response) {
      ++age;
      continue;
    }
    if (it != entries_.end()) entries_.erase(it);
    age = by_age_.erase(age);
  }
}

IdempotencyCache::Claim IdempotencyCache::claim(const std::string& token_id, const std::string& key,
                                                const std::string& fingerprint, std::int64_t now_ms) {
  std::lock_guard lock(mu_);
  evict(now_ms);
  const Key k{token_id, key};
  if (auto it = entries_.find(k); it != entries_.end()) {
    if (it->second.fingerprint != fingerprint) return {Outcome::OtherRequest, std::nullopt};
    if (!it->second.response) return {Outcome::InProgress, std::nullopt};
    return {Outcome::Replay, it->second.response};
  }
  by_age_.push_back(k);
  entries_.emplace(k, Entry{fingerprint, now_ms, std::nullopt, std::prev(by_age_.end())});
  evict(now_ms);
  return {Outcome::Fresh, std::nullopt};
}

void IdempotencyCache::complete(const std::string& token_id, const std::string& key, const HttpResponse& response) {
  std::lock_guard lock(mu_);
  if (auto it = entries_.find({token_id, key}); it != entries_.end()) it->second.response = response;
}

void IdempotencyCache::forget(const std::string& token_id, const std::string& key) {
  std::lock_guard lock(mu_);
  if (auto it = entries_.find({token_id, key}); it != entries_.end()) {
    by_age_.erase(it->second.age);
    entries_.erase(it);
  }
}

std::size_t IdempotencyCache::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

}  // namespace courtyard::hub
