// The webhook sender: what the alerts fold decided is POSTed once, signed, retried with backoff,
// and what became of it is folded back into the notification's record.
#include <doctest/doctest.h>

#include "notifier.h"
#include "processors/projector.h"
#include "processors/record.h"
#include "events.h"
#include "stores.h"

using namespace courtyard;
using nlohmann::json;

namespace {

constexpr std::int64_t kT0 = 1'795'950'000'000;
const std::string kDaughter = "p-0123456789abcdef01234567", kSon = "p-89abcdef0123456789abcdef";

// A community whose wearer in b1-101 falls, with a grid worker on duty all week; the log's
// messages go through the projector as the hub's would (with a webhook configured).
struct Desk {
  test::TempDir dir;
  std::unique_ptr<processors::Store> store = test::open_store(dir);
  processors::Projector projector{*store, config()};
  std::int64_t offset = 0;
  std::uint64_t seq = 0;
  std::vector<schemas::Event> appended;  // status events the notifier appended
  struct Call {
    std::string body;
    std::map<std::string, std::string> headers;
  };
  std::vector<Call> calls;
  int answer = 200;

  static processors::ProjectorConfig config() {
    processors::ProjectorConfig c;
    c.notify_webhook = true;
    return c;
  }
  explicit Desk(bool contacts = true) {
    fold("w1", schemas::DeviceRegistered{schemas::DeviceKind::Wearable, "b1-101", "Building 1, flat 101"}, 0);
    schemas::DutyRoster roster{"all", "grid_worker", {}, {}, "admin"};
    for (int d = 0; d < 7; ++d) roster.week.push_back({d, 0, 1440, "wang"});
    fold("hub", roster, 0);
    if (contacts) fold("hub", schemas::EmergencyContacts{"b1-101", "w1", "", {kDaughter, kSon}}, 0);
    fold("w1", schemas::WearableAlarm{schemas::AlarmKind::Fall, false}, ++seq);
  }
  void fold(const std::string& device, schemas::Body body, std::uint64_t s) {
    schemas::Event e;
    e.device = DeviceId(device);
    e.community = CommunityId("c1");
    e.seq = s;
    e.device_time_ms = e.ingest_time_ms = kT0 + offset;
    e.body = std::move(body);
    fold(e);
  }
  void fold(const schemas::Event& e) {
    std::vector<processors::LogMessage> batch{test::log_message(e, offset++)};
    REQUIRE(projector.apply(batch));
  }
  hub::Notifier notifier(int attempts = 3) {
    return hub::Notifier({"http://unused", "secret", attempts, std::chrono::milliseconds(100), std::chrono::milliseconds(1000)},
                         *store, [this](const schemas::Event& e) { appended.push_back(e); return true; },
                         [this](const std::string& body, const std::vector<hub::Header>& headers) -> std::expected<int, std::string> {
                           calls.push_back({body, {headers.begin(), headers.end()}});
                           return answer;
                         });
  }
  // The notifier's status events, into the log and through the projector.
  void fold_statuses() {
    for (auto& e : appended) fold(e);
    appended.clear();
  }
  json record(const std::string& id) {
    auto raw = store->view().get(processors::Projector::notification_key("c1", id));
    REQUIRE(raw);
    return processors::parse_record(*raw);
  }
  std::size_t pending() { return store->view().scan(processors::Projector::kNotifyPendingPrefix, "", 1000).size(); }
};

}  // namespace

