#pragma once
// A projection is a module: its state, its keys, its fold and its records, in one place. The
// projector is a router: it decodes each message once, hands the event to the projections that
// declared its type, in the order they were registered (projections.cpp), and writes what they
// changed with the batch's offsets in one atomic write. A projection never sees the store's writer,
// the offsets or another projection's tables: it reads another projection only through the
// reference it was given when it was registered.
#include <bitset>
#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "processors/alerts_fold.h"
#include "processors/projector.h"
#include "processors/rejections_fold.h"
#include "processors/store.h"
#include "schemas/event.h"

namespace courtyard::processors {

// Event types, by their index in schemas::Body.
using EventTypes = std::bitset<std::variant_size_v<schemas::Body>>;
template <class... Bodies>
EventTypes types_of() {
  EventTypes types;
  (types.set(schemas::Body(std::in_place_type<Bodies>).index()), ...);
  return types;
}
// What a device sends (as opposed to what Courtyard appends: ticks, registrations of people,
// operator actions, commands, notices, analyses). Device registrations are the devices' own.
EventTypes device_event_types();

// One batch as the projections see it: the store as of the batch's start, the records they write
// and the messages they send. Written by the projector in one atomic write with the offsets.
struct Batch {
  const Store::View& view;
  const ProjectorConfig& config;
  KeyValues puts;
  std::vector<std::string> deletes;
  struct Message {
    std::string community;  // whose outbox it goes into
    std::string topic;      // "alerts" or "commands"
    std::string key, value;
  };
  std::vector<Message> outbox;  // in order; numbered by the projector, per community
  std::vector<Alert> alerts;    // alerts this batch changed, in order (the alerts projection adds them)
  std::vector<Notification> notifications;  // decided in this batch, in order (the alerts projection adds them)
  void send(std::string community, std::string topic, std::string key, std::string value) {
    outbox.push_back({std::move(community), std::move(topic), std::move(key), std::move(value)});
  }
};

// What a projection says of an event: the devices projection alone decides whether a device's
// event is new (then counted as applied) or seen before (then no projection after it sees it).
enum class Folded { Done, Fresh, Duplicate };

class Projection {
 public:
  virtual ~Projection() = default;
  virtual EventTypes types() const = 0;  // the events it folds
  virtual bool folds_dead_letters() const { return false; }
  virtual bool folds_alerts() const { return false; }
  // An event of one of its types, for `community`: a tick reaches every community of its partition.
  virtual Folded fold(Batch&, const schemas::Event&, const std::string& /*community*/) { return Folded::Done; }
  virtual void fold(Batch&, const DeadLetter&) {}
  // After the batch's events, each alert the batch changed, in order.
  virtual void fold(Batch&, const Alert&) {}
  // The records it changed in this batch (and the messages they cause), into `batch`.
  virtual void write(Batch&) = 0;
  // Once the batch is in the store, every state is clean: its memory back within `limit` states.
  virtual void evict(std::size_t limit) = 0;
  virtual std::size_t cached() const = 0;
};

// A projection whose records replace each other whole, key by key (rosters, the site): what a
// batch put last under a key is what it writes; nothing is cached between batches.
class ReplacingProjection : public Projection {
 public:
  void write(Batch& batch) override {
    for (auto& [key, value] : changed_) batch.puts.emplace_back(key, std::move(value));
    changed_.clear();
  }
  void evict(std::size_t) override {}
  std::size_t cached() const override { return 0; }

 protected:
  void put(std::string key, std::string value) { changed_[std::move(key)] = std::move(value); }

 private:
  std::map<std::string, std::string> changed_;  // this batch's, by key
};

}  // namespace courtyard::processors
