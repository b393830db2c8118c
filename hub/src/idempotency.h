#pragma once
// The answers to POSTs that carried an Idempotency-Key, kept per token, so a client that retries
// after a timeout or a dropped connection gets the first answer instead of a second write.
// A key is the client's (1..128 printable ASCII characters); the same key with another request
// (method, path or body) is refused, and so is a repeat while the first is still being answered.
// Bounded: the oldest answers go first past `max_entries`, and none is kept past `ttl`. After a
// hub restart the cache is empty; the ids a key derives (commands, notices) still repeat, and the
// folds count a command id once. Thread-safe.
#include <chrono>
#include <cstdint>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "hub/api.h"

namespace courtyard::hub {

struct IdempotencyLimits {
  std::size_t max_entries = 10000;
  std::chrono::milliseconds ttl = std::chrono::hours(24);
};

class IdempotencyCache {
 public:
  explicit IdempotencyCache(IdempotencyLimits limits = {}) : limits_(limits) {}

  enum class Outcome {
    Fresh,        // first time: answer it, then complete() or forget()
    Replay,       // answered before: `response` is the first answer
    InProgress,   // the first request with this key is still being answered
    OtherRequest  // the key was used for a different request
  };
  struct Claim {
    Outcome outcome = Outcome::Fresh;
    std::optional<HttpResponse> response;
  };

  // `fingerprint` identifies the request (method, path, body digest); `now_ms` the wall clock.
  Claim claim(const std::string& token_id, const std::string& key, const std::string& fingerprint, std::int64_t now_ms);
  // Keeps the answer for repeats.
  void complete(const std::string& token_id, const std::string& key, const HttpResponse& response);
  // Forgets a claim whose request wrote nothing (a 5xx): a retry runs it again.
  void forget(const std::string& token_id, const std::string& key);

  std::size_t size() const;

  // Whether `key` is an acceptable Idempotency-Key.
  static bool valid_key(const std::string& key);

 private:
  struct Entry {
    std::string fingerprint;
    std::int64_t at_ms = 0;
    std::optional<HttpResponse> response;  // none while in progress
    std::list<std::pair<std::string, std::string>>::iterator age;
  };
  using Key = std::pair<std::string, std::string>;  // token id, idempotency key
  void evict(std::int64_t now_ms);                  // under mu_

  const IdempotencyLimits limits_;
  mutable std::mutex mu_;
  std::map<Key, Entry> entries_;
  std::list<Key> by_age_;  // oldest first
};

}  // namespace courtyard::hub