TEST_SUITE("webhook notifier") {
  TEST_CASE("each notification is POSTed once, signed, to its recipients, and its delivery lands in its record") {
    Desk d;
    REQUIRE(d.pending() == 3);  // the family told of the fall, wang assigned, the family told of wang
    auto n = d.notifier();
    CHECK(n.run_once(kT0) == 3);
    REQUIRE(d.calls.size() == 3);
    const auto family = json::parse(d.calls[0].body);
    CHECK(family["what"] == "alert");
    CHECK(family["to"] == "family");
    CHECK(family["recipients"] == json::array({kDaughter, kSon}));  // subject ids, never numbers
    CHECK(family["location"] == "Building 1, flat 101");
    CHECK(json::parse(d.calls[1].body)["recipients"] == json::array({"wang"}));
    CHECK(json::parse(d.calls[2].body)["what"] == "staff_assigned");
    const auto& h = d.calls[0].headers;
    CHECK(h.at("X-Courtyard-Notification") == "c1:fall:w1:1~1");
    CHECK(h.at("X-Courtyard-Signature") == hub::webhook_signature("secret", std::stoll(h.at("X-Courtyard-Timestamp")), d.calls[0].body));
    CHECK(h.at("X-Courtyard-Signature") != hub::webhook_signature("another", std::stoll(h.at("X-Courtyard-Timestamp")), d.calls[0].body));

    CHECK(n.run_once(kT0 + 10) == 0);  // settled, not yet folded: not sent again
    CHECK(d.calls.size() == 3);
    d.fold_statuses();
    CHECK(d.pending() == 0);
    CHECK(d.record("c1:fall:w1:1~1")["webhook"]["state"] == "delivered");
    CHECK(d.record("c1:fall:w1:1~1")["webhook"]["attempts"] == 1);
    CHECK(n.run_once(kT0 + 20) == 0);
    CHECK(d.calls.size() == 3);
  }

  TEST_CASE("a gateway that keeps failing is tried again after 1 s, then 2 s, and the notification is failed with its answer") {
    Desk d;
    d.answer = 503;
    auto n = d.notifier(3);
    CHECK(n.run_once(kT0) == 0);
    CHECK(d.calls.size() == 3);
    CHECK(n.run_once(kT0 + 999) == 0);
    CHECK(d.calls.size() == 3);
    CHECK(n.run_once(kT0 + 1000) == 0);
    CHECK(d.calls.size() == 6);
    CHECK(n.run_once(kT0 + 2999) == 0);
    CHECK(n.run_once(kT0 + 3000) == 3);
    CHECK(d.calls.size() == 9);
    d.fold_statuses();
    const auto webhook = d.record("c1:fall:w1:1~2")["webhook"];
    CHECK(webhook["state"] == "failed");
    CHECK(webhook["attempts"] == 3);
    CHECK(webhook["detail"] == "HTTP 503");
    CHECK(d.pending() == 0);
    // A delivery reported after a failure (another sender got through) stands; a failure never
    // overrides a delivery.
    schemas::Event late;
    late.device = DeviceId("notifier");
    late.community = CommunityId("c1");
    late.body = schemas::NotificationStatus{"c1:fall:w1:1~2", "webhook", "delivered", 4, ""};
    d.fold(late);
    late.body = schemas::NotificationStatus{"c1:fall:w1:1~2", "webhook", "failed", 5, "HTTP 500"};
    d.fold(late);
    CHECK(d.record("c1:fall:w1:1~2")["webhook"]["state"] == "delivered");
  }

  TEST_CASE("a family with no emergency contacts is not POSTed: failed at once, saying so; staff are still told") {
    Desk d(/*contacts=*/false);
    auto n = d.notifier();
    CHECK(n.run_once(kT0) == 3);
    REQUIRE(d.calls.size() == 1);  // wang only
    d.fold_statuses();
    CHECK(d.record("c1:fall:w1:1~1")["webhook"]["detail"] == "no emergency contacts to tell");
    CHECK(d.record("c1:fall:w1:1~2")["webhook"]["state"] == "delivered");
  }

  TEST_CASE("a status naming a notification this log never decided, or a state that is not one, changes nothing") {
    Desk d;
    schemas::Event forged;
    forged.device = DeviceId("notifier");
    forged.community = CommunityId("c1");
    forged.body = schemas::NotificationStatus{"c1:fall:w1:1~99", "webhook", "delivered", 1, ""};
    d.fold(forged);
    CHECK_FALSE(d.store->view().get(processors::Projector::notification_key("c1", "c1:fall:w1:1~99")));
    forged.body = schemas::NotificationStatus{"c1:fall:w1:1~1", "webhook", "exploded", 1, ""};
    d.fold(forged);
    CHECK(d.record("c1:fall:w1:1~1")["webhook"]["state"] == "pending");
    CHECK(d.pending() == 3);
  }

  TEST_CASE("notifications decided more than an hour before the sender saw them are failed as expired, never sent") {
    Desk d;
    auto n = d.notifier();
    CHECK(n.run_once(kT0 + 2 * 3'600'000) == 3);
    CHECK(d.calls.empty());
    d.fold_statuses();
    CHECK(d.record("c1:fall:w1:1~2")["webhook"]["detail"].get<std::string>().starts_with("expired"));
  }

  TEST_CASE("a log that refuses the status is asked again, without a second POST") {
    Desk d;
    bool refuse = true;
    hub::Notifier n({"http://unused", "secret", 3, std::chrono::milliseconds(100), std::chrono::milliseconds(1000)}, *d.store,
                    [&](const schemas::Event& e) { if (refuse) return false; d.appended.push_back(e); return true; },
                    [&](const std::string& body, const std::vector<hub::Header>&) -> std::expected<int, std::string> {
                      d.calls.push_back({body, {}});
                      return 200;
                    });
    CHECK(n.run_once(kT0) == 0);
    CHECK(d.calls.size() == 3);
    refuse = false;
    CHECK(n.run_once(kT0 + 1000) == 3);
    CHECK(d.calls.size() == 3);
    d.fold_statuses();
    CHECK(d.record("c1:fall:w1:1~1")["webhook"]["state"] == "delivered");
  }

  TEST_CASE("the client reports a gateway that is not there, and refuses what is not an http:// URL") {
    CHECK_FALSE(hub::post_json("http://127.0.0.1:1/hook", "{}", {}, std::chrono::milliseconds(500)));
    // A header value that would split the request (an id shaped by a device) is refused before any byte leaves.
    auto split = hub::post_json("http://127.0.0.1:1/hook", "{}", {{"X-Courtyard-Notification", "a\r\nX-Evil: 1"}},
                                std::chrono::milliseconds(500));
    REQUIRE_FALSE(split);
    CHECK(split.error().find("control character") != std::string::npos);
    CHECK_FALSE(hub::post_json("https://example.org/hook", "{}", {}, std::chrono::milliseconds(500)));
    CHECK_FALSE(hub::post_json("file:///etc/passwd", "{}", {}, std::chrono::milliseconds(500)));
  }
}
