#pragma once
// Live subscriptions to projections, behind the WebSocket endpoint /api/v1/subscribe, without the
// networking: a Subscriber per connection, and the hub that routes each store commit's changes to
// the subscribers whose filters and access allow them.
//
// Flow control: a subscriber's unsent changes are coalesced per key (only the latest value is
// kept) in a bounded buffer; a subscriber with more than max_pending_keys distinct keys waiting
// is too far behind and is disconnected with a reason. Ordering: a subscription's snapshot
// reflects commit N, and only changes of commits after N follow it, in commit order per key.
// Threading: everything here runs on the server's one I/O thread but build_snapshot(), which reads
// the store from any thread (the server runs it on its workers, so a large scan never holds the
// I/O thread); counters are atomics so /metrics can read them from anywhere.
// Every client message is hostile: fields are type-checked, and nothing a client sends throws.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "hub/access.h"
#include "processors/store.h"

namespace courtyard::hub {

struct SubscriptionLimits {
  std::size_t max_pending_keys = 4096;   // distinct keys waiting for one connection; more: disconnect
  std::size_t max_snapshot = 5000;       // records in one snapshot (more: "truncated", page over REST)
  std::size_t max_snapshot_bytes = 4 << 20;  // bytes of records in one snapshot (more: "truncated")
  std::size_t max_snapshot_scanned = 50000;  // records a snapshot examines, matching or not (more: "truncated")
  std::size_t max_subscriptions = 64;    // per connection
  std::size_t max_message_bytes = 4096;  // of a client's message
  // Least time between two frames of changes to one connection: what arrives meanwhile is
  // coalesced into the next frame. Bounds the frames a busy community costs per dashboard.
  std::chrono::milliseconds frame_interval{100};
};

class Subscriber {
 public:
  explicit Subscriber(Principal who) : who_(std::move(who)) {}
  const Principal& principal() const { return who_; }
  bool has_pending() const { return !order_.empty(); }
  // Every pending change as one frame, {"type":"changes","seq":N,"changes":[{key,subs,value}...]};
  // the buffer is then empty.
  std::string take_frame();
  bool overflowed() const { return overflowed_; }
  // Snapshots asked for and not yet sent: changes wait behind them (they are newer).
  bool snapshot_pending() const { return snapshots_pending_ > 0; }
  // Set by the connection: called when changes arrive or the subscriber overflows.
  std::function<void()> wake;

 private:
  friend class SubscriptionHub;
  // One commit's value of a key, shared by every subscriber it goes to: coalescing replaces a
  // pointer, never copies a record.
  struct Pending {
    std::shared_ptr<const std::string> value;
    std::vector<std::string> subs;  // the connection's subscriptions it matched (short ids: no allocation)
  };
  struct Subscription {
    std::string prefix;
    bool exact = false;
    std::uint64_t after_seq = 0;  // its snapshot's commit: older changes are already in it
  };
  Principal who_;
  std::unordered_map<std::string, Subscription> subscriptions_;  // by the client's id
  std::unordered_map<std::string, Pending> pending_;
  std::vector<const std::string*> order_;  // pending_'s keys (stable in its nodes), first change first
  std::uint64_t last_seq_ = 0;
  bool overflowed_ = false;
  int snapshots_pending_ = 0;
};

// A subscription's first frame, to build from the store (SubscriptionHub::build_snapshot).
struct SnapshotJob {
  std::string id;
  std::string prefix;
  bool exact = false;
  std::uint64_t seq = 0;  // the commit it reflects at least
  Principal who;
};

// What one client message asks for: frames to send now, and maybe a snapshot to build first.
struct MessageOutcome {
  std::vector<std::string> frames;
  std::optional<SnapshotJob> snapshot;
};

struct SubscriptionStats {
  std::atomic<std::int64_t> connections{0}, subscriptions{0};
  std::atomic<std::uint64_t> connections_total{0}, updates_sent{0}, coalesced{0}, dropped{0}, disconnected_slow{0};
};

class SubscriptionHub {
 public:
  // `committed` gives the last commit whose changes publish() has been or will be called with.
  SubscriptionHub(const processors::Store& store, std::function<std::uint64_t()> committed, SubscriptionLimits limits = {});
  ~SubscriptionHub();
  std::shared_ptr<Subscriber> open(Principal who);
  void close(Subscriber& s);  // forgets every subscription of `s`; idempotent
  // The first frame of a connection: who the server takes it for.
  std::string hello(const Subscriber& s) const;
  // One client message: the frames to send back at once (ack or error), or the snapshot job of a
  // new subscription, which is registered at once (changes after its commit queue behind it):
  //   {"op":"subscribe","id":"a","prefix":"alerts/"}   {"op":"subscribe","id":"b","key":"devices/gate-1"}
  //   {"op":"subscribe","id":"c","stream":"alerts"}     {"op":"unsubscribe","id":"a"}
  MessageOutcome on_message(Subscriber& s, std::string_view text);
  // The snapshot frame of a job: the records under its prefix the principal may read, bounded by
  // the limits. Any thread; reads the store only.
  std::string build_snapshot(const SnapshotJob& job) const;
  // The job's frame is on its way (or the connection is gone): changes may follow it.
  void snapshot_sent(Subscriber& s);
  // The job will not run (the token has too many at once): its subscription is withdrawn; the
  // error frame to send.
  std::string cancel(Subscriber& s, const SnapshotJob& job);
  // The subscriber's pending changes as one frame (Subscriber::take_frame), counted as sent.
  std::string take_frame(Subscriber& s);
  // Routes one commit's changes; wakes each subscriber that got something or overflowed.
  void publish(std::uint64_t seq, const processors::KeyValues& changes);
  const SubscriptionStats& stats() const { return stats_; }
  std::string render_metrics() const;
  const SubscriptionLimits& limits() const { return limits_; }

 private:
  SnapshotJob subscribe(Subscriber& s, const std::string& id, std::string prefix, bool exact);
  void unsubscribe(Subscriber& s, const std::string& id);
  struct Entry {
    Subscriber* subscriber;
    std::string id;
  };
  const processors::Store& store_;
  std::function<std::uint64_t()> committed_;
  SubscriptionLimits limits_;
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  // prefix (or exact key) -> subscriptions; looked up by string_view, without copying keys
  std::unordered_map<std::string, std::vector<Entry>, Hash, std::equal_to<>> by_prefix_;
  std::map<std::size_t, std::size_t> prefix_lengths_;              // length -> prefixes of that length
  std::set<Subscriber*> open_;
  SubscriptionStats stats_;
};

}  // namespace courtyard::hub
