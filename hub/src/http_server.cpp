#include "http_server.h"

#include <deque>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <spdlog/spdlog.h>

namespace courtyard::hub {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

constexpr std::string_view kSubscribePath = "/api/v1/subscribe";

// One WebSocket connection: reads client messages, writes replies first and then coalesced changes,
// one frame in flight at a time.
class WsSession : public std::enable_shared_from_this<WsSession> {
 public:
  WsSession(tcp::socket socket, SubscriptionHub& hub, std::shared_ptr<Subscriber> subscriber)
      : ws_(std::move(socket)), timer_(ws_.get_executor()), hub_(hub), subscriber_(std::move(subscriber)) {}

  ~WsSession() { hub_.close(*subscriber_); }

  void start(http::request<http::string_body> request) {
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws_.read_message_max(hub_.limits().max_message_bytes);
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "courtyard"); }));
    ws_.async_accept(request, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return;
      std::weak_ptr<WsSession> weak = self;
      self->subscriber_->wake = [weak] {
        if (auto s = weak.lock()) s->flush();
      };
      self->replies_.push_back(self->hub_.hello(*self->subscriber_));
      self->flush();
      self->read();
    });
  }

 private:
  void read() {
    ws_.async_read(in_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return self->finish();
      std::string text = beast::buffers_to_string(self->in_.data());
      self->in_.consume(self->in_.size());
      for (auto& frame : self->hub_.on_message(*self->subscriber_, text)) self->replies_.push_back(std::move(frame));
      self->flush();
      self->read();
    });
  }

  void flush() {
    if (writing_ || closing_) return;
    if (subscriber_->overflowed()) return close_slow();
    std::string frame;
    if (!replies_.empty()) {
      frame = std::move(replies_.front());
      replies_.pop_front();
    } else if (subscriber_->has_pending()) {
      auto now = std::chrono::steady_clock::now();
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
    out_ = std::move(frame);
    ws_.text(true);
    ws_.async_write(asio::buffer(out_), [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->writing_ = false;
      if (ec) return self->finish();
      self->flush();
    });
  }

  void close_slow() {
    closing_ = true;
    websocket::close_reason reason(websocket::close_code::policy_error);
    reason.reason = "too far behind: more than " + std::to_string(hub_.limits().max_pending_keys) + " changes waiting";
    ws_.async_close(reason, [self = shared_from_this()](beast::error_code) { self->finish(); });
  }

  void finish() {
    timer_.cancel();
    subscriber_->wake = nullptr;
    hub_.close(*subscriber_);
  }

  websocket::stream<beast::tcp_stream> ws_;
  asio::steady_timer timer_;
  std::chrono::steady_clock::time_point next_changes_at_{};
  bool timer_armed_ = false;
  SubscriptionHub& hub_;
  std::shared_ptr<Subscriber> subscriber_;
  beast::flat_buffer in_;
  std::deque<std::string> replies_;
  std::string out_;
  bool writing_ = false;
  bool closing_ = false;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, Api& api, SubscriptionHub* hub, asio::thread_pool& workers)
      : stream_(std::move(socket)), api_(api), hub_(hub), workers_(workers) {}
  void start() { read(); }

 private:
  void read() {
    parser_.emplace();
    parser_->body_limit(64 * 1024);
    stream_.expires_after(std::chrono::seconds(60));
    http::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return self->close();
      self->dispatch();
    });
  }

  void dispatch() {
    request_ = parser_->release();
    HttpRequest req{std::string(request_.method_string()), std::string(request_.target()), request_.body(),
                    std::string(request_[http::field::authorization])};
    if (websocket::is_upgrade(request_)) return upgrade(req);
    // Changes wait for Kafka and as-of reads replay the log: both off the I/O thread.
    const bool slow = request_.method() == http::verb::post || req.target.find("as_of_time=") != std::string::npos;
    if (!slow) return respond(api_.handle(req));
    asio::post(workers_, [self = shared_from_this(), req = std::move(req)] {
      auto res = self->api_.handle(req);
      asio::post(self->stream_.get_executor(), [self, res = std::move(res)]() mutable { self->respond(std::move(res)); });
    });
  }

  void upgrade(const HttpRequest& req) {
    auto target = Api::parse_target(req.target);
    if (!hub_ || target.path != kSubscribePath) {
      return respond({404, "application/json", R"({"error":"not_found","detail":"WebSocket is served at /api/v1/subscribe"})"});
    }
    auto who = api_.authenticate(req.authorization.empty() ? target.query["token"] : req.authorization);
    if (!who) return respond(who.error());
    stream_.expires_never();
    auto ws = std::make_shared<WsSession>(stream_.release_socket(), *hub_, hub_->open(*who));
    ws->start(std::move(request_));
  }

  void respond(HttpResponse res) {
    auto out = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(res.status),
                                                                   request_.version());
    out->set(http::field::server, "courtyard");
    out->set(http::field::content_type, res.content_type);
    out->set(http::field::cache_control, "no-store");
    out->keep_alive(request_.keep_alive());
    if (request_.method() != http::verb::head) out->body() = std::move(res.body);
    out->prepare_payload();
    http::async_write(stream_, *out, [self = shared_from_this(), out](beast::error_code ec, std::size_t) {
      if (ec || !out->keep_alive()) return self->close();
      self->read();
    });
  }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::request<http::string_body> request_;
  Api& api_;
  SubscriptionHub* hub_;
  asio::thread_pool& workers_;
};

}  // namespace

struct HttpServer::Impl {
  Impl(Api& a, SubscriptionHub* s) : api(a), subscriptions(s) {}
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  asio::thread_pool workers{2};
  Api& api;
  SubscriptionHub* subscriptions;

  void accept() {
    // One thread runs the io_context, so sessions need no strand.
    acceptor.async_accept(io, [this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) {
        socket.set_option(tcp::no_delay(true), ec);
        std::make_shared<Session>(std::move(socket), api, subscriptions, workers)->start();
      }
      accept();
    });
  }
};

HttpServer::HttpServer(const std::string& host, int port, Api& api, SubscriptionHub* subscriptions)
    : impl_(std::make_unique<Impl>(api, subscriptions)) {
  tcp::endpoint endpoint(asio::ip::make_address(host), static_cast<unsigned short>(port));
  impl_->acceptor.open(endpoint.protocol());
  impl_->acceptor.set_option(asio::socket_base::reuse_address(true));
  impl_->acceptor.bind(endpoint);
  impl_->acceptor.listen(asio::socket_base::max_listen_connections);
}

HttpServer::~HttpServer() {
  impl_->workers.join();
}

int HttpServer::port() const { return impl_->acceptor.local_endpoint().port(); }

void HttpServer::run(std::stop_token stop) {
  std::stop_callback on_stop(stop, [this] { asio::post(impl_->io, [this] { impl_->io.stop(); }); });
  impl_->accept();
  impl_->io.run();
}

void HttpServer::publish(std::uint64_t seq, processors::KeyValues changes) {
  if (!impl_->subscriptions) return;
  asio::post(impl_->io, [this, seq, changes = std::move(changes)] { impl_->subscriptions->publish(seq, changes); });
}

}  // namespace courtyard::hub
