#include "privacy_sweep.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace courtyard::hub {
namespace {

using json = nlohmann::json;
constexpr std::int64_t kDayMs = 86'400'000;

template <class F>
void each_person(const processors::Store::View& view, F&& f) {
  std::string after;
  for (;;) {
    auto chunk = view.scan("people/", after, 512);
    if (chunk.empty()) return;
    for (const auto& [key, raw] : chunk) {
      after = key;
      json j = json::parse(raw, nullptr, false);
      if (j.is_object()) f(j);
    }
  }
}

}  // namespace

std::vector<Erasure> due_for_erasure(const processors::Store::View& view, std::int64_t now_ms, const RetentionPolicy& policy) {
  std::vector<Erasure> due;
  if (policy.visitor_days <= 0) return due;
  each_person(view, [&](const json& p) {
    if (p.value("erased", false) || p.value("kind", "") != "visitor") return;
    const std::int64_t recorded = p.value("recorded_at", std::int64_t{0});
    if (recorded + policy.visitor_days * kDayMs > now_ms) return;
    due.push_back({p.value("community", ""), p.value("subject", ""),
                   "retention: visitors' records are kept " + std::to_string(policy.visitor_days) + " days"});
  });
  return due;
}

std::vector<std::string> keys_of_the_forgotten(const processors::Store::View& view, const Vault& vault) {
  std::vector<std::string> out;
  each_person(view, [&](const json& p) {
    const std::string subject = p.value("subject", "");
    if (p.value("erased", false) && vault.holds(subject)) out.push_back(subject);
  });
  return out;
}

SweepReport sweep(const processors::Store& store, const Vault& vault, std::int64_t now_ms, const RetentionPolicy& policy,
                  const std::function<bool(const schemas::Event&)>& append) {
  SweepReport report;
  auto view = store.view();
  for (const auto& subject : keys_of_the_forgotten(view, vault)) {
    if (vault.destroy(subject)) {
      ++report.keys_destroyed_again;
      spdlog::warn("privacy: the key of {}, forgotten in the log, was back (a restored backup?); destroyed again", subject);
    } else {
      ++report.failures;
    }
  }
  for (const auto& e : due_for_erasure(view, now_ms, policy)) {
    if (!vault.destroy(e.subject)) {
      ++report.failures;
      continue;
    }
    schemas::Event event;
    event.device = DeviceId("retention");
    event.community = CommunityId(e.community);
    event.body = schemas::PersonForgotten{e.subject, "retention", e.reason};
    if (!append(event)) {
      ++report.failures;  // the key is gone already; the next sweep appends the event
      continue;
    }
    ++report.erased;
  }
  if (report.erased || report.keys_destroyed_again || report.failures) {
    spdlog::info("privacy: retention sweep erased {} people, destroyed {} returned keys, {} failures", report.erased,
                 report.keys_destroyed_again, report.failures);
  }
  return report;
}

}  // namespace courtyard::hub
