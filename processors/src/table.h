#pragma once
// A projection's working set: states read from the store once, changed in memory, written when
// the batch ends if their stored form changed; kept between batches as a cache whose least
// recently used entries evict() drops (the store has them). The projector is the store's only
// writer, so what a table last wrote is what the store holds.
#include <algorithm>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "processors/record.h"
#include "processors/store.h"

namespace courtyard::processors {

template <class State>
class Table {
 public:
  using Parse = State (*)(const nlohmann::json&);
  // The stored record of a state: JSON text unless the state has a binary one (processors/record.h).
  using Encode = std::string (*)(const State&);
  static std::string json_text(const State& state) { return to_json(state).dump(); }
  explicit Table(Parse parse, Encode encode = &json_text) : parse_(parse), encode_(encode) {}

  // The state under `key` (the default when the store has none), to change in this batch.
  State& get(const Store::View& view, const std::string& key) { return touch(*load(view, key, true)); }
  // The same, or nullptr when neither this table nor the store has one (nothing is created).
  State* get_if(const Store::View& view, const std::string& key) {
    auto* node = load(view, key, false);
    return node ? &touch(*node) : nullptr;
  }
  // To read only: not written for this.
  const State* find(const Store::View& view, const std::string& key) {
    auto* node = load(view, key, false);
    return node ? &node->second.state : nullptr;
  }
  bool contains(const std::string& key) const { return entries_.contains(key); }

  // Each state this batch may have changed, in the order it first asked for them.
  template <class F>
  void for_each_touched(F&& f) {
    for (auto& [key, entry] : touched_) f(*key, entry->state);
  }
  // Appends the states whose stored form changed (a tick visits every community; most do not).
  void put_changed(KeyValues& puts) {
    for (auto& [key, entry] : touched_) {
      entry->touched = false;
      auto record = encode_(entry->state);
      if (record == entry->stored) continue;
      entry->stored = record;
      puts.emplace_back(*key, std::move(record));
    }
    touched_.clear();
  }
  void forget(const std::string& key) {
    auto it = entries_.find(key);
    if (it == entries_.end()) return;
    if (it->second.touched) std::erase_if(touched_, [&](const auto& t) { return t.second == &it->second; });
    entries_.erase(it);
  }
  // Once the batch is in the store (every entry is then clean): above `limit` entries, drops the
  // least recently used down to three quarters of it, and returns their keys.
  std::vector<std::string> evict(std::size_t limit) {
    ++batch_;
    if (entries_.size() <= limit) return {};
    std::vector<std::pair<std::uint64_t, const std::string*>> by_use;
    by_use.reserve(entries_.size());
    for (const auto& [key, entry] : entries_) by_use.emplace_back(entry.used, &key);
    const std::size_t drop = entries_.size() - limit * 3 / 4;
    std::nth_element(by_use.begin(), by_use.begin() + static_cast<std::ptrdiff_t>(drop - 1), by_use.end());
    std::vector<std::string> dropped;
    dropped.reserve(drop);
    for (std::size_t i = 0; i < drop; ++i) dropped.push_back(*by_use[i].second);
    for (const auto& key : dropped) forget(key);
    return dropped;
  }
  std::size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    State state{};
    std::string stored;  // as written: what the store holds ("" when nothing)
    std::uint64_t used = 0;  // the batch that last asked for it
    bool touched = false;
  };
  using Node = std::pair<const std::string, Entry>;
  Node* load(const Store::View& view, const std::string& key, bool create) {
    auto it = entries_.find(key);
    if (it == entries_.end()) {
      auto raw = view.get(key);
      if (!raw && !create) return nullptr;
      Entry entry;
      if (raw) {
        entry.state = parse_(record_json(*raw));
        entry.stored = std::move(*raw);
      }
      it = entries_.emplace(key, std::move(entry)).first;
    }
    it->second.used = batch_;
    return &*it;
  }
  State& touch(Node& node) {
    if (!node.second.touched) {
      node.second.touched = true;
      touched_.emplace_back(&node.first, &node.second);
    }
    return node.second.state;
  }

  Parse parse_;
  Encode encode_;
  std::unordered_map<std::string, Entry> entries_;  // node-based: references stay valid
  std::vector<std::pair<const std::string*, Entry*>> touched_;
  std::uint64_t batch_ = 0;
};

// Makes the stored entries of a map (`written`: as stored, one record per entry under `prefix`)
// those of `now`: puts for entries added or changed, deletes for entries gone. Compares values,
// never their serialised form, so an unchanged map costs a walk, not a serialisation.
template <class V>
void store_entries(const std::string& prefix, const std::map<std::string, V>& now, std::map<std::string, V>& written,
                   KeyValues& puts, std::vector<std::string>& deletes) {
  auto a = now.begin();
  auto b = written.begin();
  while (a != now.end() || b != written.end()) {
    if (b == written.end() || (a != now.end() && a->first < b->first)) {
      puts.emplace_back(prefix + a->first, nlohmann::json(a->second).dump());
      written.emplace_hint(b, *a);
      ++a;
    } else if (a == now.end() || b->first < a->first) {
      deletes.push_back(prefix + b->first);
      b = written.erase(b);
    } else {
      if (!(a->second == b->second)) {
        puts.emplace_back(prefix + a->first, nlohmann::json(a->second).dump());
        b->second = a->second;
      }
      ++a;
      ++b;
    }
  }
}
// The same for a set: an entry's record is its key alone (the value is empty).
inline void store_entries(const std::string& prefix, const std::set<std::string>& now, std::set<std::string>& written,
                          KeyValues& puts, std::vector<std::string>& deletes) {
  auto a = now.begin();
  auto b = written.begin();
  while (a != now.end() || b != written.end()) {
    if (b == written.end() || (a != now.end() && *a < *b)) {
      puts.emplace_back(prefix + *a, "");
      written.emplace_hint(b, *a);
      ++a;
    } else if (a == now.end() || *b < *a) {
      deletes.push_back(prefix + *b);
      b = written.erase(b);
    } else {
      ++a;
      ++b;
    }
  }
}

}  // namespace courtyard::processors
