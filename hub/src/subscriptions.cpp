#include "subscriptions.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/metrics.h"
#include "processors/projector.h"

namespace courtyard::hub {
namespace {

using json = nlohmann::json;

std::string error_frame(const std::string& id, const std::string& code, const std::string& detail) {
  return json{{"type", "error"}, {"id", id}, {"error", code}, {"detail", detail}}.dump();
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
    frame += json(*key).dump();
    frame += R"(,"subs":)";
    frame += json(p.subs).dump();
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
  s.wake = nullptr;
  --stats_.connections;
}

std::string SubscriptionHub::hello(const Subscriber& s) const {
  const auto& who = s.principal();
  return json{{"type", "hello"}, {"role", to_string(who.role)}, {"community", who.community}, {"unit", who.unit}}.dump();
}

std::vector<std::string> SubscriptionHub::on_message(Subscriber& s, std::string_view text) {
  if (text.size() > limits_.max_message_bytes) return {error_frame("", "too_large", "messages are at most 4 KiB")};
  json m = json::parse(text, nullptr, false);
  if (m.is_discarded() || !m.is_object()) return {error_frame("", "bad_request", "send a JSON object")};
  const std::string op = m.value("op", ""), id = m.value("id", "");
  if (id.empty() || id.size() > 64) return {error_frame(id, "bad_request", "id (1..64 bytes) names the subscription")};
  if (op == "unsubscribe") {
    if (!s.subscriptions_.contains(id)) return {error_frame(id, "not_found", "no subscription " + id)};
    unsubscribe(s, id);
    return {json{{"type", "unsubscribed"}, {"id", id}}.dump()};
  }
  if (op != "subscribe") return {error_frame(id, "bad_request", "op must be subscribe or unsubscribe")};
  if (s.subscriptions_.contains(id)) return {error_frame(id, "conflict", "subscription " + id + " exists")};
  if (s.subscriptions_.size() >= limits_.max_subscriptions) {
    return {error_frame(id, "too_many", fmt::format("at most {} subscriptions per connection", limits_.max_subscriptions))};
  }
  std::string prefix;
  bool exact = false;
  if (m.contains("key")) {
    prefix = m.value("key", "");
    exact = true;
  } else if (m.contains("prefix")) {
    prefix = m.value("prefix", "");
  } else if (m.value("stream", "") == "alerts") {
    prefix = "alerts/";
  } else {
    return {error_frame(id, "bad_request", "give a key, a prefix or \"stream\":\"alerts\"")};
  }
  if (!processors::Projector::is_projection_key(prefix)) {
    return {error_frame(id, "bad_request",
                        "keys and prefixes start with a projection: devices/, alerts/, meters/, gates/, elders/, homes/, "
                        "communities/, registry/, commands/, notices/")};
  }
  return {subscribe(s, id, std::move(prefix), exact)};
}

std::string SubscriptionHub::subscribe(Subscriber& s, const std::string& id, std::string prefix, bool exact) {
  // The commit first, then the view: the view holds at least every change up to that commit, so
  // later commits' changes are exactly what the snapshot may lack.
  const std::uint64_t seq = committed_();
  auto view = store_.view();
  json items = json::array();
  bool truncated = false;
  const auto& who = s.principal();
  auto add = [&](const std::string& key, const std::string& raw) {
    json value = json::parse(raw, nullptr, false);
    if (value.is_discarded() || !may_read(who, key, scope_of(key, value))) return;
    items.push_back(json{{"key", key}, {"value", std::move(value)}});
  };
  if (exact) {
    if (auto raw = view.get(prefix)) add(prefix, *raw);
  } else {
    std::string cursor;
    while (!truncated) {
      auto chunk = view.scan(prefix, cursor, 512);
      if (chunk.empty()) break;
      for (const auto& [key, raw] : chunk) {
        cursor = key;
        if (items.size() == limits_.max_snapshot) {
          truncated = true;
          break;
        }
        add(key, raw);
      }
    }
  }
  s.subscriptions_[id] = {prefix, exact, seq};
  by_prefix_[prefix].push_back({&s, id});
  ++prefix_lengths_[prefix.size()];
  ++stats_.subscriptions;
  return json{{"type", "snapshot"}, {"id", id}, {"seq", seq}, {"items", std::move(items)}, {"truncated", truncated}}.dump();
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
          if (!scope) scope = scope_of(key, json::parse(raw, nullptr, false));
          if (!may_read(who, key, *scope)) continue;
        }
        if (!value) value = std::make_shared<const std::string>(raw);
        auto [p, inserted] = s->pending_.try_emplace(key);
        if (inserted) {
          s->order_.push_back(&p->first);
        } else if (p->second.value != value) {
          ++stats_.coalesced;
        }
        p->second.value = value;
        if (std::find(p->second.subs.begin(), p->second.subs.end(), id) == p->second.subs.end()) p->second.subs.push_back(id);
        s->last_seq_ = seq;
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
