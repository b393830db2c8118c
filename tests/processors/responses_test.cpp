// Response figures: what a day's resolved incidents say of how fast the compound answers.
#include <doctest/doctest.h>

#include "processors/responses.h"

using namespace courtyard::processors;
using json = nlohmann::json;

namespace {

constexpr std::int64_t kT0 = 1'795'950'000'000;
constexpr std::int64_t kS = 1000;

// A fall in grid-a, told to `who`, acknowledged, reached and resolved so many seconds after it opened.
Alert incident(const std::string& id, const std::string& who, std::int64_t ack_s, std::int64_t arrive_s, std::int64_t resolve_s,
               int chain_step = 0) {
  Alert a;
  a.id = id;
  a.rule = "fall";
  a.severity = "major";
  a.state = "resolved";
  a.community = "c1";
  a.grid = "grid-a";
  a.assignee = who;
  a.chain_step = chain_step;
  a.opened_at_ms = kT0;
  a.assigned_at_ms = kT0;
  a.acknowledged_at_ms = ack_s < 0 ? 0 : kT0 + ack_s * kS;
  a.arrived_at_ms = arrive_s < 0 ? 0 : kT0 + arrive_s * kS;
  a.resolved_at_ms = kT0 + resolve_s * kS;
  return a;
}

}  // namespace

TEST_SUITE("response figures") {
  TEST_CASE("only a resolved alert that was dispatched is an incident") {
    auto a = incident("c1:fall:w:1", "wang", 30, 240, 900);
    CHECK(response_of(a).has_value());
    a.state = "acknowledged";
    CHECK_FALSE(response_of(a).has_value());
    a.state = "resolved";
    a.assigned_at_ms = 0;  // a community without rosters
    CHECK_FALSE(response_of(a).has_value());
  }

  TEST_CASE("durations count from the opening; escalated or never acknowledged is a breach") {
    auto r = *response_of(incident("c1:fall:w:1", "wang", 30, 240, 900));
    CHECK(r.ack_ms == 30'000);
    CHECK(r.arrive_ms == 240'000);
    CHECK(r.resolve_ms == 900'000);
    CHECK_FALSE(r.breached);
    CHECK(response_of(incident("c1:fall:w:2", "chen", 330, 600, 900, 1))->breached);
    auto silent = *response_of(incident("c1:fall:w:3", "wang", -1, -1, 900));
    CHECK(silent.breached);
    CHECK(silent.ack_ms == -1);
    CHECK(silent.arrive_ms == -1);
  }

  TEST_CASE("p50 and p90 by nearest rank, overall and per grid, rule and responder; breaches listed") {
    ResponseDay day{"c1", "2026-11-29", {}, 0};
    for (int i = 1; i <= 10; ++i) {
      record(day, "c1:fall:w:" + std::to_string(i), *response_of(incident("c1:fall:w:" + std::to_string(i),
                                                                            i <= 5 ? "wang" : "li", i * 10, i * 60, 1000)));
    }
    auto sos = incident("c1:sos:w:1", "chen", 500, -1, 2000, 1);
    sos.rule = "sos";
    record(day, sos.id, *response_of(sos));
    auto j = to_json(day);
    CHECK(j["figures"]["incidents"] == 11);
    CHECK(j["figures"]["breached"] == 1);
    CHECK(j["figures"]["acknowledge"] == json{{"count", 11}, {"p50_ms", 60'000}, {"p90_ms", 100'000}});
    CHECK(j["figures"]["arrive"]["count"] == 10);  // the SOS was never reached
    CHECK(j["by_responder"]["wang"]["acknowledge"]["p90_ms"] == 50'000);
    CHECK(j["by_responder"]["li"]["acknowledge"]["p50_ms"] == 80'000);
    CHECK(j["by_grid"]["grid-a"]["incidents"] == 11);
    CHECK(j["by_rule"]["fall"]["incidents"] == 10);
    CHECK(j["breached"] == json::array({"c1:sos:w:1"}));
    CHECK(response_day_from_json(json::parse(j.dump())) == day);
  }

  TEST_CASE("an alert resolved twice (reopened) counts once, as it ended; a day past its cap counts the rest") {
    ResponseDay day{"c1", "2026-11-29", {}, 0};
    record(day, "c1:fall:w:1", *response_of(incident("c1:fall:w:1", "wang", 30, 60, 100)));
    record(day, "c1:fall:w:1", *response_of(incident("c1:fall:w:1", "wang", 30, 60, 400)));
    CHECK(day.incidents.size() == 1);
    CHECK(day.incidents.at("c1:fall:w:1").resolve_ms == 400'000);
    for (std::size_t i = 0; i < kMaxIncidentsPerDay + 3; ++i) {
      record(day, "x" + std::to_string(i), *response_of(incident("x", "wang", 1, 2, 3)));
    }
    CHECK(day.incidents.size() == kMaxIncidentsPerDay);
    CHECK(day.dropped == 4);
  }
}
