#include "privacy_sweep.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace courtyard::hub {
namespace {

using json = nlohmann::json;
constexpr std::int64_t kDayMs = 86'400'000;

// Every person's record (`only`: "{community}/{subject}", that one).
template <class F>
void each_person(const processors::Store::View& view, const std::string& only, F&& f) {
  if (!only.empty()) {
    auto raw = view.get("people/" + only);
    json j = raw ? json::parse(*raw, nullptr, false) : json();
    if (j.is_object()) f(j);
    return;
  }
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

std::vector<Erasure> due_for_erasure(const processors::Store::View& view, std::int64_t now_ms, const RetentionPolicy& policy,
                                     const std::string& only) {
  std::vector<Erasure> due;
  if (policy.visitor_days <= 0) return due;
  each_person(view, only, [&](const json& p) {
    if (p.value("erased", false) || p.value("kind", "") != "visitor") return;
    const auto since = p.find("visitor_since");
    if (since == p.end() || !since->is_number_integer()) return;
    if (since->get<std::int64_t>() + policy.visitor_days * kDayMs > now_ms) return;
    due.push_back({p.value("community", ""), p.value("subject", ""),
                   "retention: visitors' records are kept " + std::to_string(policy.visitor_days) + " days"});
  });
  return due;
}

std::vector<std::string> keys_of_the_forgotten(const processors::Store::View& view, const Vault& vault) {
  std::vector<std::string> out;
  each_person(view, "", [&](const json& p) {
    const std::string subject = p.value("subject", "");
    // Any file left, even one that does not open (a crash mid-destroy): destroy it again.
    if (p.value("erased", false) && vault.has_key_file(subject)) out.push_back(subject);
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
    // Read again just before: only a record as due now as it was a moment ago loses its key.
    if (due_for_erasure(store.view(), now_ms, policy, e.community + "/" + e.subject).empty()) continue;
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
