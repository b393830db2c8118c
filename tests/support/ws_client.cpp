#include "ws_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

namespace courtyard::test {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = boost::asio::ip::tcp;

struct WsClient::Impl {
  boost::asio::io_context io;
  websocket::stream<beast::tcp_stream> ws{io};
  beast::flat_buffer buffer;
  websocket::response_type handshake;
};

WsClient::WsClient() : impl_(std::make_unique<Impl>()) {}
WsClient::~WsClient() = default;

std::unique_ptr<WsClient> WsClient::connect(int port, const std::string& target, const std::string& token) {
  std::unique_ptr<WsClient> c(new WsClient());
  try {
    beast::get_lowest_layer(c->impl_->ws).expires_after(std::chrono::seconds(10));
    beast::get_lowest_layer(c->impl_->ws).connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"),
                                                                static_cast<unsigned short>(port)));
    if (!token.empty()) {
      c->impl_->ws.set_option(websocket::stream_base::decorator([token](websocket::request_type& req) {
        req.set(beast::http::field::sec_websocket_protocol, "courtyard.v1, bearer." + token);
      }));
    }
    c->impl_->ws.handshake(c->impl_->handshake, "127.0.0.1:" + std::to_string(port), target);
    beast::get_lowest_layer(c->impl_->ws).expires_never();
    return c;
  } catch (const std::exception&) {
    return nullptr;
  }
}

std::string WsClient::subprotocol() const {
  return std::string(impl_->handshake[beast::http::field::sec_websocket_protocol]);
}

void WsClient::send(const std::string& text) {
  impl_->ws.text(true);
  impl_->ws.write(boost::asio::buffer(text));
}

std::optional<std::string> WsClient::receive(std::chrono::milliseconds timeout) {
  beast::error_code ec;
  bool done = false;
  impl_->buffer.consume(impl_->buffer.size());
  impl_->ws.async_read(impl_->buffer, [&](beast::error_code e, std::size_t) {
    ec = e;
    done = true;
  });
  impl_->io.restart();
  impl_->io.run_for(timeout);
  if (!done) {
    // Timed out: cancel the read and let it finish before returning.
    beast::get_lowest_layer(impl_->ws).cancel();
    impl_->io.restart();
    impl_->io.run();
    return std::nullopt;
  }
  if (ec) {
    close_reason_ = std::string(impl_->ws.reason().reason.data(), impl_->ws.reason().reason.size());
    return std::nullopt;
  }
  return beast::buffers_to_string(impl_->buffer.data());
}

void WsClient::close() {
  beast::error_code ec;
  impl_->ws.close(websocket::close_code::normal, ec);
}

}  // namespace courtyard::test
