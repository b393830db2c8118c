// Duty rosters: who is on duty at a moment, in the compound's local time (issue 16).
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "processors/roster.h"

using namespace courtyard::processors;
using nlohmann::json;

namespace {

constexpr int kChina = 480;  // UTC+8
// 2026-11-30 was a Monday. Local time in China, as ms since the epoch.
constexpr std::int64_t kMonday = 1795968000000;  // 2026-11-30 00:00 +08:00 (2026-11-29 16:00 UTC)
std::int64_t at(int day, int hour, int minute = 0) {
  return kMonday + std::int64_t{day} * 86'400'000 + std::int64_t{hour} * 3'600'000 + std::int64_t{minute} * 60'000;
}

Roster grid_a() {
  return *roster_from_json(json::parse(R"({"week":[
    {"day":"mon","from":"08:00","to":"20:00","staff":"zhang"},
    {"day":"mon","from":"20:00","to":"08:00","staff":"li"},
    {"day":"tue","from":"08:00","to":"20:00","staff":"zhang"},
    {"day":"sun","from":"22:00","to":"06:00","staff":"wang"}]})"));
}

}  // namespace

TEST_SUITE("duty rosters") {
  TEST_CASE("the shift covering the moment is on duty, in local time") {
    const auto r = grid_a();
    CHECK(on_duty(r, at(0, 8), kChina) == "zhang");
    CHECK(on_duty(r, at(0, 19, 59), kChina) == "zhang");
    CHECK(on_duty(r, at(0, 7, 59), kChina) == std::nullopt);  // before Monday's first shift: nobody
    // The same instant read in UTC is Monday 00:00 there: Sunday night's shift. The offset matters.
    CHECK(on_duty(r, at(0, 8), 0) == "wang");
  }

  TEST_CASE("a night shift runs past midnight into the next day, and the incoming shift has the handover") {
    const auto r = grid_a();
    CHECK(on_duty(r, at(0, 20), kChina) == "li");     // handover at 20:00: the night shift
    CHECK(on_duty(r, at(0, 23, 59), kChina) == "li");
    CHECK(on_duty(r, at(1, 0), kChina) == "li");      // midnight: still Monday's night shift
    CHECK(on_duty(r, at(1, 7, 59), kChina) == "li");
    CHECK(on_duty(r, at(1, 8), kChina) == "zhang");   // Tuesday's day shift takes over
    CHECK(on_duty(r, at(1, 20), kChina) == std::nullopt);
  }

  TEST_CASE("Sunday night runs into Monday morning across the week's end") {
    const auto r = grid_a();
    CHECK(on_duty(r, at(6, 23), kChina) == "wang");
    CHECK(on_duty(r, at(7, 5, 59), kChina) == "wang");  // the next Monday
    CHECK(on_duty(r, at(0, 5, 59), kChina) == "wang");  // this Monday: last Sunday's night
    CHECK(on_duty(r, at(0, 6), kChina) == std::nullopt);
  }

  TEST_CASE("exceptions override the week: a swap, and a span nobody staffs; the later one wins") {
    auto r = grid_a();
    r.exceptions.push_back({at(0, 22), at(1, 2), "chen"});   // chen covers part of li's night
    r.exceptions.push_back({at(1, 0), at(1, 1), ""});        // and the post is empty for an hour of it
    CHECK(on_duty(r, at(0, 21), kChina) == "li");
    CHECK(on_duty(r, at(0, 22), kChina) == "chen");
    CHECK(on_duty(r, at(1, 0, 30), kChina) == std::nullopt);
    CHECK(on_duty(r, at(1, 1), kChina) == "chen");
    CHECK(on_duty(r, at(1, 2), kChina) == "li");             // an exception ends where it says
  }

  TEST_CASE("a roster from a request: days, HH:MM times and ids are checked; it reads back as given") {
    const auto j = json::parse(R"({"week":[{"day":"sun","from":"22:00","to":"24:00","staff":"wang"}],
                                   "exceptions":[{"from":1,"to":2,"staff":""}]})");
    auto r = roster_from_json(j);
    REQUIRE(r);
    CHECK(r->week[0].end_min == 1440);
    CHECK(roster_from_json(to_json(*r)).value() == *r);
    for (const char* bad : {R"([])", R"({"week":{}})", R"({"week":[{"day":"moon","from":"08:00","to":"09:00","staff":"a"}]})",
                            R"({"week":[{"day":"mon","from":"8:00","to":"09:00","staff":"a"}]})",
                            R"({"week":[{"day":"mon","from":"08:00","to":"25:00","staff":"a"}]})",
                            R"({"week":[{"day":"mon","from":"08:00","to":"09:00","staff":"a b"}]})",
                            R"({"week":[{"day":"mon","from":"08:00","to":"09:00"}]})",
                            R"({"exceptions":[{"from":2,"to":1}]})", R"({"exceptions":[{"from":"1","to":2}]})"}) {
      CAPTURE(bad);
      CHECK_FALSE(roster_from_json(json::parse(bad)));
    }
  }
}
