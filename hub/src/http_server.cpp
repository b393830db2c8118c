#include "http_server.h"

#include <atomic>
#include <deque>
#include <functional>
#include <list>
#include <mutex>
#include <unordered_map>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/metrics.h"

namespace courtyard::hub {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kSubscribePath = "/api/v1/subscribe";
constexpr std::string_view kSubprotocol = "courtyard.v1";
constexpr std::string_view kBearerProtocol = "bearer.";

// Headers every HTTP response carries: the dashboard's page may load only its own scripts,
// styles and images and talk only to its own origin, is never framed, and no response is sniffed
// into another type or cached.
void add_security_headers(http::response<http::string_body>& res) {
  res.set("Content-Security-Policy",
          "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
          "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'");
  res.set("X-Content-Type-Options", "nosniff");
  res.set("X-Frame-Options", "DENY");
  res.set("Referrer-Policy", "no-referrer");
  res.set("Cross-Origin-Opener-Policy", "same-origin");
  res.set("Cross-Origin-Resource-Policy", "same-origin");
  res.set(http::field::cache_control, "no-store");
}

// What the server itself counts (the Api counts requests by route).
struct ServerStats {
  std::atomic<std::int64_t> connections{0};
  std::atomic<std::uint64_t> refused_full{0}, refused_address{0}, refused_busy{0}, refused_credential{0}, accept_errors{0},
      evicted_waiting{0},
      dropped_stalled{0}, closed_token{0}, handler_errors{0};
};

// Counts per key (a token's id, a client's address), for the limits. Thread-safe.
class Counts {
 public:
  // Takes one for `key` unless it has `limit` already.
  bool take(const std::string& key, std::size_t limit) {
    std::lock_guard lock(mu_);
    auto& n = counts_[key];
    if (n >= limit) return false;
    ++n;
    return true;
  }
  void force_take(const std::string& key) {
    std::lock_guard lock(mu_);
    ++counts_[key];
  }
  void give_back(const std::string& key) {
    std::lock_guard lock(mu_);
    if (auto it = counts_.find(key); it != counts_.end() && --it->second == 0) counts_.erase(it);
  }

 private:
  std::mutex mu_;
  std::unordered_map<std::string, std::size_t> counts_;
};

// What every connection shares: the Api, the subscriptions, the worker pool and its admission.
struct Shared {
  Shared(Api& a, SubscriptionHub* s, ServerLimits l) : api(a), hub(s), limits(l), workers(l.workers) {}
  Api& api;
  SubscriptionHub* hub;
  ServerLimits limits;
  asio::thread_pool workers;
  ServerStats stats;

  // Admission to the worker pool, after authentication: at most max_queued jobs, at most
  // max_per_credential of one token (requests and subscription snapshots alike).
  std::atomic<std::size_t> queued{0};
  Counts per_token, websockets_per_token, per_address;

  // Connections waiting for a request (new ones, and keep-alive ones between requests), oldest
  // first. When the server is full, a new connection takes the place of the oldest of them from
  // the same address (or any, when the whole server is full): a client that opens connections and
  // never completes a request holds nothing for long. I/O thread only.
  struct Waiting {
    std::string address;
    std::function<void()> evict;
  };
  std::list<Waiting> waiting;
  // Evicts the oldest waiting connection (of `address`, when given); false when there is none.
  bool evict_oldest(const std::string* address) {
    for (auto it = waiting.begin(); it != waiting.end(); ++it) {
      if (address && it->address != *address) continue;
      auto evict = std::move(it->evict);
      waiting.erase(it);
      ++stats.evicted_waiting;
      evict();
      return true;
    }
    return false;
  }

