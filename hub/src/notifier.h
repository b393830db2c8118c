#pragma once
// The webhook sender (issue 16): carries the notifications the alerts fold decided (indexed under
// notifypending/ by the notifications projection) to an HTTP gateway, signed, with retries, and
// appends what became of each (notification.status: delivered, or failed after the last attempt),
// which the projection folds into the notification's record. The fold decides; this only carries,
// so a replay decides the same. At least once: a hub killed between a delivery and its status
// sends it again; the gateway dedupes by the X-Courtyard-Notification header.
#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <map>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "processors/store.h"
#include "schemas/event.h"

namespace courtyard::hub {

struct NotifierConfig {
  std::string url;     // http://host[:port]/path
  std::string secret;  // the signing key
  int attempts = 5;
  std::chrono::milliseconds timeout{3000};
  std::chrono::milliseconds backoff{1000};  // before the 2nd attempt; doubled for each after
  std::size_t batch = 1000;                 // pending notifications looked at per pass
  // Older than this when first looked at (a sender that was off for hours, a store rebuilt): failed
  // as expired, never sent: news of a fall hours late misleads more than it helps.
  std::chrono::milliseconds max_age{std::chrono::hours(1)};
};

// What a receiver checks: "sha256=" and the hex HMAC-SHA256 of "{timestamp}.{body}" under the secret.
std::string webhook_signature(std::string_view secret, std::int64_t timestamp_ms, std::string_view body);

// POSTs a JSON body; the HTTP status, or why there was none.
using Header = std::pair<std::string, std::string>;
std::expected<int, std::string> post_json(const std::string& url, const std::string& body, const std::vector<Header>& headers,
                                          std::chrono::milliseconds timeout);

class Notifier {
 public:
  using Append = std::function<bool(const schemas::Event&)>;  // true once Kafka has it
  using Post = std::function<std::expected<int, std::string>(const std::string& body, const std::vector<Header>& headers)>;
  Notifier(NotifierConfig config, processors::Store& store, Append append, Post post = {});
  // One pass at `now_ms`: each pending notification whose attempt is due is POSTed; a 2xx is
  // delivered, the last failed attempt failed, each settled with a status event. Returns how many settled.
  std::size_t run_once(std::int64_t now_ms);
  void run(std::stop_token stop);

 private:
  // The body POSTed for a notification record (recipients: person tokens or vault subject ids).
  static std::string body_of(const nlohmann::json& record, const std::vector<std::string>& recipients);
  std::vector<std::string> recipients(const processors::Store::View& view, const nlohmann::json& record) const;
  struct Outcome {
    bool delivered = false;
    std::string detail;
  };
  struct Attempts {
    int made = 0;
    std::int64_t next_ms = 0;
    std::optional<Outcome> outcome;  // decided; its status event still to append
    bool settled = false;            // status appended; the index entry goes when the projection folds it
  };
  NotifierConfig config_;
  processors::Store& store_;
  Append append_;
  Post post_;
  std::map<std::string, Attempts> attempts_;  // by notifypending/ key
};

}  // namespace courtyard::hub
