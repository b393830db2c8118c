#pragma once
// A bounded queue between two threads: one stage hands work to the next, and waits when the
// next has `capacity` items not yet taken, so a fast stage cannot run ahead with unbounded
// memory. Either side may close it: a producer when it has no more, a consumer when it stops
// early. Once closed, push refuses, and pop hands out what is left, then nothing.
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <optional>

namespace courtyard {

template <class T>
class Handoff {
 public:
  explicit Handoff(std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

  // Waits while full. False when closed: the item was not taken.
  bool push(T item) {
    std::unique_lock lock(mu_);
    not_full_.wait(lock, [&] { return closed_ || items_.size() < capacity_; });
    if (closed_) return false;
    items_.push_back(std::move(item));
    not_empty_.notify_one();
    return true;
  }

  // Waits at most `wait` while full. Taken: the item is moved in; Full or Closed: it is left as
  // it was.
  enum class Pushed { Taken, Full, Closed };
  Pushed push_for(T& item, std::chrono::milliseconds wait) {
    std::unique_lock lock(mu_);
    if (!not_full_.wait_for(lock, wait, [&] { return closed_ || items_.size() < capacity_; })) return Pushed::Full;
    if (closed_) return Pushed::Closed;
    items_.push_back(std::move(item));
    not_empty_.notify_one();
    return Pushed::Taken;
  }

  // Waits while empty and open. nullopt once closed and empty.
  std::optional<T> pop() {
    std::unique_lock lock(mu_);
    not_empty_.wait(lock, [&] { return closed_ || !items_.empty(); });
    if (items_.empty()) return std::nullopt;
    T item = std::move(items_.front());
    items_.pop_front();
    not_full_.notify_one();
    return item;
  }

  // What is there now, without waiting.
  std::optional<T> try_pop() {
    std::lock_guard lock(mu_);
    if (items_.empty()) return std::nullopt;
    T item = std::move(items_.front());
    items_.pop_front();
    not_full_.notify_one();
    return item;
  }

  void close() {
    std::lock_guard lock(mu_);
    closed_ = true;
    not_full_.notify_all();
    not_empty_.notify_all();
  }

 private:
  const std::size_t capacity_;
  std::mutex mu_;
  std::condition_variable not_full_, not_empty_;
  std::deque<T> items_;
  bool closed_ = false;
};

}  // namespace courtyard