  enum class Admission { Admitted, Busy, TooMany };
  Admission admit(const std::string& token_id) {
    if (queued.fetch_add(1) >= limits.max_queued) {
      --queued;
      return Admission::Busy;
    }
    if (!per_token.take(token_id, limits.max_per_credential)) {
      --queued;
      return Admission::TooMany;
    }
    return Admission::Admitted;
  }
  void release(const std::string& token_id) {
    per_token.give_back(token_id);
    --queued;
  }
};

// One open connection, counted while it lives (HTTP, then perhaps WebSocket), in all and per
// client address.
struct ConnectionSlot {
  ConnectionSlot(Shared& s, std::string a) : shared(s), address(std::move(a)) { ++shared.stats.connections; }
  ~ConnectionSlot() {
    --shared.stats.connections;
    shared.per_address.give_back(address);
  }
  Shared& shared;
  const std::string address;
};

// An open WebSocket, counted against its token while it lives.
struct WebSocketSlot {
  WebSocketSlot(Shared& s, std::string t) : shared(s), token_id(std::move(t)) {}
  ~WebSocketSlot() { shared.websockets_per_token.give_back(token_id); }
  Shared& shared;
  const std::string token_id;
};

// One WebSocket connection: reads one client message at a time, writes replies first and then
// coalesced changes, one frame in flight at a time. A client's next message is read only once
// its replies have drained below max_queued_frames: a client that sends and never reads stops
// being read, and a write that stalls past write_timeout drops it.
class WsSession : public std::enable_shared_from_this<WsSession> {
 public:
  WsSession(tcp::socket socket, Shared& shared, std::shared_ptr<Subscriber> subscriber,
            std::shared_ptr<ConnectionSlot> slot, std::unique_ptr<WebSocketSlot> ws_slot)
      : ws_(std::move(socket)),
        timer_(ws_.get_executor()),
        check_timer_(ws_.get_executor()),
        shared_(shared),
        hub_(*shared.hub),
        subscriber_(std::move(subscriber)),
        slot_(std::move(slot)),
        ws_slot_(std::move(ws_slot)) {}

  ~WsSession() { hub_.close(*subscriber_); }

  void start(http::request<http::string_body> request, bool echo_subprotocol) {
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws_.read_message_max(hub_.limits().max_message_bytes);
    ws_.set_option(websocket::stream_base::decorator([echo_subprotocol](websocket::response_type& res) {
      res.set(http::field::server, "courtyard");
      if (echo_subprotocol) res.set(http::field::sec_websocket_protocol, std::string(kSubprotocol));
    }));
    ws_.async_accept(request, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return;
      std::weak_ptr<WsSession> weak = self;
      self->subscriber_->wake = [weak] {
        if (auto s = weak.lock()) s->flush();
      };
      self->replies_.push_back(self->hub_.hello(*self->subscriber_));
      self->flush();
      self->maybe_read();
      self->schedule_checks();
    });
  }

