#include "webhook_receiver.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>

namespace courtyard::test {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;

struct WebhookReceiver::Impl {
  boost::asio::io_context io;
  tcp::acceptor acceptor{io, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0)};
  mutable std::mutex mu;
  std::vector<Request> requests;
  std::atomic<int> status{200};
  std::atomic<bool> stopping{false};
  std::thread thread;

  void serve() {
    while (!stopping) {
      beast::error_code ec;
      tcp::socket socket(io);
      acceptor.accept(socket, ec);
      if (ec) continue;
      beast::flat_buffer buffer;
      for (;;) {  // keep-alive: one connection may carry several requests
        http::request<http::string_body> req;
        http::read(socket, buffer, req, ec);
        if (ec) break;
        Request r{std::string(req.target()), req.body(), {}};
        for (const auto& field : req) {
          std::string name(field.name_string());
          std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
          r.headers[name] = std::string(field.value());
        }
        {
          std::lock_guard lock(mu);
          requests.push_back(std::move(r));
        }
        http::response<http::string_body> res{static_cast<http::status>(status.load()), req.version()};
        res.set(http::field::content_type, "application/json");
        res.body() = "{}";
        res.keep_alive(req.keep_alive());
        res.prepare_payload();
        http::write(socket, res, ec);
        if (ec || !req.keep_alive()) break;
      }
      socket.shutdown(tcp::socket::shutdown_both, ec);
    }
  }
};

WebhookReceiver::WebhookReceiver() : impl_(std::make_unique<Impl>()) {
  port_ = impl_->acceptor.local_endpoint().port();
  impl_->thread = std::thread([this] { impl_->serve(); });
}

WebhookReceiver::~WebhookReceiver() {
  impl_->stopping = true;
  beast::error_code ec;
  // Wake the blocking accept with a connection of our own, then close.
  tcp::socket poke(impl_->io);
  poke.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port_)), ec);
  poke.close(ec);
  impl_->thread.join();
}

std::vector<WebhookReceiver::Request> WebhookReceiver::requests() const {
  std::lock_guard lock(impl_->mu);
  return impl_->requests;
}

void WebhookReceiver::answer(int status) { impl_->status = status; }

}  // namespace courtyard::test
