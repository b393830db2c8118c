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
  // A read outlives a receive() that timed out: the next receive() waits on it (cancelling a
  // WebSocket read would end the connection).
  bool reading = false, done = false;
  beast::error_code ec;
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
  auto& m = *impl_;
  if (closed_) return std::nullopt;
  if (!m.reading) {
    m.buffer.consume(m.buffer.size());
    m.reading = true;
    m.done = false;
    m.ws.async_read(m.buffer, [&m](beast::error_code e, std::size_t) {
      m.ec = e;
      m.done = true;
    });
  }
  m.io.restart();
  m.io.run_for(timeout);
  if (!m.done) return std::nullopt;  // still reading: the next receive() goes on waiting
  m.reading = false;
  if (m.ec) {
    closed_ = true;
    close_reason_ = std::string(m.ws.reason().reason.data(), m.ws.reason().reason.size());
    return std::nullopt;
  }
  return beast::buffers_to_string(m.buffer.data());
}

void WsClient::close() {
  auto& m = *impl_;
  if (m.reading) {  // a close reads too: the pending read ends first (and the connection with it)
    beast::get_lowest_layer(m.ws).cancel();
    m.io.restart();
    m.io.run();
    m.reading = false;
    return;
  }
  beast::error_code ec;
  m.ws.close(websocket::close_code::normal, ec);
}

}  // namespace courtyard::test