 private:
  void maybe_read() {
    if (reading_ || closing_ || snapshot_outstanding_ || replies_.size() >= shared_.limits.max_queued_frames) return;
    reading_ = true;
    ws_.async_read(in_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->reading_ = false;
      if (ec) return self->finish();
      std::string text = beast::buffers_to_string(self->in_.data());
      self->in_.consume(self->in_.size());
      self->on_message(text);
    });
  }

  void on_message(const std::string& text) {
    MessageOutcome outcome;
    try {
      outcome = hub_.on_message(*subscriber_, text);
    } catch (const std::exception& e) {  // a bug, not the client's doing: this connection only
      ++shared_.stats.handler_errors;
      spdlog::error("websocket: message handler failed: {}", e.what());
      return drop();
    }
    for (auto& frame : outcome.frames) replies_.push_back(std::move(frame));
    if (outcome.snapshot) {
      // A snapshot scans the store: it takes a worker like any request, under the token's limit.
      const std::string& token = subscriber_->principal().token_id;
      if (shared_.admit(token) != Shared::Admission::Admitted) {
        ++shared_.stats.refused_credential;
        replies_.push_back(hub_.cancel(*subscriber_, *outcome.snapshot));
      } else {
        snapshot_outstanding_ = true;
        asio::post(shared_.workers, [self = shared_from_this(), job = std::move(*outcome.snapshot), token]() mutable {
          std::string frame;
          try {
            frame = self->hub_.build_snapshot(job);
          } catch (const std::exception& e) {
            spdlog::error("websocket: snapshot of {} failed: {}", job.prefix, e.what());
            frame = R"({"type":"error","id":"","error":"internal","detail":"the snapshot could not be built"})";
          }
          self->shared_.release(token);
          // The session goes back to its own thread whole: its last reference is never dropped here.
          auto executor = self->ws_.get_executor();
          asio::post(executor, [self = std::move(self), frame = std::move(frame)]() mutable {
            self->snapshot_outstanding_ = false;
            self->hub_.snapshot_sent(*self->subscriber_);
            if (self->finished_) return;
            self->replies_.push_back(std::move(frame));
            self->flush();
            self->maybe_read();
          });
        });
      }
    }
    flush();
    maybe_read();
  }

  void flush() {
    if (writing_ || closing_) return;
    if (subscriber_->overflowed()) return close_with("too far behind: more than " +
                                                     std::to_string(hub_.limits().max_pending_keys) + " changes waiting");
    std::string frame;
    if (!replies_.empty()) {
      frame = std::move(replies_.front());
      replies_.pop_front();
    } else if (subscriber_->has_pending() && !subscriber_->snapshot_pending()) {
      auto now = Clock::now();
      if (now < next_changes_at_) {  // too soon after the last frame: let more changes coalesce
        if (!timer_armed_) {
          timer_armed_ = true;
          timer_.expires_at(next_changes_at_);
          timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
            self->timer_armed_ = false;
            if (!ec) self->flush();
          });
        }
        return;
      }
      next_changes_at_ = now + hub_.limits().frame_interval;
      frame = hub_.take_frame(*subscriber_);
    } else {
      return;
    }
    writing_ = true;
    write_started_ = Clock::now();
    out_ = std::move(frame);
    ws_.text(true);
    ws_.async_write(asio::buffer(out_), [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->writing_ = false;
      self->out_.clear();
      self->out_.shrink_to_fit();
      if (ec) return self->finish();
      self->flush();
      self->maybe_read();
    });
  }

  // Every token_check: is the token still good, and is a write stuck?
  void schedule_checks() {
    check_timer_.expires_after(shared_.limits.token_check);
    check_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec || self->finished_) return;
      if (self->writing_ && Clock::now() - self->write_started_ > self->shared_.limits.write_timeout) {
        ++self->shared_.stats.dropped_stalled;
        return self->drop();
      }
      if (!self->shared_.api.token_valid(self->subscriber_->principal().token_id)) {
        ++self->shared_.stats.closed_token;
        return self->close_with("the token was revoked or has expired");
      }
      self->schedule_checks();
    });
  }

  // A polite close with a reason, unless a write is stuck in front of it.
  void close_with(const std::string& why) {
    if (closing_) return;
    if (writing_) return drop();
    closing_ = true;
    websocket::close_reason reason(websocket::close_code::policy_error);
    reason.reason = why;
    ws_.async_close(reason, [self = shared_from_this()](beast::error_code) { self->finish(); });
  }

  // The socket closed at once: every pending operation completes with an error.
  void drop() {
    closing_ = true;
    beast::error_code ec;
    beast::get_lowest_layer(ws_).socket().close(ec);
    finish();
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    timer_.cancel();
    check_timer_.cancel();
    subscriber_->wake = nullptr;
    hub_.close(*subscriber_);
    replies_.clear();
  }

  websocket::stream<beast::tcp_stream> ws_;
  asio::steady_timer timer_, check_timer_;
  Clock::time_point next_changes_at_{}, write_started_{};
  bool timer_armed_ = false;
  Shared& shared_;
  SubscriptionHub& hub_;
  std::shared_ptr<Subscriber> subscriber_;
  std::shared_ptr<ConnectionSlot> slot_;
  std::unique_ptr<WebSocketSlot> ws_slot_;
  beast::flat_buffer in_;
  std::deque<std::string> replies_;
  std::string out_;
  bool writing_ = false, reading_ = false, closing_ = false, finished_ = false, snapshot_outstanding_ = false;
};

