#include "subscriptions.h"

#include "processors/record.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/metrics.h"
#include "processors/projector.h"

namespace courtyard::hub {
namespace {

using json = nlohmann::json;

std::string error_frame(const std::string& id, const std::string& code, const std::string& detail) {
  return json{{"type", "error"}, {"id", id}, {"error", code}, {"detail", detail}}.dump(
      -1, ' ', false, json::error_handler_t::replace);
}

// A field that must be a string when present: its value, "" when absent, nullopt when of another type.
std::optional<std::string> string_field(const json& m, const char* name) {
  auto it = m.find(name);
  if (it == m.end()) return std::string();
  if (!it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

}  // namespace

std::string Subscriber::take_frame() {
  std::string frame = fmt::format(R"({{"type":"changes","seq":{},"changes":[)", last_seq_);
  bool first = true;
  for (const std::string* key : order_) {
    auto& p = pending_.at(*key);
    if (!first) frame += ',';
    first = false;
    frame += R"({"key":)";
    frame += json(*key).dump(-1, ' ', false, json::error_handler_t::replace);
    frame += R"(,"subs":)";
    frame += json(p.subs).dump(-1, ' ', false, json::error_handler_t::replace);
    frame += R"(,"value":)";
    frame += *p.value;  // stored records are JSON already
    frame += '}';
  }
  frame += "]}";
  order_.clear();
  pending_.clear();
  return frame;
}

SubscriptionHub::SubscriptionHub(const processors::Store& store, std::function<std::uint64_t()> committed,
                                 SubscriptionLimits limits)
    : store_(store), committed_(std::move(committed)), limits_(limits) {}

SubscriptionHub::~SubscriptionHub() = default;

std::shared_ptr<Subscriber> SubscriptionHub::open(Principal who) {
  auto s = std::make_shared<Subscriber>(std::move(who));
  open_.insert(s.get());
  ++stats_.connections;
  ++stats_.connections_total;
  return s;
}

void SubscriptionHub::close(Subscriber& s) {
  if (!open_.erase(&s)) return;
  std::vector<std::string> ids;
  for (const auto& [id, _] : s.subscriptions_) ids.push_back(id);
  for (const auto& id : ids) unsubscribe(s, id);
  stats_.dropped += s.pending_.size();
  s.order_.clear();
  s.pending_.clear();
  s.snapshots_pending_ = 0;
  s.wake = nullptr;
  --stats_.connections;
}

std::string SubscriptionHub::hello(const Subscriber& s) const {
  const auto& who = s.principal();
  return json{{"type", "hello"}, {"role", to_string(who.role)}, {"community", who.community}, {"unit", who.unit}}.dump(
      -1, ' ', false, json::error_handler_t::replace);
}

MessageOutcome SubscriptionHub::on_message(Subscriber& s, std::string_view text) {
  auto refuse = [](const std::string& id, const std::string& code, const std::string& detail) {
    return MessageOutcome{{error_frame(id, code, detail)}, std::nullopt};
  };
  if (text.size() > limits_.max_message_bytes) return refuse("", "too_large", "messages are at most 4 KiB");
  json m = json::parse(text, nullptr, false);  // also refuses text that is not UTF-8
  if (m.is_discarded() || !m.is_object()) return refuse("", "bad_request", "send a JSON object");
  const auto op = string_field(m, "op"), id = string_field(m, "id");
  if (!op || !id || id->empty() || id->size() > 64) {
    return refuse("", "bad_request", "op is a string, and id (a string of 1..64 bytes) names the subscription");
  }
  if (*op == "unsubscribe") {
    if (!s.subscriptions_.contains(*id)) return refuse(*id, "not_found", "no subscription " + *id);
    unsubscribe(s, *id);
    return {{json{{"type", "unsubscribed"}, {"id", *id}}.dump()}, std::nullopt};
  }
  if (*op != "subscribe") return refuse(*id, "bad_request", "op must be subscribe or unsubscribe");
  if (s.subscriptions_.contains(*id)) return refuse(*id, "conflict", "subscription " + *id + " exists");
  if (s.subscriptions_.size() >= limits_.max_subscriptions) {
    return refuse(*id, "too_many", fmt::format("at most {} subscriptions per connection", limits_.max_subscriptions));
  }
  const auto key = string_field(m, "key"), prefix = string_field(m, "prefix"), stream = string_field(m, "stream");
  if (!key || !prefix || !stream) return refuse(*id, "bad_request", "key, prefix and stream are strings");
  std::string wanted;
  bool exact = false;
  if (m.contains("key")) {
    wanted = *key;
    exact = true;
  } else if (m.contains("prefix")) {
    wanted = *prefix;
  } else if (*stream == "alerts") {
    wanted = "alerts/";
  } else {
    return refuse(*id, "bad_request", "give a key, a prefix or \"stream\":\"alerts\"");
  }
  if (!processors::Projector::is_projection_key(wanted)) {
    return refuse(*id, "bad_request",
                  "keys and prefixes start with a projection: devices/, alerts/, meters/, gates/, elders/, homes/, "
                  "communities/, registry/, commands/, notices/");
  }
  return {{}, subscribe(s, *id, std::move(wanted), exact)};
}

SnapshotJob SubscriptionHub::subscribe(Subscriber& s, const std::string& id, std::string prefix, bool exact) {
  // Registered now, at the last commit handed to publish(): the snapshot, built later from a
  // view taken after this, holds at least every change up to it, and later changes queue
  // behind the snapshot (Subscriber::snapshot_pending).
  const std::uint64_t seq = committed_();
  s.subscriptions_[id] = {prefix, exact, seq};
  by_prefix_[prefix].push_back({&s, id});
  ++prefix_lengths_[prefix.size()];
  ++stats_.subscriptions;
  ++s.snapshots_pending_;
  return SnapshotJob{id, std::move(prefix), exact, seq, s.principal()};
}

void SubscriptionHub::snapshot_sent(Subscriber& s) {
  if (s.snapshots_pending_ > 0) --s.snapshots_pending_;
}

std::string SubscriptionHub::cancel(Subscriber& s, const SnapshotJob& job) {
  unsubscribe(s, job.id);
  snapshot_sent(s);
  return error_frame(job.id, "too_many_requests", "too many requests of this token at once; subscribe again shortly");
}

std::string SubscriptionHub::build_snapshot(const SnapshotJob& job) const {
  auto view = store_.view();
  std::string items = "[";
  std::size_t count = 0, bytes = 0, scanned = 0;
  bool truncated = false;
  auto add = [&](const std::string& key, const std::string& stored) {
    std::string raw = processors::Projector::served_record(view, key, stored);
    json value = json::parse(raw, nullptr, false);
    if (value.is_discarded() || !may_read(job.who, key, scope_of(key, value))) return;
    if (redact_for(job.who, key, value)) raw = value.dump(-1, ' ', false, json::error_handler_t::replace);
    if (count == limits_.max_snapshot || bytes + key.size() + raw.size() > limits_.max_snapshot_bytes) {
      truncated = true;
      return;
    }
    if (count++) items += ',';
    items += R"({"key":)" + json(key).dump(-1, ' ', false, json::error_handler_t::replace) + R"(,"value":)" + raw + "}";
    bytes += key.size() + raw.size();
  };
  if (job.exact) {
    if (auto raw = view.get(job.prefix)) add(job.prefix, *raw);
  } else {
    std::string cursor;
    while (!truncated) {
      auto chunk = view.scan(job.prefix, cursor, 512);
      if (chunk.empty()) break;
      for (const auto& [key, raw] : chunk) {
        if (truncated) break;
        if (scanned++ == limits_.max_snapshot_scanned) {
          truncated = true;
          break;
        }
        cursor = key;
        add(key, raw);
      }
    }
  }
  items += "]";
  return fmt::format(R"({{"type":"snapshot","id":{},"seq":{},"items":{},"truncated":{}}})",
                     json(job.id).dump(-1, ' ', false, json::error_handler_t::replace), job.seq, items, truncated);
}

void SubscriptionHub::unsubscribe(Subscriber& s, const std::string& id) {
  auto it = s.subscriptions_.find(id);
  if (it == s.subscriptions_.end()) return;
  const std::string prefix = it->second.prefix;
  auto& entries = by_prefix_[prefix];
  std::erase_if(entries, [&](const Entry& e) { return e.subscriber == &s && e.id == id; });
  if (entries.empty()) by_prefix_.erase(prefix);
  if (auto len = prefix_lengths_.find(prefix.size()); len != prefix_lengths_.end() && --len->second == 0) {
    prefix_lengths_.erase(len);
  }
  s.subscriptions_.erase(it);
  --stats_.subscriptions;
}

void SubscriptionHub::publish(std::uint64_t seq, const processors::KeyValues& changes) {
  std::set<Subscriber*> woken;
  for (const auto& [key, raw] : changes) {
    std::optional<RecordScope> scope;  // parsed once per change, only when someone needs it
    std::shared_ptr<const std::string> value;  // made once per change, only when someone gets it
    std::shared_ptr<const std::string> household;  // the value as households are shown it (redact_for), if it differs
    std::optional<std::string> text;           // a binary record rendered, once, when needed
    auto as_text = [&]() -> const std::string& {
      if (!text) {
        try {
          text = processors::record_text(raw);
        } catch (const std::exception&) {  // a record the hub cannot render reaches nobody, and stops nothing
          text = "null";
        }
      }
      return *text;
    };
    const std::string_view whole(key);
    for (const auto& [length, _] : prefix_lengths_) {
      if (length > key.size()) break;
      auto it = by_prefix_.find(whole.substr(0, length));
      if (it == by_prefix_.end()) continue;
      for (const auto& [s, id] : it->second) {
        if (s->overflowed_) continue;
        const auto& sub = s->subscriptions_.at(id);
        if ((sub.exact && length != key.size()) || seq <= sub.after_seq) continue;
        const auto& who = s->principal();
        if (who.role != Role::Admin && who.role != Role::Auditor) {
          if (!scope) scope = scope_of(key, processors::parse_record(raw));
          if (!may_read(who, key, *scope)) continue;
        }
        // As the API serves it: a presence gets who is inside from the store when it is sent, so
        // it is at least as new as this commit (a key's values still only move forward).
        if (!value) {
          value = std::make_shared<const std::string>(processors::Projector::served_in_pieces(key)
                                                          ? processors::Projector::served_record(store_.view(), key, raw)
                                                          : as_text());
        }
        auto shown = value;
        if (who.role == Role::Resident) {
          if (!household) {
            json record = json::parse(*value, nullptr, false);
            household = redact_for(who, key, record)
                            ? std::make_shared<const std::string>(record.dump(-1, ' ', false, json::error_handler_t::replace))
                            : value;
          }
          shown = household;
        }
        auto [p, inserted] = s->pending_.try_emplace(key);
        if (inserted) {
          s->order_.push_back(&p->first);
        } else if (p->second.value != shown) {
          ++stats_.coalesced;
        }
        p->second.value = shown;
        if (std::find(p->second.subs.begin(), p->second.subs.end(), id) == p->second.subs.end()) p->second.subs.push_back(id);
        s->last_seq_ = std::max(s->last_seq_, seq);  // lanes' commits may arrive out of order
        if (s->order_.size() > limits_.max_pending_keys) {
          s->overflowed_ = true;
          stats_.dropped += s->pending_.size();
          ++stats_.disconnected_slow;
          s->order_.clear();
          s->pending_.clear();
        }
        woken.insert(s);
      }
    }
  }
  for (auto* s : woken) {
    if (s->wake) s->wake();
  }
}

std::string SubscriptionHub::take_frame(Subscriber& s) {
  stats_.updates_sent += s.order_.size();
  return s.take_frame();
}

std::string SubscriptionHub::render_metrics() const {
  Metrics m;
  auto put = [&](const char* name, const char* type, const char* help, std::uint64_t value) {
    m.describe(name, type, help);
    m.set(name, {}, static_cast<double>(value));
  };
  put("courtyard_ws_connections", "gauge", "Open WebSocket connections", stats_.connections.load());
  put("courtyard_ws_subscriptions", "gauge", "Open subscriptions over all connections", stats_.subscriptions.load());
  put("courtyard_ws_connections_total", "counter", "WebSocket connections accepted", stats_.connections_total.load());
  put("courtyard_ws_updates_sent_total", "counter", "Changes sent to subscribers", stats_.updates_sent.load());
  put("courtyard_ws_updates_coalesced_total", "counter",
      "Changes replaced by a newer value of the same key before sending", stats_.coalesced.load());
  put("courtyard_ws_updates_dropped_total", "counter",
      "Changes never sent: their connection closed or fell too far behind", stats_.dropped.load());
  put("courtyard_ws_disconnected_slow_total", "counter", "Connections closed for falling too far behind",
      stats_.disconnected_slow.load());
  return m.render();
}

}  // namespace courtyard::hub
