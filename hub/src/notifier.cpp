#include "notifier.h"

#include <cctype>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/digest.h"
#include "processors/projector.h"
#include "processors/record.h"

namespace courtyard::hub {

using json = nlohmann::json;

std::string webhook_signature(std::string_view secret, std::int64_t timestamp_ms, std::string_view body) {
  return "sha256=" + hmac_sha256_hex(secret, fmt::format("{}.{}", timestamp_ms, body));
}

Notifier::Notifier(NotifierConfig config, processors::Store& store, Append append, Post post)
    : config_(std::move(config)), store_(store), append_(std::move(append)), post_(std::move(post)) {
  if (!post_) {
    post_ = [this](const std::string& body, const std::vector<Header>& headers) {
      return post_json(config_.url, body, headers, config_.timeout);
    };
  }
}

std::string Notifier::body_of(const json& record, const std::vector<std::string>& recipients) {
  json body{{"id", record.value("id", "")},         {"community", record.value("community", "")},
            {"alert", record.value("alert", "")},   {"rule", record.value("rule", "")},
            {"severity", record.value("severity", "")}, {"what", record.value("what", "")},
            {"to", record.value("to", "")},         {"recipients", recipients},
            {"unit", record.value("unit", "")},     {"location", record.value("location", "")},
            {"detail", record.value("detail", "")}, {"at", record.value("at", std::int64_t{0})}};
  return body.dump();
}

// Staff: the assignee's person token. Family: the elder's emergency contacts (vault subject ids,
// never names or numbers: the gateway asks the API for those, and the read is in the trail), the
// wearable's own list first, else the household's.
std::vector<std::string> Notifier::recipients(const processors::Store::View& view, const json& record) const {
  if (record.value("to", "") == "staff") return {record.value("staff", "")};
  const std::string community = record.value("community", ""), unit = record.value("unit", ""),
                    device = record.value("device", "");
  for (const std::string& who : {device, std::string("~")}) {
    if (who.empty()) continue;
    auto raw = view.get("contacts/" + community + "/" + unit + "/" + who);
    if (!raw) continue;
    auto contacts = processors::parse_record(*raw).value("contacts", json::array());
    std::vector<std::string> out;
    for (const auto& c : contacts) {
      if (c.is_string()) out.push_back(c.get<std::string>());
    }
    if (!out.empty()) return out;
  }
  return {};
}

namespace {

// A notification id in a header: alert ids carry device subjects (tokens, plates), which a
// hostile device shapes; anything but [A-Za-z0-9._~:-] is percent-encoded.
std::string header_safe(std::string_view id) {
  std::string out;
  for (unsigned char c : id) {
    if (std::isalnum(c) || c == '.' || c == '_' || c == '~' || c == ':' || c == '-') out += static_cast<char>(c);
    else out += fmt::format("%{:02X}", c);
  }
  return out;
}

}  // namespace

std::size_t Notifier::run_once(std::int64_t now_ms) {
  auto view = store_.view();
  const auto pending = view.scan(processors::Projector::kNotifyPendingPrefix, "", config_.batch);
  // What the projection has settled leaves the index; so does its memory here.
  std::erase_if(attempts_, [&](const auto& kv) {
    return std::none_of(pending.begin(), pending.end(), [&](const auto& p) { return p.first == kv.first; });
  });
  std::size_t settled = 0;
  for (const auto& [key, _] : pending) {
    auto& tried = attempts_[key];
    if (tried.settled || now_ms < tried.next_ms) continue;
    const std::string rest = key.substr(std::string_view(processors::Projector::kNotifyPendingPrefix).size());
    const auto slash = rest.find('/');
    if (slash == std::string::npos) continue;
    const std::string community = rest.substr(0, slash), id = rest.substr(slash + 1);
    if (!tried.outcome) {  // a status already decided (its append failed) is appended, never sent again
      try {
        auto raw = view.get(processors::Projector::notification_key(community, id));
        if (!raw) continue;
        const json record = processors::parse_record(*raw);
        if (now_ms - record.value("at", std::int64_t{0}) > config_.max_age.count()) {
          tried.outcome = Outcome{false, "expired: decided too long ago to be worth telling"};
        } else {
          const auto who = recipients(view, record);
          std::expected<int, std::string> answer = std::unexpected(std::string("no emergency contacts to tell"));
          if (!who.empty()) {
            const std::string body = body_of(record, who);
            answer = post_({body}, {{"X-Courtyard-Notification", header_safe(id)},
                                    {"X-Courtyard-Timestamp", std::to_string(now_ms)},
                                    {"X-Courtyard-Signature", webhook_signature(config_.secret, now_ms, body)}});
          }
          ++tried.made;
          const bool delivered = answer && *answer >= 200 && *answer < 300;
          if (!delivered && !who.empty() && tried.made < config_.attempts) {
            tried.next_ms = now_ms + config_.backoff.count() * (std::int64_t{1} << std::min(tried.made - 1, 20));
            spdlog::warn("notification {}: attempt {} failed ({}); again in {} ms", id, tried.made,
                         answer ? "HTTP " + std::to_string(*answer) : answer.error(), tried.next_ms - now_ms);
            continue;
          }
          tried.outcome = Outcome{delivered, delivered ? "" : answer ? "HTTP " + std::to_string(*answer) : answer.error()};
        }
      } catch (const std::exception& e) {  // a record that does not read as one: failed, not retried for ever
        tried.outcome = Outcome{false, std::string("unreadable record: ") + e.what()};
      }
    }
    schemas::Event status;
    status.device = DeviceId("notifier");
    status.community = CommunityId(community);
    status.body = schemas::NotificationStatus{id, "webhook", tried.outcome->delivered ? "delivered" : "failed", tried.made,
                                              tried.outcome->detail};
    if (!append_(status)) {
      tried.next_ms = now_ms + config_.backoff.count();  // the log refused: say it again later
      continue;
    }
    if (!tried.outcome->delivered) spdlog::error("notification {} failed after {} attempt(s): {}", id, tried.made, tried.outcome->detail);
    tried.settled = true;
    ++settled;
  }
  return settled;
}

void Notifier::run(std::stop_token stop) {
  while (!stop.stop_requested()) {
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch()).count();
    try {
      run_once(now);
    } catch (const std::exception& e) {
      spdlog::error("notifier: {}", e.what());
    }
    for (int i = 0; i < 5 && !stop.stop_requested(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace courtyard::hub