// The bearer token among a WebSocket client's offered subprotocols ("courtyard.v1, bearer.<token>").
std::optional<std::string> token_from_subprotocols(std::string_view offered, bool& wants_courtyard) {
  std::optional<std::string> token;
  while (!offered.empty()) {
    auto comma = offered.find(',');
    auto item = offered.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (item == kSubprotocol) wants_courtyard = true;
    if (item.starts_with(kBearerProtocol)) token = std::string(item.substr(kBearerProtocol.size()));
    if (comma == std::string_view::npos) break;
    offered.remove_prefix(comma + 1);
  }
  return token;
}

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, Shared& shared, std::shared_ptr<ConnectionSlot> slot)
      : stream_(std::move(socket)), shared_(shared), slot_(std::move(slot)) {}
  ~Session() { stop_waiting(); }
  void start() { read(); }

 private:
  void read() {
    parser_.emplace();
    parser_->body_limit(64 * 1024);
    parser_->header_limit(16 * 1024);
    stream_.expires_after(shared_.limits.idle_timeout);
    // Until a whole request is in, this connection may give its place to a newer one.
    std::weak_ptr<Session> weak = shared_from_this();
    waiting_ = shared_.waiting.insert(shared_.waiting.end(), {slot_->address, [weak] {
                                        if (auto s = weak.lock()) s->evicted();
                                      }});
    http::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->stop_waiting();
      if (ec) return self->close();
      try {
        self->dispatch();
      } catch (const std::exception& e) {  // a bug, not the client's doing: this connection only
        ++self->shared_.stats.handler_errors;
        spdlog::error("http: request handler failed: {}", e.what());
        self->close();
      }
    });
  }

  void dispatch() {
    request_ = parser_->release();
    HttpRequest req{std::string(request_.method_string()), std::string(request_.target()), request_.body(),
                    std::string(request_[http::field::authorization]), std::string(request_["Idempotency-Key"])};
    if (websocket::is_upgrade(request_)) return upgrade(req);
    // The decoded path decides, never the raw target: "/api%2Fv1/..." is "/api/v1/...".
    const std::string path = Api::parse_target(req.target).path;
    if (!path.starts_with("/api/") && path != "/metrics") return respond(shared_.api.handle(req));
    // Who asks, decided here: a request without a valid token never takes a worker, and the
    // limit counts tokens, however their header is spelled.
    auto who = shared_.api.authenticate(req.authorization);
    if (!who) return respond(who.error());
    switch (shared_.admit(who->token_id)) {
      case Shared::Admission::Busy:
        ++shared_.stats.refused_busy;
        return respond(refusal(503, "unavailable", "the hub is busy; try again shortly"));
      case Shared::Admission::TooMany:
        ++shared_.stats.refused_credential;
        return respond(refusal(429, "too_many_requests", "too many requests of this token at once"));
      case Shared::Admission::Admitted: break;
    }
    stream_.expires_never();  // the worker may take a while (an as-of query replays the log)
    asio::post(shared_.workers, [self = shared_from_this(), req = std::move(req), token = who->token_id]() mutable {
      HttpResponse res;
      try {
        res = self->shared_.api.handle(req);
      } catch (...) {
        res = {500, "application/json", R"({"error":"internal","detail":"unexpected error"})" "\n"};
      }
      self->shared_.release(token);
      // The session goes back to its own thread whole: its last reference is never dropped here.
      auto executor = self->stream_.get_executor();
      asio::post(executor, [self = std::move(self), res = std::move(res)]() mutable { self->respond(std::move(res)); });
    });
  }

  static HttpResponse refusal(int status, const char* code, const char* detail) {
    HttpResponse r{status, "application/json", fmt::format(R"({{"error":"{}","detail":"{}"}})" "\n", code, detail)};
    r.headers.emplace_back("Retry-After", "1");
    return r;
  }

  void upgrade(const HttpRequest& req) {
    auto target = Api::parse_target(req.target);
    if (!shared_.hub || target.path != kSubscribePath) {
      return respond({404, "application/json", R"({"error":"not_found","detail":"WebSocket is served at /api/v1/subscribe"})"});
    }
    if (target.query.contains("token")) {
      return respond({400, "application/json",
                      R"x({"error":"bad_request","detail":"never put a token in a URL: send Sec-WebSocket-Protocol: courtyard.v1, bearer.<token> (or an Authorization header)"})x"});
    }
    bool wants_courtyard = false;
    auto offered = token_from_subprotocols(std::string(request_[http::field::sec_websocket_protocol]), wants_courtyard);
    auto who = shared_.api.authenticate(offered ? *offered : req.authorization);
    if (!who) return respond(who.error());
    if (!shared_.websockets_per_token.take(who->token_id, shared_.limits.max_websockets_per_token)) {
      ++shared_.stats.refused_credential;
      return respond(refusal(429, "too_many_requests", "too many WebSockets of this token are open"));
    }
    auto ws_slot = std::make_unique<WebSocketSlot>(shared_, who->token_id);
    stream_.expires_never();
    auto ws = std::make_shared<WsSession>(stream_.release_socket(), shared_, shared_.hub->open(*who), slot_,
                                          std::move(ws_slot));
    ws->start(std::move(request_), wants_courtyard || offered.has_value());
  }

  void respond(HttpResponse res) {
    auto out = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(res.status),
                                                                   request_.version());
    out->set(http::field::server, "courtyard");
    out->set(http::field::content_type, res.content_type);
    add_security_headers(*out);
    for (const auto& [name, value] : res.headers) out->set(name, value);
    out->keep_alive(request_.keep_alive());
    if (request_.method() != http::verb::head) out->body() = std::move(res.body);
    out->prepare_payload();
    stream_.expires_after(shared_.limits.write_timeout);
    http::async_write(stream_, *out, [self = shared_from_this(), out](beast::error_code ec, std::size_t) {
      if (ec || !out->keep_alive()) return self->close();
      self->read();
    });
  }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  void stop_waiting() {
    if (waiting_) shared_.waiting.erase(*waiting_);
    waiting_.reset();
  }

  void evicted() {
    waiting_.reset();  // Shared::evict_oldest took it off the list
    beast::error_code ec;
    stream_.socket().close(ec);  // the pending read completes with an error and the session ends
  }

  beast::tcp_stream stream_;
  Shared& shared_;
  std::shared_ptr<ConnectionSlot> slot_;
  std::optional<std::list<Shared::Waiting>::iterator> waiting_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::request<http::string_body> request_;
};

}  // namespace

struct HttpServer::Impl {
  Impl(Api& a, SubscriptionHub* s, ServerLimits l) : shared(a, s, l) {}
  // Declared first, destroyed last: the io_context's pending handlers hold sessions whose
  // destructors count down in it.
  Shared shared;
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  asio::steady_timer backoff{io};
  Clock::time_point last_accept_warning{};

  void accept() {
    // One thread runs the io_context, so sessions need no strand.
    acceptor.async_accept(io, [this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (ec) {
        // Out of descriptors (or memory): accepting again at once would spin; wait, then retry.
        ++shared.stats.accept_errors;
        if (auto now = Clock::now(); now - last_accept_warning > std::chrono::seconds(10)) {
          last_accept_warning = now;
          spdlog::warn("http: accept failed ({}); backing off", ec.message());
        }
        backoff.expires_after(shared.limits.accept_backoff);
        backoff.async_wait([this](beast::error_code e) {
          if (!e) accept();
        });
        return;
      }
      beast::error_code peer_ec;
      const std::string address = socket.remote_endpoint(peer_ec).address().to_string();
      bool admitted = true;
      if (static_cast<std::size_t>(shared.stats.connections.load()) >= shared.limits.max_connections &&
          !shared.evict_oldest(nullptr)) {
        admitted = false;
        ++shared.stats.refused_full;
      } else if (!shared.per_address.take(address, shared.limits.max_connections_per_address)) {
        if (shared.evict_oldest(&address)) {
          shared.per_address.force_take(address);  // the evicted one gives its count back as it closes
        } else {
          admitted = false;
          ++shared.stats.refused_address;
        }
      }
      if (!admitted) {
        // A short answer instead of a hang; the socket is new, its send buffer empty.
        static constexpr std::string_view kFull =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n";
        socket.non_blocking(true, ec);
        socket.write_some(asio::buffer(kFull.data(), kFull.size()), ec);
        socket.close(ec);
      } else {
        socket.set_option(tcp::no_delay(true), ec);
        std::make_shared<Session>(std::move(socket), shared, std::make_shared<ConnectionSlot>(shared, address))->start();
      }
      accept();
    });
  }
};

HttpServer::HttpServer(const std::string& host, int port, Api& api, SubscriptionHub* subscriptions, ServerLimits limits)
    : impl_(std::make_unique<Impl>(api, subscriptions, limits)) {
  tcp::endpoint endpoint(asio::ip::make_address(host), static_cast<unsigned short>(port));
  impl_->acceptor.open(endpoint.protocol());
  impl_->acceptor.set_option(asio::socket_base::reuse_address(true));
  impl_->acceptor.bind(endpoint);
  impl_->acceptor.listen(asio::socket_base::max_listen_connections);
}

HttpServer::~HttpServer() {
  impl_->io.stop();
  impl_->shared.workers.join();
}

int HttpServer::port() const { return impl_->acceptor.local_endpoint().port(); }

void HttpServer::run(std::stop_token stop) {
  std::stop_callback on_stop(stop, [this] { asio::post(impl_->io, [this] { impl_->io.stop(); }); });
  impl_->accept();
  impl_->io.run();  // an exception escaping a handler ends the loop here, and the hub with it
}

void HttpServer::publish(std::uint64_t seq, processors::KeyValues changes) {
  if (!impl_->shared.hub) return;
  asio::post(impl_->io, [this, seq, changes = std::move(changes)] { impl_->shared.hub->publish(seq, changes); });
}

std::string HttpServer::render_metrics() const {
  const auto& s = impl_->shared.stats;
  Metrics m;
  m.describe("courtyard_http_connections", "gauge", "Open HTTP and WebSocket connections");
  m.set("courtyard_http_connections", {}, static_cast<double>(s.connections.load()));
  m.describe("courtyard_http_server_refused_total", "counter",
             "Connections and requests the server turned away before the API, by reason");
  m.set("courtyard_http_server_refused_total", {{"reason", "connections_full"}}, static_cast<double>(s.refused_full.load()));
  m.set("courtyard_http_server_refused_total", {{"reason", "address_full"}}, static_cast<double>(s.refused_address.load()));
  m.set("courtyard_http_server_refused_total", {{"reason", "workers_busy"}}, static_cast<double>(s.refused_busy.load()));
  m.set("courtyard_http_server_refused_total", {{"reason", "per_token"}}, static_cast<double>(s.refused_credential.load()));
  m.describe("courtyard_http_accept_errors_total", "counter", "Accept calls that failed (descriptors exhausted, ...)");
  m.set("courtyard_http_accept_errors_total", {}, static_cast<double>(s.accept_errors.load()));
  m.describe("courtyard_http_evicted_waiting_total", "counter",
             "Connections closed before completing a request, to make room for a new one (the server was full)");
  m.set("courtyard_http_evicted_waiting_total", {}, static_cast<double>(s.evicted_waiting.load()));
  m.describe("courtyard_ws_dropped_stalled_total", "counter", "WebSockets dropped because a write made no progress");
  m.set("courtyard_ws_dropped_stalled_total", {}, static_cast<double>(s.dropped_stalled.load()));
  m.describe("courtyard_ws_closed_token_total", "counter", "WebSockets closed because their token was revoked or expired");
  m.set("courtyard_ws_closed_token_total", {}, static_cast<double>(s.closed_token.load()));
  m.describe("courtyard_http_handler_errors_total", "counter", "Connections closed because a handler failed");
  m.set("courtyard_http_handler_errors_total", {}, static_cast<double>(s.handler_errors.load()));
  return m.render();
}

}  // namespace courtyard::hub
